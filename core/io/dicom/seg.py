"""DICOM Segmentation (SEG) objects: write a LabelMap on a source series' grid, read one back onto a grid.

Writing goes through highdicom (``segmentation_type=BINARY``, the type every SEG viewer reads): one
segment per label value, numbered 1..N in ascending label order (DICOM wants segment numbers to
start at 1 and rise by 1, so a map holding only label 5 becomes segment 1). Frames are placed by
each source image's ImagePositionPatient, never by file order. Reading maps every SEG frame onto a
target grid by its own plane position and orientation; nothing is ever resampled.

Empty segments: ``write_seg`` refuses a label map with nothing in it (a brain mask that came out
empty is a failed step, not a result). A mask that may legitimately be empty (a tumour that is
absent) is written with ``allow_empty=True`` and ``segment_names`` naming its segments: each empty
segment is then stored explicitly as all-zero frames on every source slice (highdicom would
otherwise omit empty frames and leave the segment with no frames at all), so a reader sees
"segment evaluated and empty", not "segment missing".
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import SegmentationStorage

from medpipes.core.errors import DicomError, GeometryError, InputError, ProcessingError
from medpipes.core.image import LPS_TO_RAS, Image, ImageMeta, LabelMap
from medpipes.core.io.atomic import atomic_path

GRID_ATOL_MM = 1e-3
_ORIENTATION_ATOL = 1e-4

# Distinct colours for consecutive segments (the first ones of 3D Slicer's generic anatomy palette).
_PALETTE = (
    (128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79),
    (221, 130, 101), (144, 238, 144), (192, 104, 88), (220, 245, 20), (78, 63, 0),
    (255, 250, 220), (230, 220, 70), (200, 200, 235), (250, 250, 210), (244, 214, 49),
    (0, 151, 206), (216, 191, 216), (183, 156, 220), (183, 214, 211), (152, 189, 207),
)

Source = str | os.PathLike | Sequence[str | os.PathLike] | Sequence[pydicom.Dataset]


@dataclass(frozen=True)
class SegmentCodes:
    """A segment as coded concepts: CID 7150 category and CID 7151 type (e.g. Anatomical Structure, Liver)."""

    category: Code | hd.sr.CodedConcept = codes.SCT.Tissue
    type: Code | hd.sr.CodedConcept = codes.SCT.Tissue


@dataclass(frozen=True)
class _Segment:
    number: int
    label_value: int
    name: str


@dataclass(frozen=True)
class _AxisMap:
    """How the index axes of one grid land on another: ``to[axes[a]] = offset[a] + signs[a] * from[a]``."""

    axes: tuple[int, int, int]
    signs: tuple[int, int, int]
    offsets: tuple[int, int, int]


# --- public API ---------------------------------------------------------------------------------
def write_seg(
    label_map: LabelMap,
    source: Source,
    path: str | os.PathLike,
    *,
    segment_names: Mapping[int, str] | None = None,
    segment_codes: Mapping[int, SegmentCodes] | None = None,
    segment_colors: Mapping[int, tuple[int, int, int]] | None = None,
    allow_empty: bool = False,
    series_description: str = "medpipes segmentation",
    series_number: int | None = None,
    algorithm_name: str = "medpipes",
    algorithm_version: str | None = None,
    algorithm_type: str = "AUTOMATIC",
    manufacturer: str = "medpipes",
    content_label: str = "SEGMENTATION",
) -> Path:
    """Write ``label_map`` (on series ``source``'s grid) as a BINARY SEG referencing it; return the path.

    ``source`` is the series the labels were made on: a folder holding that one series, its files,
    or its datasets (single-frame slices or one multi-frame image). ``segment_names`` maps label
    value -> segment label (default ``"label <value>"``); when given it lists every segment to
    write, and a label it names that is absent from the map needs ``allow_empty=True``.
    ``segment_codes`` maps label value -> SegmentCodes (default SCT Tissue / Tissue);
    ``segment_colors`` label value -> RGB. ``series_number`` defaults to 1000 + the source's.
    """
    path = Path(path)
    _check_texts(series_description, algorithm_name, algorithm_type, segment_names)
    datasets = load_source(source)
    frames = _frame_geometry(datasets)
    grid_affine, grid_shape, frame_k = _source_grid(frames, datasets[0])
    array = _check_label_map(label_map)
    axis_map = _index_map(label_map.affine, array.shape, grid_affine, grid_shape, same_extent=True)
    if axis_map is None:
        raise GeometryError(
            f"label map grid {label_map.spatial_shape} spacing {_fmt(label_map.spacing)} origin "
            f"{_fmt(label_map.origin)} is not the source series' grid {grid_shape} spacing "
            f"{_fmt(_spacing(grid_affine))} origin {_fmt(grid_affine[:3, 3])} (within {GRID_ATOL_MM} mm); "
            "resample the mask onto the source series first (nearest neighbour)"
        )
    segments = plan_segments(label_map, segment_names, allow_empty=allow_empty)
    for option, given in (("segment_codes", segment_codes), ("segment_colors", segment_colors)):
        unknown = sorted(set(given or {}) - {s.label_value for s in segments})
        if unknown:
            raise InputError(
                f"{option} has label {unknown[0]}, which is no segment written; use the label values"
            )
    # (column, row, sorted slice) array of segment numbers, then one (rows, columns) frame per source frame.
    on_grid = _reorient(_segment_numbers(array, segments), axis_map)
    pixel_array = np.stack([on_grid[:, :, k].T for k in frame_k])
    any_empty = any(not np.any(array == s.label_value) for s in segments)

    version = algorithm_version or _medpipes_version()
    descriptions = [
        _describe(
            s,
            (segment_codes or {}).get(s.label_value, SegmentCodes()),
            (segment_colors or {}).get(s.label_value, _PALETTE[(s.number - 1) % len(_PALETTE)]),
            algorithm_name,
            version,
            algorithm_type,
        )
        for s in segments
    ]
    source_series_number = datasets[0].get("SeriesNumber")
    if series_number is None:
        series_number = 1000 + (int(source_series_number) if source_series_number not in (None, "") else 0)
    with warnings.catch_warnings():
        # highdicom warns about single-component patient names it copies from the source; not ours to fix.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        try:
            seg = hd.seg.Segmentation(
                source_images=datasets,
                pixel_array=pixel_array,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=hd.UID(),
                series_number=series_number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer=manufacturer,
                manufacturer_model_name=algorithm_name,
                software_versions=version,
                device_serial_number="1",
                series_description=series_description,
                content_label=content_label,
                content_description=series_description,
                # Empty segments get explicit all-zero frames (see the module docstring).
                omit_empty_frames=not any_empty,
                # UTF-8 holds any segment name and any patient name copied from the source.
                specific_character_set="ISO_IR 192",
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise DicomError(
                f"{path}: highdicom refused to build the SEG ({str(exc).splitlines()[0][:300]}); "
                "check the source series' headers (FrameOfReferenceUID, orientation, spacing)"
            ) from None
    if "ContentCreatorName" not in seg:
        # Type 2: present and empty for an automatic segmentation (DCMTK-based readers warn otherwise).
        seg.ContentCreatorName = None
    with atomic_path(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return path


def read_seg(
    path: str | os.PathLike,
    source_like: Image | None = None,
    *,
    label_values: Mapping[int, int] | None = None,
) -> LabelMap:
    """Read a SEG as one LabelMap on ``source_like``'s grid; voxel = segment number or label_values[number].

    Without ``source_like`` the grid is the SEG's own (highdicom's volume of its frames): it spans
    only the slices the SEG stores frames for, since empty frames are usually left out.
    Overlapping segments cannot share one label map: read them with ``read_seg_segments``.
    ``meta.extra["segment_labels"]`` maps segment number -> segment label.
    """
    path = Path(path)
    meta, affine, shape, numbers, frames = _open_seg(path, source_like)
    values = {n: int((label_values or {}).get(n, n)) for n in numbers}
    top = max(values.values(), default=0)
    out = np.zeros(shape, dtype=np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.uint32)
    owner = np.zeros(shape, dtype=np.uint16)  # which segment holds each voxel, to detect overlaps
    for n, window, patch in frames:
        owners = owner[window]
        clash = patch & (owners != 0) & (owners != n)
        if clash.any():
            raise InputError(
                f"{path}: segments {int(owners[clash][0])} and {n} overlap and do not fit one label map; "
                "read them one by one with read_seg_segments"
            )
        owners[patch] = n
        out[window][patch] = values[n]
    return LabelMap(out, affine, meta)


def read_seg_segments(path: str | os.PathLike, source_like: Image | None = None) -> dict[int, LabelMap]:
    """Each segment of a SEG as a 0/1 LabelMap on ``source_like``'s grid (or the SEG's own), by number."""
    path = Path(path)
    meta, affine, shape, numbers, frames = _open_seg(path, source_like)
    masks = {n: np.zeros(shape, dtype=np.uint8) for n in numbers}
    for n, window, patch in frames:
        masks[n][window][patch] = 1
    return {n: LabelMap(masks[n], affine, meta) for n in numbers}


def check_seg_against_source(
    seg_path: str | os.PathLike,
    label_map: LabelMap,
    source: Source | None = None,
    *,
    segment_names: Mapping[int, str] | None = None,
) -> None:
    """Read a written SEG back onto ``label_map``'s grid; ProcessingError unless each segment is its label.

    Pass the ``segment_names`` given to ``write_seg`` (they fix the segment numbering). With
    ``source`` it also checks that the SEG references that series and its frame of reference.
    """
    seg_path = Path(seg_path)
    try:
        ds = pydicom.dcmread(seg_path, stop_before_pixels=True)
    except (InvalidDicomError, OSError) as exc:
        raise ProcessingError(
            f"{seg_path}: written SEG is not readable DICOM ({exc}); write it again"
        ) from None
    if ds.get("SOPClassUID") != SegmentationStorage:
        raise ProcessingError(f"{seg_path}: SOPClassUID is {ds.get('SOPClassUID')}, not Segmentation Storage")
    if source is not None:
        datasets = load_source(source)
        referenced = {item.SeriesInstanceUID for item in ds.get("ReferencedSeriesSequence", [])}
        if referenced != {datasets[0].SeriesInstanceUID}:
            raise ProcessingError(
                f"{seg_path}: references series {sorted(referenced)}, not the source series "
                f"{datasets[0].SeriesInstanceUID}; write the SEG from that series"
            )
        if ds.get("FrameOfReferenceUID") != datasets[0].get("FrameOfReferenceUID"):
            raise ProcessingError(f"{seg_path}: FrameOfReferenceUID differs from the source series'")
    segments = plan_segments(label_map, segment_names, allow_empty=True)
    back = read_seg(seg_path, label_map, label_values={x.number: x.label_value for x in segments})
    numbers = sorted(back.meta.extra["segment_labels"])
    if numbers != [x.number for x in segments]:
        raise ProcessingError(
            f"{seg_path}: holds segments {numbers}, expected {[x.number for x in segments]}; "
            "pass the same segment_names as to write_seg"
        )
    want = np.asarray(label_map.array)
    if not np.array_equal(back.array, want):
        for x in segments:
            differ = int(((back.array == x.label_value) != (want == x.label_value)).sum())
            if differ:
                raise ProcessingError(
                    f"{seg_path}: segment {x.number} ({x.name}) differs from label {x.label_value} in "
                    f"{differ} voxels; the SEG does not match the label map"
                )


def plan_segments(
    label_map: LabelMap, segment_names: Mapping[int, str] | None = None, *, allow_empty: bool = False
) -> list[_Segment]:
    """The segments ``write_seg`` writes: number (1..N), label value and name, in ascending label order."""
    present = [int(v) for v in np.unique(np.asarray(label_map.array)) if v != 0]
    if segment_names is None:
        if not present:
            raise InputError(
                "label map is empty (no voxel above 0): nothing to write as SEG; to record an empty result "
                "pass allow_empty=True and segment_names naming the segments"
            )
        names = {v: f"label {v}" for v in present}
    else:
        names = {int(v): str(n) for v, n in segment_names.items()}
        bad = [v for v in names if v <= 0]
        if bad:
            raise InputError(f"segment_names key {bad[0]}: label values must be > 0 (0 is background)")
        if not names:
            raise InputError("segment_names is empty: name at least one segment to write")
        unnamed = [v for v in present if v not in names]
        if unnamed:
            raise InputError(
                f"label map holds label {unnamed[0]} that segment_names does not name; "
                "add it to segment_names or remove it from the map"
            )
        absent = [v for v in names if v not in present]
        if absent and not allow_empty:
            raise InputError(
                f"segment_names names label {absent[0]} ({names[absent[0]]!r}) but the label map has no such "
                "voxel; pass allow_empty=True to write it as an empty segment"
            )
    return [_Segment(i + 1, v, names[v]) for i, v in enumerate(sorted(names))]


def load_source(source: Source) -> list[pydicom.Dataset]:
    """The datasets of one source series: from a folder, a file, files (headers only) or datasets."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if folder.is_file():  # one multi-frame image (or a one-slice series)
            return load_source([folder])
        if not folder.is_dir():
            raise InputError(
                f"{folder}: no such folder or file; pass the source series' folder, files or datasets"
            )
        datasets = [
            ds for f in sorted(folder.rglob("*")) if f.is_file() and (ds := _read_header(f, strict=False))
        ]
        datasets = [ds for ds in datasets if _is_image(ds)]
        where = str(folder)
    else:
        items = list(source)
        if not items:
            raise InputError("source is an empty list: pass the source series' files or datasets")
        if all(isinstance(i, pydicom.Dataset) for i in items):
            datasets = items  # type: ignore[assignment]
        else:
            datasets = [_read_header(Path(i), strict=True) for i in items]  # type: ignore[misc]
        where = "source list"
    if not datasets:
        raise DicomError(f"{where}: holds no DICOM image; pass the folder or files of the source series")
    series = sorted({str(ds.get("SeriesInstanceUID", "")) for ds in datasets})
    if len(series) != 1:
        raise DicomError(
            f"{where}: holds {len(series)} series ({', '.join(s[-20:] for s in series[:4])}); "
            "pass the files of the one series the labels were made on"
        )
    for ds in datasets:
        if not _is_image(ds):
            raise DicomError(
                f"{where}: {ds.get('SOPClassUID', '?')} object is no image with a plane position"
            )
    if len(datasets) > 1 and any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in datasets):
        raise DicomError(
            f"{where}: mixes multi-frame and other images; pass one multi-frame image or single frames"
        )
    sizes = sorted({(int(ds.Rows), int(ds.Columns)) for ds in datasets})
    if len(sizes) != 1:
        raise GeometryError(
            f"{where}: images of sizes {sizes} (rows, columns) are no single grid; pass one stack"
        )
    return datasets


