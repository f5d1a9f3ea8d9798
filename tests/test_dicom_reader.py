"""The DICOM series reader, on real series copied into tmp_path and edited with pydicom."""

from __future__ import annotations

import gzip
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import DeflatedExplicitVRLittleEndian, MPEG2MPML, generate_uid

from medpipes.core.errors import DicomError, SeriesSelectionError
from medpipes.core.image import Image
from medpipes.core.io.dicom import read_dicom, scan_dicom

pytestmark = pytest.mark.realdata


# --- helpers ------------------------------------------------------------------------------------
@pytest.fixture()
def mprage(shared_data) -> Path:
    return shared_data("brain", "trio_b17_dicom", "t1_MPRAGEcr_noGRAPPA_19")


def _by_position(folder: Path) -> list[pydicom.Dataset]:
    """The datasets of a folder sorted along their slice normal."""
    dss = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    iop = np.array(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(dss, key=lambda d: float(np.array(d.ImagePositionPatient, dtype=float) @ normal))


def _subset(src: Path, dst: Path, n: int = 12, start: int = 80) -> list[pydicom.Dataset]:
    """Copy n consecutive slices (by position) of a real series into dst; return them in slice order."""
    dst.mkdir(parents=True, exist_ok=True)
    chosen = _by_position(src)[start : start + n]
    for i, ds in enumerate(chosen):
        ds.save_as(dst / f"slice{i:03d}.dcm")
    return chosen


def _normal(ds: pydicom.Dataset) -> np.ndarray:
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    return np.cross(iop[:3], iop[3:])


def _set_positions(folder: Path, offsets: dict[int, np.ndarray]) -> None:
    """Add offsets (mm, LPS) to the ImagePositionPatient of slice files slice{k:03d}.dcm."""
    for k, delta in offsets.items():
        path = folder / f"slice{k:03d}.dcm"
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [f"{v:.6f}" for v in np.array(ds.ImagePositionPatient, dtype=float) + delta]
        ds.save_as(path)


def LPS_to_RAS(xyz: np.ndarray) -> np.ndarray:  # noqa: N802 - reads like the conversion it is
    return xyz * np.array([-1.0, -1.0, 1.0])


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- sorting, rescale, grouping -----------------------------------------------------------------
def test_sorted_by_position_not_instance_number(mprage, tmp_path):
    chosen = _subset(mprage, tmp_path / "plain")
    expected = read_dicom(tmp_path / "plain")
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    numbers = list(range(1, len(chosen) + 1))
    random.Random(3).shuffle(numbers)
    for ds, number in zip(chosen, numbers):
        ds.InstanceNumber = number
        ds.save_as(shuffled / f"{generate_uid()[-12:]}.dcm")  # file names carry no order either
    image = read_dicom(shuffled)
    assert image.shape == (256, 256, len(chosen))
    np.testing.assert_array_equal(image.array, expected.array)
    np.testing.assert_allclose(image.affine, expected.affine, atol=1e-6)
    # slice k holds the k-th file along the normal, whatever its InstanceNumber
    for k, ds in enumerate(chosen):
        np.testing.assert_array_equal(image.array[:, :, k], ds.pixel_array.T)
    assert image.meta.extra["sop_instance_uids"] == [ds.SOPInstanceUID for ds in chosen]
    world0 = LPS_to_RAS(np.array(chosen[0].ImagePositionPatient, dtype=float))
    np.testing.assert_allclose(image.voxel_to_world([0, 0, 0]), world0, atol=1e-4)


def test_slope_one_intercept_zero_keeps_stored_integers(mprage, tmp_path):
    chosen = _subset(mprage, tmp_path, n=3)
    image = read_dicom(tmp_path)
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image.array[:, :, 1], chosen[1].pixel_array.T)


def test_rescale_slope_and_intercept_applied(mprage, tmp_path):
    chosen = _subset(mprage, tmp_path / "int", n=3)
    for p in (tmp_path / "int").glob("*.dcm"):
        ds = pydicom.dcmread(p)
        ds.RescaleSlope, ds.RescaleIntercept = "2", "-1024"
        ds.save_as(p)
    image = read_dicom(tmp_path / "int")
    assert image.dtype.kind == "i"  # integral scaling stays integer (as dcm2niix's CT)
    np.testing.assert_array_equal(image.array[:, :, 0], chosen[0].pixel_array.T.astype(np.int64) * 2 - 1024)

    _subset(mprage, tmp_path / "float", n=3)
    for p in (tmp_path / "float").glob("*.dcm"):
        ds = pydicom.dcmread(p)
        ds.RescaleSlope, ds.RescaleIntercept = "0.5", "0.25"
        ds.save_as(p)
    image = read_dicom(tmp_path / "float")
    assert image.dtype == np.float32
    np.testing.assert_allclose(image.array[:, :, 2], chosen[2].pixel_array.T * 0.5 + 0.25)


