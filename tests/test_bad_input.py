"""Bad input reaches the user as ONE line naming the file and the fix, exit code 2, nothing written.

Every case checks: exit code 2, stderr exactly one line, no traceback, the line names the offending
file or folder and a fix (after the ';'), OUTPUT does not exist afterwards (nor any temporary file
beside it), and the input tree is byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medpipes.core.cli.main import main

TRIO = ("brain", "trio_b17_dicom")


def tree_hash(root: Path) -> str:
    """SHA-256 over every path name and file content under ``root`` (or of the file itself)."""
    h = hashlib.sha256()
    paths = [root] if root.is_file() else sorted(root.rglob("*"))
    for p in paths:
        h.update(str(p.relative_to(root.parent)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def fails_cleanly(capsys: pytest.CaptureFixture[str], source: Path, output: Path, *extra: str) -> str:
    """Run `medpipes convert SOURCE OUTPUT ...`; check the failure contract; return the error line."""
    before = tree_hash(source) if source.exists() else None
    beside = sorted(output.parent.iterdir()) if output.parent.is_dir() else None
    code = main(["convert", str(source), str(output), *extra])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    line = lines[0]
    assert line.startswith("error: ")
    assert ";" in line, f"no fix given after ';': {line}"
    assert not output.exists()
    if beside is not None:
        assert sorted(output.parent.iterdir()) == beside, "temporary or partial files left beside OUTPUT"
    if before is not None:
        assert tree_hash(source) == before
    return line


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    """An empty folder for outputs, apart from the inputs."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_empty_folder_fails_naming_the_folder(tmp_path: Path, out_dir: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    line = fails_cleanly(capsys, empty, out_dir / "t1.nii.gz")
    assert str(empty) in line