# --- geometry -----------------------------------------------------------------------------------
def _frame_geometry(datasets: Sequence[pydicom.Dataset]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(position, orientation, pixel spacing (row, col)) in LPS of every frame, in the datasets' order."""
    out = []
    for ds in datasets:
        if "PerFrameFunctionalGroupsSequence" in ds:
            shared = (
                ds.SharedFunctionalGroupsSequence[0]
                if "SharedFunctionalGroupsSequence" in ds
                else pydicom.Dataset()
            )
            for item in ds.PerFrameFunctionalGroupsSequence:
                out.append(
                    (
                        np.array(
                            _functional(item, shared, "PlanePositionSequence", "ImagePositionPatient"), float
                        ),
                        np.array(
                            _functional(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient"),
                            float,
                        ),
                        np.array(_functional(item, shared, "PixelMeasuresSequence", "PixelSpacing"), float),
                    )
                )
        else:
            out.append(
                (
                    np.array(ds.ImagePositionPatient, float),
                    np.array(ds.ImageOrientationPatient, float),
                    np.array(ds.PixelSpacing, float),
                )
            )
    return out


def _functional(item: pydicom.Dataset, shared: pydicom.Dataset, sequence: str, keyword: str) -> list[float]:
    for group in (item, shared):
        if sequence in group and keyword in group[sequence].value[0]:
            value = group[sequence].value[0][keyword].value
            return [
                float(v)
                for v in (value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value])
            ]
    raise DicomError(f"multi-frame object has no {keyword} in its {sequence}; it cannot be placed in space")


def _plane_affine(position: np.ndarray, orientation: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """LPS affine of (column, row, 0) indices of one frame; the third column is the unit normal."""
    row_dir, col_dir = orientation[:3], orientation[3:]
    a = np.eye(4)
    a[:3, 0] = row_dir * spacing[1]  # moving along a row = next column
    a[:3, 1] = col_dir * spacing[0]
    a[:3, 2] = np.cross(row_dir, col_dir)
    a[:3, 3] = position
    return a


def _source_grid(
    frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]], first: pydicom.Dataset
) -> tuple[np.ndarray, tuple[int, int, int], list[int]]:
    """RAS affine and shape of the source series as a (column, row, slice) grid, slices ascending the normal.

    Also returns, for each frame in the datasets' order, its slice index on that grid.
    """
    orientation, spacing = frames[0][1], frames[0][2]
    for _, o, s in frames:
        if not (np.allclose(o, orientation, atol=_ORIENTATION_ATOL) and np.allclose(s, spacing, atol=1e-6)):
            raise GeometryError(
                "source series mixes image orientations or pixel spacings; it is no single grid: "
                "pass one series (one stack) of the source"
            )
    plane = _plane_affine(frames[0][0], orientation, spacing)
    normal = plane[:3, 2]
    heights = np.array([float(p @ normal) for p, _, _ in frames])
    order = np.argsort(heights, kind="stable")
    sorted_pos = np.array([frames[i][0] for i in order])
    if len(frames) > 1:
        steps = np.diff(sorted_pos, axis=0)
        step = (sorted_pos[-1] - sorted_pos[0]) / (len(frames) - 1)
        if np.min(np.linalg.norm(steps, axis=1)) < GRID_ATOL_MM:
            raise GeometryError(
                "source series has several images at one position (echoes, phases or duplicates); "
                "pass the images of one volume only"
            )
        if np.max(np.abs(steps - step)) > GRID_ATOL_MM * 10:
            raise GeometryError(
                "source series' slices are not evenly spaced (missing slice?), so it has no single grid; "
                "write the SEG against a complete series"
            )
    else:
        step = normal * float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    lps = plane.copy()
    lps[:3, 2] = step
    lps[:3, 3] = sorted_pos[0]
    rank = np.empty(len(frames), dtype=int)
    rank[order] = np.arange(len(frames))
    shape = (int(first.Columns), int(first.Rows), len(frames))
    return LPS_TO_RAS @ lps, shape, [int(r) for r in rank]


