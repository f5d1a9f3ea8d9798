"""medpipes-brain-extraction on input it cannot take: one line on stderr, exit 2, nothing written.

The bad series are real ones (a CT series, a slice of the Trio MPRAGE, a localizer made from it by
tests/dicom_cases.py); they are refused while reading, before any model is loaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medpipes.pipelines.brain_extraction.cli import main

pytestmark = pytest.mark.realdata


def run_cli(capsys, *args: object) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_one_line_and_no_output(err: str, out_dir: Path) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not out_dir.exists() or not [p for p in out_dir.rglob("*") if p.is_file()]


def test_ct_series_is_refused_as_not_mr(capsys, shared_data, tmp_path: Path) -> None:
    ct = shared_data("dicom", "dcmqi", "data", "segmentations", "23x38x3", "image")
    code, err = run_cli(capsys, ct, tmp_path / "out")
    assert code == 2
    assert "is CT" in err and "give a MR series" in err
    assert_one_line_and_no_output(err, tmp_path / "out")


def test_single_slice_is_refused(capsys, shared_data, dicom_cases, tmp_path: Path) -> None:
    series = shared_data("brain", "trio_b17_dicom", "t1_MPRAGEcr_noGRAPPA_19")
    one = tmp_path / "one_slice"
    one.mkdir()
    first = dicom_cases.sorted_by_position(series)[88][0]
    shutil.copy(first, one / first.name)
    code, err = run_cli(capsys, one, tmp_path / "out")
    assert code == 2 and "slice" in err
    assert_one_line_and_no_output(err, tmp_path / "out")


def test_localizer_is_refused(capsys, shared_data, dicom_cases, tmp_path: Path) -> None:
    series = shared_data("brain", "trio_b17_dicom", "t1_MPRAGEcr_noGRAPPA_19")
    with_localizer = dicom_cases.add_localizer(series, tmp_path / "with_localizer")
    code, err = run_cli(capsys, with_localizer / "localizer", tmp_path / "out")
    assert code == 2 and ("localizer" in err or "no series is a convertible 3D/4D image" in err)
    assert_one_line_and_no_output(err, tmp_path / "out")


def test_missing_output_dir_argument_is_a_usage_error(capsys, tmp_path: Path) -> None:
    code, err = run_cli(capsys, tmp_path / "t1.nii.gz")
    assert code == 2 and "OUTPUT_DIR" in err
