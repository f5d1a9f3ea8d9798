"""DICOM SEG writing (highdicom) checked by three independent readers: pydicom, highdicom and dcmqi.

Every comparison is made in world space: a voxel of one image is matched to a voxel of another by
its RAS position, never by assuming both store their axes in the same order.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes
from pydicom.uid import SegmentationStorage, generate_uid

from medpipes.core.errors import DicomError, GeometryError, InputError, ProcessingError
from medpipes.core.image import Image, LabelMap
from medpipes.core.io import read_image
from medpipes.core.io.dicom.seg import (
    SegmentCodes,
    check_seg_against_source,
    read_seg,
    read_seg_segments,
    write_seg,
)

SEG_DIR = ("dicom", "dcmqi", "data", "segmentations")

# (source series folder, label map) pairs, relative to dcmqi's data/segmentations.
ROUND_TRIP_CASES = [
    ("ct-3slice", "liver_seg.nrrd"),
    ("ct-3slice", "spine_seg.nrrd"),
    ("ct-3slice", "spine_seg_label5.nrrd"),
    ("ct-3slice", "heart_seg.nrrd"),
    ("ct-3slice", "liver_spine_seg.nrrd"),
    ("ct-3slice", "liver_spine_gapped_seg.nrrd"),
    ("ct-3slice", "partial_overlaps-1.nrrd"),
    ("ct-3slice", "partial_overlaps-2.nrrd"),
    ("ct-3slice", "partial_overlaps-3.nrrd"),
    ("23x38x3/image", "23x38x3/nrrd/label.nrrd"),
    ("24x38x3/image", "24x38x3/nrrd/label.nrrd"),
    ("24x38x3/image", "sparse_labelmap_ppv5_seg.nrrd"),
]
CASE_IDS = [label.replace("/", "_").removesuffix(".nrrd") for _, label in ROUND_TRIP_CASES]


# --- helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def segdata(shared_data) -> Path:
    return shared_data(*SEG_DIR)


@pytest.fixture(scope="module")
def written(segdata, tmp_path_factory):
    """``written(source, label)``: (SEG path, label map, source datasets), each written once."""
    cache: dict[tuple[str, str], tuple[Path, LabelMap, list[pydicom.Dataset]]] = {}
    out = tmp_path_factory.mktemp("segs")

    def make(source: str, label: str):
        if (source, label) not in cache:
            label_map = read_image(segdata / label).as_label_map()
            path = write_seg(label_map, segdata / source, out / f"{label.replace('/', '_')}.dcm")
            cache[(source, label)] = (path, label_map, _datasets(segdata / source))
        return cache[(source, label)]

    return make


def _datasets(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f) for f in sorted(folder.iterdir()) if f.is_file()]


def _voxels_in(image: Image, mask: np.ndarray, reference: Image) -> set[tuple[int, int, int]]:
    """The voxels of ``reference`` centred where ``image``'s voxels with ``mask`` true are centred."""
    ijk = np.argwhere(mask)
    if len(ijk) == 0:
        return set()
    continuous = reference.world_to_voxel(image.voxel_to_world(ijk))
    rounded = np.round(continuous)
    off_grid_mm = np.abs(continuous - rounded) * np.array(reference.spacing)
    assert off_grid_mm.max() < 1e-3, f"voxels lie {off_grid_mm.max():.2g} mm off the reference grid"
    assert (rounded >= 0).all() and (rounded < np.array(reference.spatial_shape)).all(), (
        "voxels outside the grid"
    )
    return set(map(tuple, rounded.astype(int)))


def _slice_index(ds: pydicom.Dataset, label_map: LabelMap) -> int:
    """The k index of the label map slice holding a source image, found from its ImagePositionPatient."""
    ras = np.array(ds.ImagePositionPatient, float) * np.array([-1, -1, 1])
    ijk = label_map.world_to_voxel(ras)
    assert np.allclose(ijk[:2], 0, atol=1e-3) and abs(ijk[2] - round(ijk[2])) < 1e-3
    return int(round(ijk[2]))