def _index_map(
    from_affine: np.ndarray,
    from_shape: Sequence[int],
    to_affine: np.ndarray,
    to_shape: Sequence[int],
    *,
    same_extent: bool,
) -> _AxisMap | None:
    """How the voxel centres of one grid fall on another's (axes may be swapped or flipped); None if not.

    Each axis of length > 1 must step by exactly one voxel along one axis of the other grid (within
    GRID_ATOL_MM over the axis' step), and the first voxel must land on a voxel centre. With
    ``same_extent`` both grids must cover the same voxels; otherwise ``from`` must lie inside ``to``.
    """
    inv = np.linalg.inv(to_affine)
    axes, signs = [], []
    for a in range(3):
        if from_shape[a] == 1:
            axes.append(-1)  # a single-voxel axis has no step to compare: it takes the axis left over
            signs.append(1)
            continue
        v = inv[:3, :3] @ from_affine[:3, a]
        b = int(np.argmax(np.abs(v)))
        sign = 1 if v[b] > 0 else -1
        if not np.allclose(to_affine[:3, b] * sign, from_affine[:3, a], atol=GRID_ATOL_MM):
            return None
        axes.append(b)
        signs.append(sign)
    free = [b for b in range(3) if b not in axes]
    for a in range(3):
        if axes[a] == -1:
            if not free:
                return None
            axes[a] = free.pop(0)
    if len(set(axes)) != 3:
        return None
    start = inv @ from_affine[:, 3]
    offsets = np.round(start[:3]).astype(int)
    if np.linalg.norm(to_affine[:3, :3] @ offsets + to_affine[:3, 3] - from_affine[:3, 3]) > GRID_ATOL_MM:
        return None
    for a in range(3):
        b = axes[a]
        lo = offsets[b] + min(0, signs[a] * (from_shape[a] - 1))
        hi = offsets[b] + max(0, signs[a] * (from_shape[a] - 1))
        if lo < 0 or hi >= to_shape[b] or (same_extent and (lo != 0 or hi != to_shape[b] - 1)):
            return None
    along = tuple(int(offsets[axes[a]]) for a in range(3))
    return _AxisMap(tuple(axes), tuple(signs), along)  # type: ignore[arg-type]