def test_empty_folder_fails_in_one_line_from_the_console_script(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    output = tmp_path / "t1.nii.gz"
    script = Path(sys.executable).parent / "medpipes"
    result = subprocess.run([str(script), "convert", str(empty), str(output)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert str(empty) in result.stderr
    assert not output.exists()


@pytest.mark.realdata
def test_folder_without_dicom_fails_naming_the_folder(tmp_path: Path, out_dir: Path, capsys, shared_data) -> None:
    from PIL import Image as PILImage

    folder = tmp_path / "not_dicom"
    folder.mkdir()
    (folder / "notes.txt").write_text("scan notes\n")
    (folder / "README").write_text("no images here\n")
    slice_ = pydicom.dcmread(shared_data(*TRIO, "gre_field_mapping_3", "00001.dcm")).pixel_array
    png = (255 * (slice_ - slice_.min()) / max(1, np.ptp(slice_))).astype(np.uint8)
    PILImage.fromarray(png).save(folder / "slice.png")
    line = fails_cleanly(capsys, folder, out_dir / "t1.nii.gz")
    assert str(folder) in line
    assert "DICOM" in line


@pytest.mark.realdata
def test_truncated_file_among_good_ones_fails_naming_that_file(
    tmp_path: Path, out_dir: Path, capsys, shared_data, dicom_cases
) -> None:
    series = dicom_cases.truncate_one(shared_data(*TRIO, "gre_field_mapping_3"), tmp_path / "series")
    truncated = dicom_cases.sorted_by_position(series)[18][0]
    line = fails_cleanly(capsys, series, out_dir / "phase.nii.gz")
    assert truncated.name in line


@pytest.mark.realdata
def test_several_series_without_series_option_lists_the_choices(
    tmp_path: Path, out_dir: Path, capsys, shared_data
) -> None:
    study = tmp_path / "study"
    for name in ("gre_field_mapping_2", "gre_field_mapping_3"):
        shutil.copytree(shared_data(*TRIO, name), study / name)
    line = fails_cleanly(capsys, study, out_dir / "fieldmap.nii.gz")
    assert str(study) in line
    assert "--series" in line
    assert "number 2" in line and "number 3" in line


@pytest.mark.realdata
def test_folder_output_with_a_truncated_file_never_writes_that_series(
    tmp_path: Path, out_dir: Path, capsys, shared_data, dicom_cases
) -> None:
    """The reader decides whether a series with a broken file is a candidate: if it is, loading it
    fails the whole run (one error line, nothing written); if not, it is skipped with one warning."""
    study = tmp_path / "study"
    shutil.copytree(shared_data(*TRIO, "t1_MPRAGEcr_noGRAPPA_19"), study / "t1")
    dicom_cases.truncate_one(shared_data(*TRIO, "gre_field_mapping_3"), study / "phase")
    truncated = dicom_cases.sorted_by_position(study / "phase")[18][0]
    before = tree_hash(study)
    code = main(["convert", str(study), str(out_dir)])
    _, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert truncated.name in line and "Traceback" not in err
    if code == 2:
        assert line.startswith("error: ") and ";" in line
        assert list(out_dir.iterdir()) == []
    else:
        assert code == 0 and line.startswith("warning: series 3")
        assert sorted(p.name for p in out_dir.iterdir()) == ["19_t1_MPRAGEcr_noGRAPPA.json", "19_t1_MPRAGEcr_noGRAPPA.nii.gz"]
    assert tree_hash(study) == before


@pytest.mark.realdata
def test_folder_output_failing_while_writing_the_second_image_removes_the_first(
    tmp_path: Path, out_dir: Path, capsys, shared_data, monkeypatch
) -> None:
    import errno

    import medpipes.core.io as io

    calls: list[Path] = []
    real_write = io.write_image

    def disk_full_on_second_image(image, path):
        calls.append(Path(path))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(image, path)

    monkeypatch.setattr(io, "write_image", disk_full_on_second_image)
    study = tmp_path / "study"
    for name in ("gre_field_mapping_2", "gre_field_mapping_3"):
        shutil.copytree(shared_data(*TRIO, name), study / name)
    before = tree_hash(study)
    code = main(["convert", str(study), str(out_dir)])
    _, err = capsys.readouterr()
    assert code == 2
    (line,) = err.splitlines()
    assert "No space left on device" in line and str(out_dir) in line
    assert len(calls) == 2 and calls[0].parent == out_dir  # the first image had been written
    assert list(out_dir.iterdir()) == []  # ... and was removed with its sidecar
    assert tree_hash(study) == before


@pytest.mark.realdata
@pytest.mark.parametrize("as_folder", [False, True], ids=["file", "folder"])
def test_single_slice_where_a_volume_is_needed(
    tmp_path: Path, out_dir: Path, capsys, shared_data, as_folder: bool
) -> None:
    folder = tmp_path / "one_slice"
    folder.mkdir()
    one = shutil.copy2(shared_data(*TRIO, "gre_field_mapping_3", "00001.dcm"), folder / "00001.dcm")
    source = folder if as_folder else Path(one)
    line = fails_cleanly(capsys, source, out_dir / "vol.nii.gz", "--min-slices", "3")
    assert str(source) in line
    assert "1 slice" in line
    assert "3 slices" in line


@pytest.mark.realdata
@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.100"], ids=["jpeg-xl", "mpeg2"])
def test_unsupported_compression_names_the_transfer_syntax(
    tmp_path: Path, out_dir: Path, capsys, shared_data, dicom_cases, uid: str
) -> None:
    folder = dicom_cases.unsupported_transfer_syntax(
        [shared_data("dicom", "dcm_qa_ts", "In", "1.dcm")], tmp_path / "compressed", uid
    )
    line = fails_cleanly(capsys, folder, out_dir / "img.nii.gz")
    assert "1.dcm" in line
    assert uid in line


def test_missing_input_path(tmp_path: Path, out_dir: Path, capsys) -> None:
    missing = tmp_path / "no_such_study"
    line = fails_cleanly(capsys, missing, out_dir / "t1.nii.gz")
    assert str(missing) in line


@pytest.mark.realdata
def test_unknown_output_suffix_fails_before_reading(tmp_path: Path, out_dir: Path, capsys, shared_data) -> None:
    output = out_dir / "t1.png"
    line = fails_cleanly(capsys, shared_data(*TRIO, "gre_field_mapping_3"), output)
    assert "t1.png" in line and ".nii.gz" in line


@pytest.mark.realdata
def test_output_in_a_missing_folder(tmp_path: Path, capsys, shared_data) -> None:
    output = tmp_path / "not_created" / "t1.nii.gz"
    line = fails_cleanly(capsys, shared_data(*TRIO, "gre_field_mapping_3"), output)
    assert str(output.parent) in line
    assert "create" in line


@pytest.mark.realdata
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc, a folder nobody can write to")
def test_unwritable_output_folder(capsys, shared_data) -> None:
    output = Path("/proc/self/t1.nii.gz")
    line = fails_cleanly(capsys, shared_data(*TRIO, "gre_field_mapping_3"), output)
    assert "/proc/self" in line
    assert "writable" in line


@pytest.mark.realdata
def test_output_inside_the_input_folder_is_refused(tmp_path: Path, capsys, shared_data) -> None:
    series = tmp_path / "series"
    shutil.copytree(shared_data(*TRIO, "gre_field_mapping_3"), series)
    line = fails_cleanly(capsys, series, series / "phase.nii.gz")
    assert "inside the input folder" in line


@pytest.mark.realdata
def test_series_option_on_a_nifti_input(tmp_path: Path, out_dir: Path, capsys, shared_data) -> None:
    nifti = shared_data("brain", "nichart", "t1", "Subj1_T1.nii.gz")
    line = fails_cleanly(capsys, nifti, out_dir / "t1.nrrd", "--series", "3")
    assert "--series" in line


@pytest.mark.realdata
def test_unknown_series_selector_says_how_to_list_series(tmp_path: Path, out_dir: Path, capsys, shared_data) -> None:
    line = fails_cleanly(capsys, shared_data(*TRIO, "gre_field_mapping_3"), out_dir / "p.nii.gz", "--series", "77")
    assert "77" in line