def _tool(name: str, package: str) -> str:
    """A test tool's executable (the venv's first); skipped when absent, failed under CI=true."""
    for candidate in (Path(sys.executable).parent / name, shutil.which(name)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    reason = f"{name} not installed (pip install {package})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _dciodvfy_errors(path: Path) -> list[str]:
    """The errors David Clunie's DICOM validator reports for a file (warnings are not errors)."""
    run = subprocess.run(
        [_tool("dciodvfy", "dicom3tools"), str(path)], capture_output=True, text=True, timeout=120
    )
    errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
    return errors + ([f"exit status {run.returncode}"] if run.returncode else [])


def _dcmqi_segments(seg_path: Path, out_dir: Path) -> dict[int, tuple[Image, int]]:
    """Segment number -> (image dcmqi wrote, voxel value of that segment), from dcmqi's meta.json."""
    out_dir.mkdir()
    tool = _tool("segimage2itkimage", "dcmqi")
    args = ["--inputDICOM", str(seg_path), "--outputDirectory", str(out_dir), "-p", "seg", "-t", "nrrd"]
    run = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    meta = json.loads((out_dir / "seg-meta.json").read_text())
    found: dict[int, tuple[Image, int]] = {}
    for group, attributes in enumerate(meta["segmentAttributes"], start=1):
        image = read_image(out_dir / f"seg-{group}.nrrd")
        for attr in attributes:
            found[int(attr["labelID"])] = (image, int(attr["labelID"]))
    return found


def _synthetic_series(
    folder: Path, n_slices: int = 4, *, rotate_deg: float = 0.0, drop: int | None = None
) -> list[Path]:
    """A CT series made from pydicom's CT_small.dcm: n slices 2.5 mm apart, maybe oblique, names shuffled."""
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    t = np.deg2rad(rotate_deg)
    about_z = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, np.cos(t / 2), -np.sin(t / 2)], [0, np.sin(t / 2), np.cos(t / 2)]])
    rotation = about_z @ about_x
    row, col, normal = rotation[:, 0], rotation[:, 1], rotation[:, 2]
    series_uid = generate_uid()
    names = list(range(n_slices))
    random.Random(7).shuffle(names)
    paths = []
    for k in range(n_slices):
        if k == drop:
            continue
        ds = copy.deepcopy(template)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n_slices - k  # instance numbers run against position on purpose
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *col)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in np.array([-80.0, -90.0, 10.0]) + normal * 2.5 * k]
        ds.SliceThickness = 2.5
        path = folder / f"img_{names[k]:03d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def _sitk_grid(folder: Path) -> tuple[Image, list[str]]:
    """The series grid as SimpleITK reads it (independent of our code) and its files in slice order."""
    reader = sitk.ImageSeriesReader()
    files = list(reader.GetGDCMSeriesFileNames(str(folder)))
    reader.SetFileNames(files)
    return Image.from_sitk(reader.Execute()), files


# --- round trips through three readers -------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize(("source", "label"), ROUND_TRIP_CASES, ids=CASE_IDS)
def test_pydicom_reads_a_segmentation_storage_object_referencing_the_source_series(written, source, label):
    path, label_map, sources = written(source, label)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.MediaStorageSOPClassUID == SegmentationStorage
    assert ds.SOPClassUID == SegmentationStorage and ds.Modality == "SEG"
    assert ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
    assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert ds.SeriesInstanceUID != sources[0].SeriesInstanceUID
    [referenced] = ds.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {
        s.SOPInstanceUID for s in sources
    }
    assert [int(s.SegmentNumber) for s in ds.SegmentSequence] == list(range(1, len(label_map.labels) + 1))
    assert ds.SeriesDescription == "medpipes segmentation"