def _reorient(array: np.ndarray, axis_map: _AxisMap) -> np.ndarray:
    """``array`` on the "from" grid of ``axis_map``, flipped and transposed into the "to" grid's axes."""
    flips = tuple(a for a in range(3) if axis_map.signs[a] < 0)
    out = np.flip(array, axis=flips) if flips else array
    return np.transpose(out, np.argsort(axis_map.axes))


# --- writing helpers ----------------------------------------------------------------------------
def _check_label_map(label_map: LabelMap) -> np.ndarray:
    if not isinstance(label_map, Image):
        raise InputError(f"write_seg needs a LabelMap, got {type(label_map).__name__}")
    array = np.asarray(label_map.array)
    if array.ndim != 3:
        raise GeometryError(
            f"write_seg needs a 3D label map, got shape {array.shape}; write one volume at a time"
        )
    if array.dtype.kind not in "iu":
        raise InputError(
            f"write_seg needs integer labels, got dtype {array.dtype}; use image.as_label_map() first"
        )
    if array.size and array.min() < 0:
        raise InputError(
            f"label map holds negative label {int(array.min())}; labels must be >= 0 (0 = background)"
        )
    return array


def _check_texts(
    series_description: str, algorithm_name: str, algorithm_type: str, segment_names: Mapping[int, str] | None
) -> None:
    """Refuse texts DICOM cannot hold (LO values are at most 64 characters) instead of truncating them."""
    texts = {"series_description": series_description, "algorithm_name": algorithm_name}
    texts.update({f"segment_names[{k}]": str(v) for k, v in (segment_names or {}).items()})
    for key, text in texts.items():
        if len(text) > 64 or not text.strip():
            raise InputError(f"{key} {text[:70]!r} must be 1 to 64 characters (DICOM LO); shorten it")
    allowed = [v.value for v in hd.seg.SegmentAlgorithmTypeValues]
    if algorithm_type.upper() not in allowed:
        raise InputError(f"algorithm_type {algorithm_type!r} is not one of {allowed}")


