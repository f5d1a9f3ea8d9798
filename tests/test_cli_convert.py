"""`medpipes dicom ls` and `medpipes convert` on real DICOM (the Trio head) and on cases made from it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medpipes.core.cli.main import main
from medpipes.core.image import Image

TRIO = ("brain", "trio_b17_dicom")
MPRAGE_UID = "1.3.12.2.1107.5.2.32.35389.2010072308581490237297697.0.0.0"
PHASE_UID = "1.3.12.2.1107.5.2.32.35389.2010072308355010676364890.0.0.0"


def tree_hash(root: Path) -> str:
    """SHA-256 over every path name and file content under ``root``."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`medpipes ARGS` in-process: (exit code, stdout, stderr)."""
    code = main([*args])
    out, err = capsys.readouterr()
    return code, out, err


def ls_json(capsys, path: Path) -> dict:
    code, out, err = run(capsys, "dicom", "ls", str(path), "--json")
    assert code == 0, err
    return json.loads(out)


def converted(path: Path) -> Image:
    return Image.from_nibabel(nib.load(str(path)))


def assert_orthogonal(affine: np.ndarray) -> None:
    direction = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-6)


@pytest.fixture()
def trio(shared_data) -> Path:
    return shared_data(*TRIO)


@pytest.fixture()
def phase_series(shared_data) -> Path:
    """The Trio phase map: one echo, 36 axial 64x64 slices, small enough to copy and edit."""
    return shared_data(*TRIO, "gre_field_mapping_3")


# --- dicom ls -----------------------------------------------------------------------------------
@pytest.mark.realdata
def test_ls_json_shows_mprage_both_field_map_echoes_and_the_phase_map(trio: Path, capsys) -> None:
    listing = ls_json(capsys, trio)
    candidates = [s for s in listing["series"] if s["is_candidate"]]
    by_number: dict[int, list[dict]] = {}
    for s in candidates:
        by_number.setdefault(s["series_number"], []).append(s)
    assert sorted(by_number) == [2, 3, 19]
    (mprage,) = by_number[19]
    assert mprage["series_instance_uid"] == MPRAGE_UID
    assert mprage["n_slices"] == 176 and mprage["n_volumes"] == 1
    assert sorted(mprage["matrix"]) == [256, 256]
    np.testing.assert_allclose(mprage["spacing_mm"], [1, 1, 1], atol=1e-3)
    # the 2-echo field map is split in 2: one entry per echo
    field_map = by_number[2]
    assert len(field_map) == 2 and all("multi-echo" in s["flags"] for s in field_map)
    assert sorted(s["echo_time_ms"] for s in field_map) == [4.92, 7.38]
    assert len({s["id"] for s in field_map}) == 2
    (phase,) = by_number[3]
    assert phase["series_instance_uid"] == PHASE_UID and phase["n_slices"] == 36
    assert listing["n_non_dicom"] == 5  # three .nfo files, SOURCE.md, notes.txt
    assert listing["unreadable"] == []


@pytest.mark.realdata
def test_ls_prints_an_aligned_plain_table_with_the_counts_footer(trio: Path, capsys) -> None:
    listing = ls_json(capsys, trio)
    code, out, err = run(capsys, "dicom", "ls", str(trio))
    assert code == 0, err
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:3] == ["id", "uid", "number"]
    for s in listing["series"]:
        row = next(line for line in lines[1:] if line.split()[0] == s["id"])
        assert s["description"] in row
        assert s["series_instance_uid"][-16:] in row
    assert "5 non-DICOM ignored" in out and "0 unreadable" in out
    assert "\x1b[" not in out  # no colour codes into a pipe


@pytest.mark.realdata
def test_ls_draws_a_rich_table_on_a_terminal(trio: Path, capsys, monkeypatch) -> None:
    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run(capsys, "dicom", "ls", str(trio))
    assert code == 0, err
    assert "─" in out  # rich's rule under the header
    for text in ("2-e2", "t1_MPRAGEcr_noGRAPPA", "…0237297697.0.0.0", "multi-echo", "5 non-DICOM ignored"):
        assert text in out