@pytest.mark.realdata
@pytest.mark.parametrize(("source", "label"), ROUND_TRIP_CASES, ids=CASE_IDS)
def test_highdicom_pixels_per_source_instance_equal_each_label(written, source, label):
    path, label_map, sources = written(source, label)
    seg = hd.seg.segread(path)
    assert seg.get_segment_numbers() == list(range(1, len(label_map.labels) + 1))
    for number, value in enumerate(label_map.labels, start=1):
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[s.SOPInstanceUID for s in sources],
            segment_numbers=[number],
            assert_missing_frames_are_empty=True,
        )[..., 0]
        for ds, frame in zip(sources, pixels, strict=True):
            expected = label_map.array[:, :, _slice_index(ds, label_map)].T == value
            np.testing.assert_array_equal(
                frame.astype(bool), expected, err_msg=f"{ds.SOPInstanceUID} label {value}"
            )


@pytest.mark.realdata
@pytest.mark.parametrize(("source", "label"), ROUND_TRIP_CASES, ids=CASE_IDS)
def test_dcmqi_segments_equal_each_label_in_world_space(written, source, label, tmp_path):
    path, label_map, _ = written(source, label)
    segments = _dcmqi_segments(path, tmp_path / "dcmqi")
    assert sorted(segments) == list(range(1, len(label_map.labels) + 1))
    for number, value in enumerate(label_map.labels, start=1):
        image, dcmqi_value = segments[number]
        got = _voxels_in(image, image.array == dcmqi_value, label_map)
        want = set(map(tuple, np.argwhere(label_map.array == value)))
        assert got == want, f"segment {number} (label {value}): {len(got ^ want)} voxels differ"


@pytest.mark.realdata
@pytest.mark.parametrize(("source", "label"), ROUND_TRIP_CASES, ids=CASE_IDS)
def test_our_reader_and_check_return_the_label_map_on_the_source_grid(written, segdata, source, label):
    path, label_map, _ = written(source, label)
    values = dict(enumerate(label_map.labels, start=1))
    back = read_seg(path, label_map, label_values=values)
    np.testing.assert_array_equal(back.array, label_map.array)
    own_grid = read_seg(path, label_values=values)  # without a grid: the slices the SEG stores frames for
    for value in label_map.labels:
        got = _voxels_in(own_grid, own_grid.array == value, label_map)
        assert got == set(map(tuple, np.argwhere(label_map.array == value)))
    check_seg_against_source(path, label_map, segdata / source)


@pytest.mark.realdata
@pytest.mark.parametrize(("source", "label"), [ROUND_TRIP_CASES[5], ROUND_TRIP_CASES[10]], ids=["ct", "tiny"])
def test_dciodvfy_finds_no_error(written, source, label):
    path, _, _ = written(source, label)
    assert _dciodvfy_errors(path) == []


@pytest.mark.realdata
def test_dciodvfy_catches_a_broken_seg(written, tmp_path):  # the validator check above can fail
    path, _, _ = written("ct-3slice", "liver_seg.nrrd")
    ds = pydicom.dcmread(path)
    del ds.SegmentSequence[0].SegmentedPropertyCategoryCodeSequence
    ds.save_as(tmp_path / "broken.dcm")
    assert any(
        "SegmentedPropertyCategoryCodeSequence" in e for e in _dciodvfy_errors(tmp_path / "broken.dcm")
    )