def _segment_numbers(array: np.ndarray, segments: Sequence[_Segment]) -> np.ndarray:
    """Label values replaced by segment numbers (0 stays background)."""
    out = np.zeros(array.shape, dtype=np.uint8 if len(segments) <= 255 else np.uint16)
    for s in segments:
        out[array == s.label_value] = s.number
    return out


def _describe(
    segment: _Segment,
    seg_codes: SegmentCodes,
    rgb: tuple[int, int, int],
    name: str,
    version: str,
    algorithm_type: str,
) -> hd.seg.SegmentDescription:
    kind = hd.seg.SegmentAlgorithmTypeValues(algorithm_type.upper())
    identification = None
    if kind is not hd.seg.SegmentAlgorithmTypeValues.MANUAL:
        identification = hd.AlgorithmIdentificationSequence(
            name=name, version=version, family=codes.cid7162.ArtificialIntelligence
        )
    return hd.seg.SegmentDescription(
        segment_number=segment.number,
        segment_label=segment.name,
        segmented_property_category=seg_codes.category,
        segmented_property_type=seg_codes.type,
        algorithm_type=kind,
        algorithm_identification=identification,
        display_color=hd.color.CIELabColor.from_rgb(*rgb),
    )


def _medpipes_version() -> str:
    try:
        return importlib.metadata.version("medpipes")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _read_header(path: Path, *, strict: bool) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, TypeError) as exc:
        if strict:
            raise DicomError(
                f"{path}: not a readable DICOM file ({exc}); pass the source series' DICOM files"
            ) from None
        return None