def test_two_echoes_of_one_series_are_split_by_echo(shared_data):
    scan = scan_dicom(shared_data("brain", "trio_b17_dicom", "gre_field_mapping_2"))
    by_id = {s.id: s for s in scan.series}
    assert set(by_id) == {"2", "2-e2"}
    assert by_id["2"].echo_time_ms == pytest.approx(4.92)
    assert by_id["2-e2"].echo_time_ms == pytest.approx(7.38)
    assert by_id["2"].series_instance_uid == by_id["2-e2"].series_instance_uid
    assert all("multi-echo" in s.flags for s in scan.series)
    assert by_id["2"].n_files + by_id["2-e2"].n_files == 36
    assert scan.n_non_dicom == 1  # the .nfo text file
    with pytest.raises(SeriesSelectionError, match="pass --series"):
        scan.select(None)
    assert read_dicom(scan.root, series="2-e2").meta.extra["echo_time_ms"] == pytest.approx(7.38)


def test_localizers_are_listed_but_not_candidates(mprage, tmp_path):
    chosen = _subset(mprage, tmp_path / "t1", n=6)
    loc_uid = generate_uid()
    planes = ([0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1], [1, 0, 0, 0, 1, 0])
    for i, iop in enumerate(planes):
        ds = chosen[i].copy()
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SOPInstanceUID = loc_uid, 1, generate_uid()
        ds.SeriesDescription = "3-plane loc"
        ds.ImageOrientationPatient = iop
        ds.save_as(tmp_path / f"loc{i}.dcm")
    flagged = chosen[0].copy()  # a LOCALIZER image type alone also marks a scout
    flagged.SeriesInstanceUID, flagged.SeriesNumber, flagged.SOPInstanceUID = generate_uid(), 99, generate_uid()
    flagged.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    flagged.save_as(tmp_path / "scout.dcm")
    scan = scan_dicom(tmp_path)
    locs = [s for s in scan.series if "localizer" in s.flags]
    assert {s.series_number for s in locs} == {1, 99}
    assert len([s for s in locs if s.series_number == 1]) == 3
    assert not any(s.is_candidate for s in locs)
    assert scan.select(None).series_number == 19
    assert read_dicom(tmp_path).shape == (256, 256, 6)


# --- inputs -------------------------------------------------------------------------------------
def test_zip_and_gzipped_files_read_like_the_folder(mprage, tmp_path):
    _subset(mprage, tmp_path / "dir", n=5)
    expected = read_dicom(tmp_path / "dir")
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((tmp_path / "dir").glob("*.dcm")):
            zf.write(p, f"study/{p.name}")
        zf.writestr("study/README.txt", "not DICOM")
    before = _listing(tmp_path)
    from_zip = read_dicom(archive)
    assert _listing(tmp_path) == before  # nothing extracted next to the input
    np.testing.assert_array_equal(from_zip.array, expected.array)
    np.testing.assert_allclose(from_zip.affine, expected.affine)
    assert from_zip.meta.extra["n_non_dicom"] == 1

    gz = tmp_path / "gz"
    gz.mkdir()
    for p in sorted((tmp_path / "dir").glob("*.dcm")):
        (gz / (p.name + ".gz")).write_bytes(gzip.compress(p.read_bytes()))
    before = _listing(tmp_path)
    from_gz = read_dicom(gz)
    assert _listing(tmp_path) == before
    np.testing.assert_array_equal(from_gz.array, expected.array)
    single = read_dicom(gz / "slice002.dcm.gz")
    np.testing.assert_array_equal(single.array[:, :, 0], expected.array[:, :, 2])