# --- placing frames ------------------------------------------------------------------------------
@pytest.mark.realdata
def test_frames_are_placed_by_position_not_by_file_order(segdata, tmp_path):
    label_map = read_image(segdata / "liver_spine_seg.nrrd").as_label_map()
    assert not np.array_equal(label_map.array[:, :, 0], label_map.array[:, :, 2])  # slices differ
    first_file = pydicom.dcmread(segdata / "ct-3slice" / "01.dcm")
    assert _slice_index(first_file, label_map) == 2  # 01.dcm is the top slice, the last along k
    path = write_seg(label_map, segdata / "ct-3slice", tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance([first_file.SOPInstanceUID], combine_segments=True)
    np.testing.assert_array_equal(pixels[0], label_map.array[:, :, 2].T)


@pytest.mark.realdata
def test_folder_files_and_datasets_in_any_order_give_the_same_segmentation(segdata, tmp_path):
    label_map = read_image(segdata / "liver_spine_seg.nrrd").as_label_map()
    files = sorted((segdata / "ct-3slice").glob("*.dcm"))
    sources = {
        "folder": segdata / "ct-3slice",
        "files": [files[1], files[2], files[0]],
        "datasets": [pydicom.dcmread(f) for f in reversed(files)],
    }
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    results = []
    for name, source in sources.items():
        seg = hd.seg.segread(write_seg(label_map, source, tmp_path / f"{name}.dcm"))
        results.append(seg.get_pixels_by_source_instance(uids, combine_segments=True))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.realdata
def test_multiframe_source_is_referenced_and_read_back_frame_by_frame(segdata, tmp_path):
    label_map = read_image(segdata / "23x38x3" / "nrrd" / "label.nrrd").as_label_map()
    source = segdata / "23x38x3" / "multiframe" / "mf.dcm"
    path = write_seg(label_map, source, tmp_path / "seg.dcm")  # one file is a source too
    ds = pydicom.dcmread(path)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(source).SeriesInstanceUID
    np.testing.assert_array_equal(read_seg(path, label_map).array, label_map.array)
    check_seg_against_source(path, label_map, [source])
    assert _dciodvfy_errors(path) == []
    image, value = _dcmqi_segments(path, tmp_path / "dcmqi")[1]
    assert _voxels_in(image, image.array == value, label_map) == set(
        map(tuple, np.argwhere(label_map.array == 1))
    )


@pytest.mark.realdata
def test_label_map_stored_in_another_axis_order_is_written_on_the_source_grid(segdata, tmp_path):
    label_map = read_image(segdata / "liver_spine_gapped_seg.nrrd").as_label_map()
    # Same voxel centres, axes stored as (k, i reversed, j): what a reorientation step may produce.
    n_i = label_map.spatial_shape[0]
    perm = np.zeros((4, 4))
    perm[0, 1], perm[1, 2], perm[2, 0], perm[3, 3] = -1, 1, 1, 1
    perm[0, 3] = n_i - 1
    reordered = LabelMap(np.flip(label_map.array, 0).transpose(2, 0, 1), label_map.affine @ perm)
    assert reordered.orientation != label_map.orientation
    path = write_seg(reordered, segdata / "ct-3slice", tmp_path / "seg.dcm")
    back = read_seg(path, label_map, label_values={1: 1, 2: 5})
    np.testing.assert_array_equal(back.array, label_map.array)


def test_oblique_series_round_trips_against_simpleitk_geometry(tmp_path):
    folder = tmp_path / "oblique"
    folder.mkdir()
    _synthetic_series(folder, 5, rotate_deg=25.0)
    grid, ordered_files = _sitk_grid(folder)
    rng = np.random.default_rng(0)
    labels = LabelMap(rng.integers(0, 3, grid.spatial_shape).astype(np.uint8), grid.affine)
    path = write_seg(labels, folder, tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in ordered_files]
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    np.testing.assert_array_equal(pixels, labels.array.transpose(2, 1, 0))
    np.testing.assert_array_equal(read_seg(path, labels).array, labels.array)


@pytest.mark.realdata
def test_one_slice_source_takes_the_matching_slice_of_a_mask(segdata, tmp_path):
    both = read_image(segdata / "liver_spine_seg.nrrd").as_label_map()
    top = pydicom.dcmread(segdata / "ct-3slice" / "01.dcm", stop_before_pixels=True)
    k = _slice_index(top, both)
    affine = both.affine.copy()
    affine[:3, 3] = both.voxel_to_world([0, 0, k])
    one_slice = LabelMap(both.array[:, :, k : k + 1], affine)
    path = write_seg(one_slice, [segdata / "ct-3slice" / "01.dcm"], tmp_path / "seg.dcm")
    np.testing.assert_array_equal(read_seg(path, one_slice).array, one_slice.array)
    np.testing.assert_array_equal(read_seg(path, both).array[:, :, k], both.array[:, :, k])


@pytest.mark.realdata
def test_pipeline_path_read_dicom_threshold_write_and_verify(segdata, tmp_path):
    from medpipes.core.io.dicom import read_dicom

    ct = read_dicom(segdata / "ct-3slice")
    bone = LabelMap((ct.array > 200).astype(np.uint8), ct.affine, ct.meta)  # HU > 200: a real, ragged mask
    assert bone.array.any()
    path = write_seg(bone, ct.meta.source_paths, tmp_path / "bone.dcm", segment_names={1: "bone"})
    check_seg_against_source(path, bone, ct.meta.source_paths, segment_names={1: "bone"})
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance(ct.meta.extra["sop_instance_uids"], combine_segments=True)
    np.testing.assert_array_equal(pixels, bone.array.transpose(2, 1, 0))  # k follows the reader's slice order


# --- refusals ------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("change", ["shifted_half_voxel", "cropped", "other_spacing"])
def test_mask_off_the_source_grid_raises_geometry_error_and_writes_nothing(segdata, tmp_path, change):
    label_map = read_image(segdata / "liver_seg.nrrd").as_label_map()
    affine = label_map.affine.copy()
    array = label_map.array
    if change == "shifted_half_voxel":
        affine[0, 3] += 0.4
    elif change == "cropped":
        array = array[:-1]
    else:
        affine[:3, :3] *= 1.01
    target = tmp_path / "seg.dcm"
    with pytest.raises(
        GeometryError, match="not the source series' grid.*resample the mask onto the source series"
    ):
        write_seg(LabelMap(array, affine), segdata / "ct-3slice", target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.realdata
def test_grid_within_a_micrometre_is_the_same_grid(segdata, tmp_path):
    label_map = read_image(segdata / "liver_seg.nrrd").as_label_map()
    affine = label_map.affine.copy()
    affine[:3, 3] += 5e-4
    path = write_seg(LabelMap(label_map.array, affine), segdata / "ct-3slice", tmp_path / "seg.dcm")
    np.testing.assert_array_equal(read_seg(path, label_map).array, label_map.array)


@pytest.mark.realdata
def test_empty_label_map_is_refused_as_nothing_to_write(segdata, tmp_path):
    liver = read_image(segdata / "liver_seg.nrrd").as_label_map()
    empty = liver.with_array(np.zeros_like(liver.array))
    with pytest.raises(InputError, match="nothing to write.*allow_empty=True"):
        write_seg(empty, segdata / "ct-3slice", tmp_path / "seg.dcm")
    with pytest.raises(InputError, match="nothing to write"):
        write_seg(empty, segdata / "ct-3slice", tmp_path / "seg.dcm", allow_empty=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.realdata
def test_empty_tumour_mask_allowed_is_written_as_explicit_empty_frames(segdata, tmp_path):
    liver = read_image(segdata / "liver_seg.nrrd").as_label_map()
    empty = liver.with_array(np.zeros_like(liver.array))
    path = write_seg(
        empty, segdata / "ct-3slice", tmp_path / "seg.dcm", segment_names={1: "tumour"}, allow_empty=True
    )
    ds = pydicom.dcmread(path)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["tumour"]
    assert int(ds.NumberOfFrames) == 3  # one all-zero frame per source slice, not a segment without frames
    assert not read_seg(path, liver).array.any()
    check_seg_against_source(path, empty, segdata / "ct-3slice", segment_names={1: "tumour"})
    image, value = _dcmqi_segments(path, tmp_path / "dcmqi")[1]
    assert not (image.array == value).any()
    assert _dciodvfy_errors(path) == []


@pytest.mark.realdata
def test_named_segment_absent_from_the_map_needs_allow_empty(segdata, tmp_path):
    liver = read_image(segdata / "liver_seg.nrrd").as_label_map()
    names = {1: "liver", 2: "tumour"}
    with pytest.raises(InputError, match="label 2 .*'tumour'.*allow_empty=True"):
        write_seg(liver, segdata / "ct-3slice", tmp_path / "seg.dcm", segment_names=names)
    path = write_seg(
        liver, segdata / "ct-3slice", tmp_path / "seg.dcm", segment_names=names, allow_empty=True
    )
    masks = read_seg_segments(path, liver)
    np.testing.assert_array_equal(masks[1].array.astype(bool), liver.array == 1)
    assert not masks[2].array.any()
    check_seg_against_source(path, liver, segdata / "ct-3slice", segment_names=names)
    assert _dciodvfy_errors(path) == []


@pytest.mark.realdata
def test_label_left_out_of_segment_names_is_refused(segdata, tmp_path):
    both = read_image(segdata / "liver_spine_seg.nrrd").as_label_map()
    with pytest.raises(InputError, match="label 2 that segment_names does not name"):
        write_seg(both, segdata / "ct-3slice", tmp_path / "seg.dcm", segment_names={1: "liver"})


@pytest.mark.realdata
def test_names_longer_than_dicom_allows_and_codes_for_unknown_labels_are_refused(segdata, tmp_path):
    liver = read_image(segdata / "liver_seg.nrrd").as_label_map()
    with pytest.raises(InputError, match=r"segment_names\[1\] .*1 to 64 characters"):
        write_seg(liver, segdata / "ct-3slice", tmp_path / "seg.dcm", segment_names={1: "x" * 65})
    with pytest.raises(InputError, match="segment_codes has label 3, which is no segment written"):
        write_seg(liver, segdata / "ct-3slice", tmp_path / "seg.dcm", segment_codes={3: SegmentCodes()})
    with pytest.raises(InputError, match="algorithm_type 'GUESSED'"):
        write_seg(liver, segdata / "ct-3slice", tmp_path / "seg.dcm", algorithm_type="GUESSED")
    assert list(tmp_path.iterdir()) == []


def test_unevenly_spaced_source_is_refused(tmp_path):
    folder = tmp_path / "gap"
    folder.mkdir()
    _synthetic_series(folder, 5, drop=2)
    grid, _ = _sitk_grid(folder)  # SimpleITK still makes a 4-slice grid of it
    labels = LabelMap(np.ones(grid.spatial_shape, np.uint8), grid.affine)
    with pytest.raises(GeometryError, match="not evenly spaced"):
        write_seg(labels, folder, tmp_path / "seg.dcm")


def test_folder_with_two_series_is_refused(tmp_path):
    folder = tmp_path / "two"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    _synthetic_series(folder / "a", 3)
    _synthetic_series(folder / "b", 3)
    grid, _ = _sitk_grid(folder / "a")
    labels = LabelMap(np.ones(grid.spatial_shape, np.uint8), grid.affine)
    with pytest.raises(DicomError, match="holds 2 series.*pass the files of the one series"):
        write_seg(labels, folder, tmp_path / "seg.dcm")


# --- what is written ---------------------------------------------------------------------------
@pytest.mark.realdata
def test_segments_follow_ascending_labels_with_given_names_codes_and_algorithm(segdata, tmp_path):
    label_map = read_image(segdata / "liver_spine_gapped_seg.nrrd").as_label_map()  # labels 1 and 5
    path = write_seg(
        label_map,
        segdata / "ct-3slice",
        tmp_path / "seg.dcm",
        segment_names={5: "spine", 1: "liver"},
        segment_codes={1: SegmentCodes(codes.SCT.AnatomicalStructure, codes.SCT.Liver)},
        algorithm_name="liver-net",
        algorithm_version="2.1",
    )
    ds = pydicom.dcmread(path)
    first, second = ds.SegmentSequence
    assert (first.SegmentNumber, first.SegmentLabel) == (1, "liver")
    assert (second.SegmentNumber, second.SegmentLabel) == (2, "spine")
    assert first.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Liver.value
    assert first.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Anatomical Structure"
    assert second.SegmentedPropertyCategoryCodeSequence[0].CodeValue == codes.SCT.Tissue.value  # the default
    assert second.SegmentAlgorithmType == "AUTOMATIC" and second.SegmentAlgorithmName == "liver-net"
    assert second.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "2.1"
    assert first.RecommendedDisplayCIELabValue != second.RecommendedDisplayCIELabValue
    masks = read_seg_segments(path, label_map)
    np.testing.assert_array_equal(masks[2].array.astype(bool), label_map.array == 5)
    assert masks[2].meta.extra["segment_labels"] == {1: "liver", 2: "spine"}


@pytest.mark.realdata
def test_default_version_is_the_installed_medpipes_version(written):
    path, _, _ = written("ct-3slice", "liver_seg.nrrd")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    version = importlib.metadata.version("medpipes")
    assert ds.SoftwareVersions == version and ds.Manufacturer == "medpipes"
    assert ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == version


@pytest.mark.realdata
def test_source_datasets_are_not_modified(segdata, tmp_path):
    label_map = read_image(segdata / "liver_seg.nrrd").as_label_map()
    datasets = _datasets(segdata / "ct-3slice")
    before = [copy.deepcopy(ds) for ds in datasets]
    write_seg(label_map, datasets, tmp_path / "seg.dcm")
    assert datasets == before


# --- atomic writing --------------------------------------------------------------------------------
@pytest.mark.realdata
def test_failed_write_leaves_no_file_and_keeps_the_previous_one(segdata, tmp_path, monkeypatch):
    label_map = read_image(segdata / "liver_seg.nrrd").as_label_map()
    target = tmp_path / "seg.dcm"
    target.write_bytes(b"previous result")

    def broken_save(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(hd.seg.Segmentation, "save_as", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_seg(label_map, segdata / "ct-3slice", target)
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.dcm"]


# --- verification and reading other tools' SEGs ------------------------------------------------------
@pytest.mark.realdata
def test_check_fails_on_another_mask_or_another_series(written, segdata):
    path, liver, _ = written("ct-3slice", "liver_seg.nrrd")
    check_seg_against_source(path, liver, segdata / "ct-3slice")
    spine = read_image(segdata / "spine_seg.nrrd").as_label_map()
    with pytest.raises(ProcessingError, match="segment 1 .*differs from label 2"):
        check_seg_against_source(path, spine.with_array((spine.array > 0).astype(np.uint8) * 2))
    with pytest.raises(ProcessingError, match="not the source series"):
        check_seg_against_source(path, liver, segdata / "23x38x3" / "image")
    both = read_image(segdata / "liver_spine_seg.nrrd").as_label_map()
    with pytest.raises(ProcessingError, match=r"holds segments \[1\], expected \[1, 2\]"):
        check_seg_against_source(path, both)


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("seg", "label"),
    [
        ("liver.dcm", "liver_seg.nrrd"),
        ("23x38x3/seg/label.seg", "23x38x3/nrrd/label.nrrd"),
        ("24x38x3/seg/label.seg", "24x38x3/nrrd/label.nrrd"),
        ("sparse-labelmap-noppv.dcm", "sparse_labelmap_noppv_seg.nrrd"),  # the newer LABELMAP type
    ],
)
def test_reads_dcmqi_seg_objects_onto_their_label_maps(segdata, seg, label):
    label_map = read_image(segdata / label).as_label_map()
    np.testing.assert_array_equal(read_seg(segdata / seg, label_map).array, label_map.array)
    assert read_seg(segdata / seg).same_grid(label_map)


@pytest.mark.realdata
def test_overlapping_segments_need_reading_one_by_one(segdata):
    grid = read_image(segdata / "partial_overlaps-1.nrrd").as_label_map()
    with pytest.raises(InputError, match="overlap.*read_seg_segments"):
        read_seg(segdata / "partial_overlaps.dcm", grid)
    masks = read_seg_segments(segdata / "partial_overlaps.dcm", grid)
    for number, (nrrd, value) in {1: (1, 1), 2: (2, 2), 3: (3, 3), 4: (1, 4), 5: (1, 5)}.items():
        expected = read_image(segdata / f"partial_overlaps-{nrrd}.nrrd").array == value
        np.testing.assert_array_equal(masks[number].array.astype(bool), expected)


@pytest.mark.realdata
def test_seg_read_onto_another_grid_raises_geometry_error(written, segdata):
    path, _, _ = written("ct-3slice", "liver_seg.nrrd")
    tiny = read_image(segdata / "23x38x3" / "nrrd" / "label.nrrd")
    with pytest.raises(GeometryError, match="does not lie on the target grid"):
        read_seg(path, tiny)