def _is_image(ds: pydicom.Dataset) -> bool:
    if ds.get("Modality") in ("SEG", "SR", "RTSTRUCT", "PR", "KO") or "Rows" not in ds:
        return False
    return "ImagePositionPatient" in ds or "PerFrameFunctionalGroupsSequence" in ds


# --- reading helpers ----------------------------------------------------------------------------
def _open_seg(
    path: Path, source_like: Image | None
) -> tuple[
    ImageMeta,
    np.ndarray,
    tuple[int, int, int],
    list[int],
    Iterator[tuple[int, tuple[slice, ...], np.ndarray]],
]:
    """Metadata, target grid (RAS affine, shape), segment numbers, and frames as (segment, window, mask)."""
    try:
        seg = hd.seg.segread(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such SEG file") from None
    except (InvalidDicomError, ValueError, AttributeError, KeyError) as exc:
        raise DicomError(f"{path}: not a readable DICOM SEG ({str(exc).splitlines()[0][:200]})") from None
    kind = str(seg.SegmentationType)
    if kind not in ("BINARY", "LABELMAP"):
        raise DicomError(
            f"{path}: {kind} SEG holds probabilities, not labels; threshold it with highdicom first"
        )
    numbers = [int(n) for n in seg.get_segment_numbers() if int(n) > 0]
    names = {int(item.SegmentNumber): str(item.get("SegmentLabel", "")) for item in seg.SegmentSequence}
    meta = ImageMeta(
        modality="SEG",
        series_instance_uid=str(seg.SeriesInstanceUID),
        series_number=int(seg.SeriesNumber) if seg.get("SeriesNumber") not in (None, "") else None,
        series_description=str(seg.get("SeriesDescription", "")) or None,
        study_instance_uid=str(seg.StudyInstanceUID),
        source_paths=(str(path),),
        extra={
            "segment_labels": {n: names.get(n, "") for n in numbers},
            "referenced_series_instance_uids": [
                str(i.SeriesInstanceUID) for i in seg.get("ReferencedSeriesSequence", [])
            ],
        },
    )
    if source_like is None:
        affine, shape = _own_grid(seg, path)
    else:
        affine, shape = source_like.affine, source_like.spatial_shape
    frames = _frames(seg, path, kind, numbers, affine, shape)
    return meta, affine, tuple(shape), numbers, frames  # type: ignore[return-value]


def _frames(
    seg: hd.seg.Segmentation,
    path: Path,
    kind: str,
    numbers: list[int],
    affine: np.ndarray,
    shape: Sequence[int],
) -> Iterator[tuple[int, tuple[slice, ...], np.ndarray]]:
    """Each SEG frame placed on the target grid by its own position: (segment number, window, mask)."""
    shared = (
        seg.SharedFunctionalGroupsSequence[0]
        if "SharedFunctionalGroupsSequence" in seg
        else pydicom.Dataset()
    )
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        if "PlanePositionSequence" not in item:
            raise DicomError(
                f"{path}: frame {index + 1} has no plane position, so it cannot be placed on a grid"
            )
        plane = LPS_TO_RAS @ _plane_affine(
            np.array(_functional(item, shared, "PlanePositionSequence", "ImagePositionPatient"), float),
            np.array(_functional(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), float),
            np.array(_functional(item, shared, "PixelMeasuresSequence", "PixelSpacing"), float),
        )
        axis_map = _index_map(plane, (int(seg.Columns), int(seg.Rows), 1), affine, shape, same_extent=False)
        if axis_map is None:
            raise GeometryError(
                f"{path}: frame {index + 1} (at {_fmt(plane[:3, 3])} RAS) does not lie on the target grid "
                f"{tuple(shape)} origin {_fmt(affine[:3, 3])}; read it onto the series it was made from"
            )
        frame = np.asarray(seg.get_stored_frame(index + 1)).T[:, :, np.newaxis]  # (column, row, 1)
        target = tuple(
            slice(axis_map.offsets[a], axis_map.offsets[a] + frame.shape[a])
            if axis_map.signs[a] > 0
            else slice(axis_map.offsets[a] - frame.shape[a] + 1, axis_map.offsets[a] + 1)
            for a in range(3)
        )
        oriented = _reorient(frame, axis_map)
        inverse = np.argsort(axis_map.axes)
        window = tuple(target[int(inverse[b])] for b in range(3))
        if kind == "BINARY":
            n = int(_functional(item, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber")[0])
            if n not in numbers:
                raise DicomError(
                    f"{path}: frame {index + 1} names segment {n}, absent from its SegmentSequence"
                )
            yield n, window, oriented > 0
        else:
            for n in numbers:
                yield n, window, oriented == n


def _own_grid(seg: hd.seg.Segmentation, path: Path) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The SEG's own grid (highdicom's volume geometry of its frames) as a RAS (column, row, slice) affine."""
    try:
        geometry = seg.get_volume_geometry()
    except (ValueError, RuntimeError) as exc:
        raise GeometryError(
            f"{path}: SEG frames form no regular volume ({str(exc).splitlines()[0][:200]}); "
            "pass source_like, the image of the source series, to read it onto that grid"
        ) from None
    if geometry is None:
        raise GeometryError(
            f"{path}: SEG frames form no regular volume; "
            "pass source_like, the image of the source series, to read it onto that grid"
        )
    # highdicom's volume axes are (slice, row, column); ours are (column, row, slice).
    swap = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    affine = LPS_TO_RAS @ np.asarray(geometry.affine) @ swap
    s = geometry.spatial_shape
    shape = (int(s[2]), int(s[1]), int(s[0]))
    if float(np.dot(np.cross(affine[:3, 0], affine[:3, 1]), affine[:3, 2])) < 0:
        # Slices ascending along row x column, as a DICOM series is read (LPI -> LPS for axial).
        affine = affine.copy()
        affine[:3, 3] += affine[:3, 2] * (shape[2] - 1)
        affine[:3, 2] *= -1
    return affine, shape


def _spacing(affine: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))


def _fmt(values: Sequence[float] | np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


__all__ = [
    "SegmentCodes",
    "check_seg_against_source",
    "load_source",
    "plan_segments",
    "read_seg",
    "read_seg_segments",
    "write_seg",
]
