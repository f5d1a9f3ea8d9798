"""Loading one scanned series into an Image: decode each file once, fill a preallocated stack,
rescale, and resample when the geometry asks for it (tilt, uneven or missing slices)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from medpipes.core.errors import DicomError
from medpipes.core.image import Image, ImageMeta
from medpipes.core.io.dicom.geometry import GeometryPlan, resample_stack
from medpipes.core.io.dicom.pixels import decode_file, frame_pixels, scaling_of, syntax_name
from medpipes.core.io.dicom.records import FileInfo, Frame
from medpipes.core.io.dicom.scan import DicomScan, SeriesInfo, scan_dicom

IRREGULAR_POLICIES = ("resample", "error")


def _check_loadable(scan: DicomScan, info: SeriesInfo, irregular: str, min_slices: int) -> GeometryPlan:
    if irregular not in IRREGULAR_POLICIES:
        raise DicomError(f"irregular={irregular!r} is not a policy; use one of {', '.join(IRREGULAR_POLICIES)}")
    entry = scan._entries.get(info.id)
    if entry is None:
        raise DicomError(f"series {info.id} is not part of the scan of {scan.root}; scan the folder that holds it")
    if entry.broken:
        path, reason = entry.broken[0]
        more = f" (and {len(entry.broken) - 1} more)" if len(entry.broken) > 1 else ""
        raise DicomError(f"{path}: {reason}{more}; re-export series {info.id} or remove the broken file")
    if entry.undecodable:
        raise DicomError(entry.undecodable)
    plan = entry.plan
    if plan.problem:
        raise DicomError(
            f"series {info.id} ({info.description or 'no description'}) under {scan.root}: {plan.problem}; "
            "pick another series with --series ID"
        )
    if plan.tilt_deg is not None and irregular == "error":
        raise DicomError(
            f"series {info.id} ({info.description or 'no description'}): gantry tilt of {plan.tilt_deg:.2f} degrees "
            "(slice positions are not along the slice normal); pass irregular=\"resample\" "
            "(CLI: --resample-irregular) to resample it onto an orthogonal grid"
        )
    if plan.irregular and irregular == "error":
        raise DicomError(
            f"series {info.id} ({info.description or 'no description'}): {plan.irregular}; "
            "pass irregular=\"resample\" (CLI: --resample-irregular) to resample it onto a regular grid"
        )
    if plan.n_slices < min_slices:
        raise DicomError(
            f"series {info.id} ({info.description or 'no description'}) has {plan.n_slices} slice"
            f"{'s' if plan.n_slices != 1 else ''}; a volume of at least {min_slices} slices is needed; pick a 3D series"
        )
    return plan


def _output_scaling(frames: list[Frame], lo: float, hi: float) -> tuple[str, np.dtype, tuple[float, float]]:
    """("keep" | "uniform" | "per-frame", output dtype, uniform (slope, intercept)).

    As dcm2niix: stored integers stay integers when slope 1 / intercept 0; integral scaling that fits
    stays integer (CT's -1024 intercept); anything else becomes float32.
    """
    scales = {scaling_of(f) for f in frames}
    if len(scales) != 1:
        return "per-frame", np.dtype(np.float32), (1.0, 0.0)
    slope, inter = next(iter(scales))
    if slope == 1.0 and inter == 0.0:
        return "keep", np.dtype(np.float32), (1.0, 0.0)
    if float(slope).is_integer() and float(inter).is_integer():
        a, b = sorted((lo * slope + inter, hi * slope + inter))
        for dt in (np.int16, np.int32):
            if np.iinfo(dt).min <= a and b <= np.iinfo(dt).max:
                return "uniform", np.dtype(dt), (slope, inter)
    return "uniform", np.dtype(np.float32), (slope, inter)


def load_series(scan: DicomScan, info: SeriesInfo, *, irregular: str = "resample", min_slices: int = 1) -> Image:
    """The series ``info`` of ``scan`` as an Image (x, y, z[, t]) with its RAS affine and metadata."""
    plan = _check_loadable(scan, info, irregular, min_slices)
    n_src, n_vol = len(plan.order), plan.n_volumes
    slots: dict[Path, list[tuple[Frame, int, int]]] = {}
    files: dict[Path, FileInfo] = {}
    for k, frames in enumerate(plan.order):
        for t, frame in enumerate(frames):
            path = frame.file.source.path
            slots.setdefault(path, []).append((frame, k, t))
            files[path] = frame.file
    first = plan.order[0][0]
    rows, cols = first.rows, first.cols
    raw: np.ndarray | None = None
    lo, hi = np.inf, -np.inf
    workers = min(8, (os.cpu_count() or 1) + 2) if len(files) > 4 else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, decoded in zip(files, pool.map(lambda p: decode_file(files[p]), files)):
            if raw is None:
                raw = np.empty((cols, rows, n_src, n_vol), dtype=decoded.dtype, order="F")
            elif decoded.dtype != raw.dtype:  # files of one series stored with different pixel types
                raw = raw.astype(np.promote_types(raw.dtype, decoded.dtype))
            for frame, k, t in slots[path]:
                pix = frame_pixels(decoded, frame)
                if pix.shape != (rows, cols):
                    raise DicomError(f"{path}: frame is {pix.shape[1]}x{pix.shape[0]}, the series is {cols}x{rows}; re-export the series")
                raw[:, :, k, t] = pix.T
            lo, hi = min(lo, float(decoded.min())), max(hi, float(decoded.max()))
    if raw is None:
        raise DicomError(f"series {info.id} under {scan.root} has no frames to load; re-run the scan")
    all_frames = [f for fr in plan.order for f in fr]
    mode, dtype, (slope, inter) = _output_scaling(all_frames, lo, hi)
    if mode == "keep":
        data = raw
    elif mode == "uniform":
        data = (raw.astype(np.float64) * slope + inter).astype(dtype)
    else:
        data = np.empty(raw.shape, dtype=np.float32, order="F")
        for k, frames in enumerate(plan.order):
            for t, frame in enumerate(frames):
                slope, inter = scaling_of(frame)
                data[:, :, k, t] = raw[:, :, k, t] * np.float32(slope) + np.float32(inter)
    if plan.needs_resampling:
        data = resample_stack(data, plan)
    if n_vol == 1:
        data = data[:, :, :, 0]
    return Image(data, plan.affine, _meta(scan, info, plan, files))


def _meta(scan: DicomScan, info: SeriesInfo, plan: GeometryPlan, files: dict[Path, FileInfo]) -> ImageMeta:
    first = plan.order[0][0].file
    ordered: list[str] = []
    seen: set[Path] = set()
    for t in range(plan.n_volumes):
        for frames in plan.order:
            p = frames[t].file.source.path
            if p not in seen:
                seen.add(p)
                ordered.append(str(p))
    extra: dict = {
        "series_id": info.id,
        "echo_time_ms": info.echo_time_ms,
        "repetition_time_ms": first.repetition_time_ms,
        "flags": list(info.flags),
        "warnings": list(plan.warnings),
        "n_non_dicom": scan.n_non_dicom,
        "transfer_syntax": sorted({syntax_name(fi.transfer_syntax) for fi in files.values()}),
        "manufacturer": first.manufacturer,
        "image_type": info.image_type,
        "sop_instance_uids": [frames[0].file.sop_uid for frames in plan.order],
        "referenced_frames": [
            (frames[0].file.sop_uid, frames[0].index + 1 if frames[0].file.is_multiframe else None) for frames in plan.order
        ],
    }
    if len(extra["transfer_syntax"]) == 1:
        extra["transfer_syntax"] = extra["transfer_syntax"][0]
    extra["resampled"] = plan.needs_resampling  # then sop_instance_uids lists the source slices, not output ones
    if plan.tilt_deg is not None:
        extra["gantry_tilt_deg"] = plan.tilt_deg
    if plan.irregular:
        extra["irregular"] = plan.irregular
    if scan.unreadable:
        extra["warnings"].append(f"{len(scan.unreadable)} unreadable file(s) under {scan.root} were ignored")
    return ImageMeta(
        modality=info.modality,
        series_instance_uid=info.series_instance_uid,
        series_number=info.series_number,
        series_description=info.description,
        study_instance_uid=first.study_uid,
        source_paths=tuple(ordered),
        extra=extra,
    )


def read_dicom(
    path: str | os.PathLike[str],
    series: str | None = None,
    *,
    irregular: str = "resample",
    min_slices: int = 1,
) -> Image:
    """Scan ``path``, select ``series`` (or the only candidate) and load it."""
    scan = scan_dicom(path)
    return load_series(scan, scan.select(series), irregular=irregular, min_slices=min_slices)