def test_four_d_series_keeps_volumes_in_acquisition_order(shared_data):
    folder = shared_data("dicom", "dcm_qa_nih", "In", "20180918GE", "mr_0004")
    scan = scan_dicom(folder)
    info = scan.select(None)
    assert "4d" in info.flags and (info.n_slices, info.n_volumes) == (15, 10)
    image = read_dicom(folder)
    assert image.shape == (64, 64, 15, 10)
    files = [pydicom.dcmread(p) for p in folder.glob("*.dcm")]
    normal = _normal(files[0])
    lowest = min(float(np.array(d.ImagePositionPatient, dtype=float) @ normal) for d in files)
    at_bottom = sorted(
        (d for d in files if abs(float(np.array(d.ImagePositionPatient, dtype=float) @ normal) - lowest) < 1e-3),
        key=lambda d: int(d.InstanceNumber),
    )
    assert len(at_bottom) == 10
    for t in (0, 9):
        np.testing.assert_array_equal(image.array[:, :, 0, t], at_bottom[t].pixel_array.T)


def test_non_dicom_files_are_counted_and_ignored(shared_data):
    scan = scan_dicom(shared_data("brain", "trio_b17_dicom"))
    assert scan.n_non_dicom == 5  # .nfo files, notes.txt, SOURCE.md
    assert scan.unreadable == []
    assert {s.series_number for s in scan.series} == {2, 3, 19}


def test_empty_folder_and_folder_without_dicom_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DicomError, match="empty folder; point at a folder of DICOM files"):
        read_dicom(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "README").write_text("hello")
    (tmp_path / "text" / "a.nii").write_bytes(b"\x5c\x01\x00\x00" + bytes(400))
    with pytest.raises(DicomError, match="no DICOM files among 2 files"):
        read_dicom(tmp_path / "text")


# --- geometry: tilt, uneven, missing, single slice ----------------------------------------------
def test_gantry_tilt_is_corrected_and_reported(mprage, tmp_path):
    chosen = _subset(mprage, tmp_path, n=12)
    row_cos = np.array(chosen[0].ImageOrientationPatient[:3], dtype=float)
    dx = float(chosen[0].PixelSpacing[1])
    shift_per_slice = 0.25 * dx  # a quarter voxel per slice along the rows: atan(0.25 / 1 mm) = 14 degrees
    _set_positions(tmp_path, {k: k * shift_per_slice * row_cos for k in range(12)})
    # a landmark on slice 8 (shifted by exactly 2 voxels there, so it survives resampling intact)
    path = tmp_path / "slice008.dcm"
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.copy()
    r, c = 120, 100
    pixels[r, c] = 4000
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)
    ipp = np.array(ds.ImagePositionPatient, dtype=float)
    col_cos = np.array(ds.ImageOrientationPatient[3:], dtype=float)
    truth_lps = ipp + c * dx * row_cos + r * float(ds.PixelSpacing[0]) * col_cos

    scan = scan_dicom(tmp_path)
    assert "tilt" in scan.select(None).flags
    image = read_dicom(tmp_path)
    assert image.meta.extra["gantry_tilt_deg"] == pytest.approx(np.degrees(np.arctan(0.25)), abs=0.05)
    assert any("gantry tilt" in w for w in image.meta.extra["warnings"])
    direction = image.direction
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-6)  # orthogonal grid
    peak = np.unravel_index(np.argmax(image.array), image.shape)
    assert image.array[peak] == 4000
    np.testing.assert_allclose(image.voxel_to_world(peak), LPS_to_RAS(truth_lps), atol=1e-3)


def test_uneven_spacing_is_resampled_or_refused(mprage, tmp_path):
    chosen = _subset(mprage, tmp_path, n=10)
    normal = _normal(chosen[0])
    _set_positions(tmp_path, {k: 0.3 * normal for k in range(5, 10)})  # one step of 1.3 mm among 1 mm steps
    info = scan_dicom(tmp_path).select(None)
    assert "uneven" in info.flags
    image = read_dicom(tmp_path)
    assert any("uneven" in w for w in image.meta.extra["warnings"])
    assert image.spacing[2] == pytest.approx(1.0, abs=1e-3)
    assert image.shape[2] == 10  # 9.3 mm at 1 mm: 10 slices
    np.testing.assert_array_equal(image.array[:, :, 0], chosen[0].pixel_array.T)
    with pytest.raises(DicomError, match=r"uneven slice spacing.*irregular=\"resample\".*--resample-irregular"):
        read_dicom(tmp_path, irregular="error")