@pytest.mark.realdata
def test_ls_lists_each_unreadable_file_with_its_reason(tmp_path: Path, phase_series: Path, capsys) -> None:
    folder = shutil.copytree(phase_series, tmp_path / "series")
    broken = folder / "00007.dcm"
    broken.write_bytes(broken.read_bytes()[:200])  # header cut: the file cannot even be parsed
    listing = ls_json(capsys, folder)
    assert [Path(u["path"]).name for u in listing["unreadable"]] == ["00007.dcm"]
    assert listing["unreadable"][0]["reason"]
    code, out, _ = run(capsys, "dicom", "ls", str(folder))
    assert code == 0
    assert "1 unreadable" in out
    assert any("00007.dcm" in line and line.startswith("unreadable:") for line in out.splitlines())


# --- convert into a folder ----------------------------------------------------------------------
@pytest.mark.realdata
def test_convert_to_folder_writes_each_candidate_and_echo_with_a_sidecar(trio: Path, tmp_path: Path, capsys) -> None:
    before = tree_hash(trio)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run(capsys, "convert", str(trio), str(out_dir))
    assert code == 0, err
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted(
        [
            "19_t1_MPRAGEcr_noGRAPPA.nii.gz", "19_t1_MPRAGEcr_noGRAPPA.json",
            "2_gre_field_mapping_e1.nii.gz", "2_gre_field_mapping_e1.json",
            "2_gre_field_mapping_e2.nii.gz", "2_gre_field_mapping_e2.json",
            "3_gre_field_mapping.nii.gz", "3_gre_field_mapping.json",
        ]
    )  # fmt: skip
    echoes = [json.loads((out_dir / f"2_gre_field_mapping_e{i}.json").read_text()) for i in (1, 2)]
    assert sorted(e["EchoTimeMs"] for e in echoes) == [4.92, 7.38]
    assert all(e["SeriesNumber"] == 2 and e["Modality"] == "MR" for e in echoes)
    mprage = json.loads((out_dir / "19_t1_MPRAGEcr_noGRAPPA.json").read_text())
    assert mprage["SeriesInstanceUID"] == MPRAGE_UID
    assert mprage["SourceFileCount"] == 176
    assert mprage["SeriesDescription"] == "t1_MPRAGEcr_noGRAPPA"
    assert mprage["EchoTime"] == pytest.approx(0.00398)
    assert converted(out_dir / "19_t1_MPRAGEcr_noGRAPPA.nii.gz").spatial_shape in {(176, 256, 256), (256, 256, 176)}
    for i in (1, 2):
        assert converted(out_dir / f"2_gre_field_mapping_e{i}.nii.gz").array.ndim == 3
    assert len(out.splitlines()) == 4  # one line per image written
    umask = os.umask(0o022)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in out_dir.iterdir()} == {0o666 & ~umask}  # not mkstemp's 0600
    assert tree_hash(trio) == before


@pytest.mark.realdata
def test_second_conversion_into_the_same_folder_never_overwrites(phase_series: Path, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert run(capsys, "convert", str(phase_series), str(out_dir))[0] == 0
    first = (out_dir / "3_gre_field_mapping.nii.gz").read_bytes()
    assert run(capsys, "convert", str(phase_series), str(out_dir))[0] == 0
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "3_gre_field_mapping.json", "3_gre_field_mapping.nii.gz",
        "3_gre_field_mapping_2.json", "3_gre_field_mapping_2.nii.gz",
    ]  # fmt: skip
    assert (out_dir / "3_gre_field_mapping.nii.gz").read_bytes() == first