def test_missing_slice_is_detected_under_both_policies(mprage, tmp_path):
    chosen = _subset(mprage, tmp_path, n=10)
    (tmp_path / "slice004.dcm").unlink()
    info = scan_dicom(tmp_path).select(None)
    assert "missing" in info.flags and info.n_slices == 10
    image = read_dicom(tmp_path)
    assert image.shape == (256, 256, 10)
    assert any("missing" in w for w in image.meta.extra["warnings"])
    filled = (chosen[3].pixel_array.astype(float) + chosen[5].pixel_array) / 2
    np.testing.assert_allclose(image.array[:, :, 4], np.rint(filled.T), atol=1)  # linear between neighbours
    np.testing.assert_array_equal(image.array[:, :, 5], chosen[5].pixel_array.T)
    with pytest.raises(DicomError, match=r"missing slice.*between positions.*irregular=\"resample\""):
        read_dicom(tmp_path, irregular="error")


def test_single_slice_reads_as_one_slice_volume_unless_more_are_needed(mprage, tmp_path):
    chosen = _subset(mprage, tmp_path, n=1)
    image = read_dicom(tmp_path)
    assert image.shape == (256, 256, 1)
    assert "single-slice" in image.meta.extra["flags"]
    np.testing.assert_array_equal(image.array[:, :, 0], chosen[0].pixel_array.T)
    with pytest.raises(DicomError, match="has 1 slice; a volume of at least 3 slices is needed; pick a 3D series"):
        read_dicom(tmp_path, min_slices=3)


# --- transfer syntaxes and broken files ---------------------------------------------------------
def test_deflated_transfer_syntax_reads_like_the_original(shared_data, tmp_path):
    src = shared_data("dicom", "dcm_qa_ts", "In", "1.dcm")
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    assert (tmp_path / "deflated.dcm").stat().st_size < src.stat().st_size  # really deflated
    image = read_dicom(tmp_path / "deflated.dcm")
    np.testing.assert_array_equal(image.array, read_dicom(src).array)
    assert "Deflated" in image.meta.extra["transfer_syntax"]


def test_truncated_file_in_the_series_is_an_error_naming_it(mprage, tmp_path):
    _subset(mprage, tmp_path, n=6)
    victim = tmp_path / "slice003.dcm"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 5000])
    scan = scan_dicom(tmp_path)
    assert [p.name for p, _ in scan.unreadable] == ["slice003.dcm"]
    assert "truncated" in scan.unreadable[0][1]
    with pytest.raises(DicomError, match=r"slice003\.dcm.*truncated.*re-export"):
        read_dicom(tmp_path, series="19")
    victim.write_bytes(data[:600])  # cut inside the header
    with pytest.raises(DicomError, match=r"slice003\.dcm.*re-export"):
        read_dicom(tmp_path, series="19")


def test_unsupported_compression_names_the_syntax_and_the_fix(shared_data, tmp_path):
    ds = pydicom.dcmread(shared_data("dicom", "dcm_qa_ts", "In", "5.dcm"))  # JPEG lossless pixels
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.save_as(tmp_path / "video.dcm")
    info = scan_dicom(tmp_path).series[0]
    assert not info.is_candidate and "compressed" in info.flags
    with pytest.raises(DicomError, match=r"video\.dcm.*MPEG2.*1\.2\.840\.10008\.1\.2\.4\.100.*gdcmconv --raw"):
        read_dicom(tmp_path)


def test_compressed_syntaxes_decode_to_the_same_image(shared_data):
    folder = shared_data("dicom", "dcm_qa_ts", "In")
    scan = scan_dicom(folder)
    images = [read_dicom(folder, series=str(n)) for n in range(1, 10)]
    for image in images[1:]:
        np.testing.assert_array_equal(image.array, images[0].array)
    assert len(scan.series) == 9 and all(s.n_slices == 35 and "mosaic" in s.flags for s in scan.series)


# --- selection and cross-checks -----------------------------------------------------------------
def test_select_by_id_number_or_uid(shared_data):
    scan = scan_dicom(shared_data("brain", "trio_b17_dicom"))
    t1 = scan.select("19")
    assert scan.select(t1.series_instance_uid) == t1
    with pytest.raises(SeriesSelectionError, match=r"choices: .*19: t1_MPRAGEcr_noGRAPPA.*pass --series ID"):
        scan.select(None)
    with pytest.raises(SeriesSelectionError, match="no series '42'"):
        scan.select("42")


def test_mprage_geometry_matches_simpleitk(mprage):
    image = read_dicom(mprage)
    assert image.shape == (256, 256, 176)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(mprage)))
    reference = Image.from_sitk(reader.Execute())
    np.testing.assert_allclose(image.affine, reference.affine, atol=1e-3)
    np.testing.assert_array_equal(image.array, reference.array)
    meta = image.meta
    assert meta.series_number == 19 and meta.modality == "MR"
    assert len(meta.source_paths) == 176 and len(meta.extra["sop_instance_uids"]) == 176
    assert meta.extra["repetition_time_ms"] == pytest.approx(float(pydicom.dcmread(meta.source_paths[0]).RepetitionTime))
    assert meta.extra["manufacturer"] == "SIEMENS"


def test_enhanced_philips_field_map_splits_magnitude_and_hz_map(shared_data):
    scan = scan_dicom(shared_data("dicom", "dcm_qa_enh", "In", "Philips"))
    ids = [s.id for s in scan.series]
    assert ids == ["801", "801-e2"]
    assert all("multiframe" in s.flags and s.n_slices == 32 for s in scan.series)
    hz = read_dicom(scan.root, series="801-e2")
    assert hz.dtype == np.float32 and -501 < hz.array.min() < hz.array.max() < 501  # Hz after precise scaling


def test_copies_of_the_input_are_never_written(mprage, tmp_path):
    _subset(mprage, tmp_path, n=3)
    before = {p: p.read_bytes() for p in tmp_path.glob("*")}
    read_dicom(tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.glob("*")} == before


def test_dataset_without_preamble_is_read_as_dicom(shared_data, tmp_path):
    from pydicom.filewriter import dcmwrite

    src = shared_data("dicom", "dcm_qa_ts", "In", "2.dcm")
    ds = pydicom.dcmread(src)
    del ds.file_meta
    ds.preamble = None
    with (tmp_path / "raw").open("wb") as fh:
        dcmwrite(fh, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert (tmp_path / "raw").read_bytes()[128:132] != b"DICM"
    image = read_dicom(tmp_path / "raw")
    reference = read_dicom(src)
    np.testing.assert_array_equal(image.array, reference.array)
    np.testing.assert_allclose(image.affine, reference.affine)


def test_a_folder_holding_only_a_localizer_asks_for_a_series(mprage, tmp_path):
    chosen = _subset(mprage, tmp_path, n=2)
    for i, ds in enumerate(chosen):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(tmp_path / f"slice{i:03d}.dcm")
    with pytest.raises(SeriesSelectionError, match="no series is a convertible 3D/4D image.*--series"):
        read_dicom(tmp_path)
    assert read_dicom(tmp_path, series="19").shape == (256, 256, 2)


def test_truncated_compressed_file_is_an_error_naming_it(shared_data, tmp_path):
    src = shared_data("dicom", "dcm_qa_frag", "In", "5001_anat-T1w_acq-tfl")
    for name in ("5001010.dcm", "5001011.dcm", "5001012.dcm"):
        shutil.copy(src / name, tmp_path / name)
    victim = tmp_path / "5001011.dcm"
    victim.write_bytes(victim.read_bytes()[:-1500])  # cut inside the JPEG fragments
    scan = scan_dicom(tmp_path)
    assert [p.name for p, _ in scan.unreadable] == ["5001011.dcm"]
    with pytest.raises(DicomError, match=r"5001011\.dcm: compressed pixel data truncated.*re-export"):
        read_dicom(tmp_path)


@pytest.mark.realdata
@pytest.mark.parametrize("grid", ["23x38x3", "24x38x3"])
def test_enhanced_multiframe_ct_equals_its_classic_series(shared_data, grid):
    root = shared_data("dicom", "dcmqi", "data", "segmentations", grid)
    multiframe = read_dicom(root / "multiframe" / "mf.dcm")
    classic = read_dicom(root / "image")
    assert multiframe.meta.modality == classic.meta.modality == "CT"
    assert "multiframe" in multiframe.meta.extra["flags"]
    assert multiframe.shape == classic.shape
    assert np.allclose(multiframe.affine, classic.affine, atol=1e-3)
    assert np.array_equal(multiframe.array, classic.array)