# --- convert into a file ------------------------------------------------------------------------
@pytest.mark.realdata
def test_convert_to_file_selects_series_by_number_uid_and_id(trio: Path, tmp_path: Path, capsys) -> None:
    listing = ls_json(capsys, trio)
    phase_id = next(s["id"] for s in listing["series"] if s["series_instance_uid"] == PHASE_UID)
    images = []
    for selector in ("3", PHASE_UID, phase_id):
        output = tmp_path / f"phase_{len(images)}.nii.gz"
        code, out, err = run(capsys, "convert", str(trio), str(output), "--series", selector)
        assert code == 0, err
        assert str(output) in out
        images.append(converted(output))
    assert images[0].spatial_shape == (64, 64, 36)
    for image in images[1:]:
        assert image.same_grid(images[0], atol_mm=1e-6)
        np.testing.assert_array_equal(image.array, images[0].array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phase_0.nii.gz", "phase_1.nii.gz", "phase_2.nii.gz"]


@pytest.mark.realdata
def test_converted_mprage_has_simpleitk_series_reader_geometry(trio: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "t1.nii.gz"
    code, _, err = run(capsys, "convert", str(trio), str(output), "--series", "19")
    assert code == 0, err
    ours = converted(output)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(trio / "t1_MPRAGEcr_noGRAPPA_19"), MPRAGE_UID))
    reference = Image.from_sitk(reader.Execute())  # LPS -> RAS at the boundary
    # compared in the closest canonical (RAS) voxel order: the slice order may differ, the world may not
    a = nib.as_closest_canonical(ours.to_nibabel())
    b = nib.as_closest_canonical(reference.to_nibabel())
    assert a.shape == b.shape
    assert sorted(a.shape) == [176, 256, 256]
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))


@pytest.mark.realdata
@pytest.mark.parametrize("suffix", [".nii", ".nrrd", ".mha"])
def test_convert_writes_the_format_the_suffix_names(phase_series: Path, tmp_path: Path, capsys, suffix: str) -> None:
    from medpipes.core.io import read_image

    reference = tmp_path / "ref.nii.gz"
    assert run(capsys, "convert", str(phase_series), str(reference))[0] == 0
    output = tmp_path / f"phase{suffix}"
    code, _, err = run(capsys, "convert", str(phase_series), str(output))
    assert code == 0, err
    again = read_image(output)
    assert again.same_grid(read_image(reference), atol_mm=1e-4)
    np.testing.assert_array_equal(again.array, read_image(reference).array)


@pytest.mark.realdata
def test_nifti_input_converts_to_nrrd_with_the_same_geometry(shared_data, tmp_path: Path, capsys) -> None:
    from medpipes.core.io import read_image

    source = shared_data("brain", "nichart", "t1", "Subj5_T1.nii.gz")
    output = tmp_path / "subj5.nrrd"
    code, _, err = run(capsys, "convert", str(source), str(output))
    assert code == 0, err
    original, written = read_image(source), read_image(output)
    assert written.same_grid(original, atol_mm=1e-4)
    np.testing.assert_array_equal(written.array, original.array)


@pytest.mark.realdata
def test_nifti_input_into_a_folder_keeps_its_name_and_takes_the_format_option(
    shared_data, tmp_path: Path, capsys
) -> None:
    source = shared_data("brain", "nichart", "t1", "Subj5_T1.nii.gz")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run(capsys, "convert", str(source), str(out_dir), "--format", "mha")
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["Subj5_T1.json", "Subj5_T1.mha"]
    sidecar = json.loads((out_dir / "Subj5_T1.json").read_text())
    assert sidecar["Source"] == str(source) and sidecar["Shape"] == [88, 128, 128]


@pytest.mark.realdata
def test_ls_reads_a_zip_of_a_series(phase_series: Path, tmp_path: Path, capsys, dicom_cases) -> None:
    archive = dicom_cases.zip_folder(phase_series, tmp_path / "phase.zip")
    listing = ls_json(capsys, archive)
    (series,) = listing["series"]
    assert series["series_instance_uid"] == PHASE_UID and series["n_slices"] == 36
    assert listing["n_non_dicom"] == 1  # the .nfo file inside the zip


# --- generated edge cases -----------------------------------------------------------------------
@pytest.mark.realdata
def test_tilted_series_warns_on_stderr_and_writes_an_orthogonal_affine(
    phase_series: Path, tmp_path: Path, capsys, dicom_cases
) -> None:
    tilted = dicom_cases.gantry_tilt(phase_series, tmp_path / "tilted", degrees=15.0)
    before = tree_hash(tilted)
    output = tmp_path / "tilted.nii.gz"
    code, _, err = run(capsys, "convert", str(tilted), str(output))
    assert code == 0, err
    warnings = err.splitlines()
    assert warnings and all(line.startswith("warning: ") for line in warnings)
    assert any("tilt" in line.lower() and "15" in line for line in warnings)
    assert_orthogonal(converted(output).affine)
    assert tree_hash(tilted) == before


@pytest.mark.realdata
def test_tilted_series_with_strict_fails_and_writes_nothing(phase_series: Path, tmp_path: Path, capsys, dicom_cases) -> None:
    tilted = dicom_cases.gantry_tilt(phase_series, tmp_path / "tilted")
    output = tmp_path / "tilted.nii.gz"
    code, _, err = run(capsys, "convert", str(tilted), str(output), "--strict")
    assert code == 2
    assert len(err.splitlines()) == 1 and "tilt" in err.lower()
    assert not output.exists()


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["drop_slice", "uneven_spacing"])
def test_irregular_slices_are_resampled_with_a_warning(
    phase_series: Path, tmp_path: Path, capsys, dicom_cases, case: str
) -> None:
    series = getattr(dicom_cases, case)(phase_series, tmp_path / case)
    output = tmp_path / "out.nii.gz"
    code, _, err = run(capsys, "convert", str(series), str(output))
    assert code == 0, err
    assert err.strip() and all(line.startswith("warning: ") for line in err.splitlines())
    image = converted(output)
    assert_orthogonal(image.affine)
    assert image.spatial_shape[:2] == (64, 64)


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["gzip_files", "zip_folder", "deflate"])
def test_gzipped_zipped_and_deflated_series_convert_like_the_original(
    phase_series: Path, tmp_path: Path, capsys, dicom_cases, case: str
) -> None:
    plain = tmp_path / "plain.nii.gz"
    assert run(capsys, "convert", str(phase_series), str(plain))[0] == 0
    target = tmp_path / ("series.zip" if case == "zip_folder" else "series")
    source = getattr(dicom_cases, case)(phase_series, target)
    output = tmp_path / "out.nii.gz"
    code, _, err = run(capsys, "convert", str(source), str(output))
    assert code == 0, err
    a, b = converted(output), converted(plain)
    assert a.same_grid(b, atol_mm=1e-6)
    np.testing.assert_array_equal(a.array, b.array)


@pytest.mark.realdata
def test_localizer_is_listed_but_not_converted(phase_series: Path, tmp_path: Path, capsys, dicom_cases) -> None:
    study = dicom_cases.add_localizer(phase_series, tmp_path / "study")
    listing = ls_json(capsys, study)
    localizer = next(s for s in listing["series"] if s["series_number"] == 99)
    assert "localizer" in localizer["flags"] and not localizer["is_candidate"]
    output = tmp_path / "phase.nii.gz"  # one candidate left: no --series needed
    code, _, err = run(capsys, "convert", str(study), str(output))
    assert code == 0, err
    assert converted(output).spatial_shape == (64, 64, 36)
    out_dir = tmp_path / "all"
    out_dir.mkdir()
    code, _, err = run(capsys, "convert", str(study), str(out_dir))
    assert code == 0
    (line,) = err.splitlines()  # the skipped localizer slices share one warning line
    assert line.startswith("warning: series 99") and "not converted" in line and "localizer" in line
    assert sorted(p.name for p in out_dir.iterdir()) == ["3_gre_field_mapping.json", "3_gre_field_mapping.nii.gz"]


def test_help_of_every_command_shows_an_example(capsys) -> None:  # no data needed
    for args in (["convert", "--help"], ["dicom", "ls", "--help"], ["dicom", "--help"]):
        code, out, _ = run(capsys, *args)
        assert code == 0
        assert "Example" in out and "medpipes " in out
