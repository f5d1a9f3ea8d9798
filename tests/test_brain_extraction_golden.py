"""The shipped brain-extraction model on the bundled IXI012 demo head (a DICOM zip), through the API and the command.

The stored mask comes from scripts/regenerate_brain_extraction_golden.py; after the shipped weights
change, that script makes a new one (the first test says so when the sha256 differs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medpipes.core.io import read_image
from medpipes.core.store import load_manifest
from medpipes.pipelines.brain_extraction import run
from medpipes.pipelines.brain_extraction.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO_ZIP = ROOT / "demo" / "ixi012_t1_dicom.zip"
GOLDEN = ROOT / "tests" / "golden" / "brain_extraction"
FACTS = json.loads((GOLDEN / "ixi012_brain_mask.json").read_text())


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean arrays."""
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def assert_matches_golden(mask_path: Path) -> None:
    mask = read_image(mask_path)
    golden = read_image(GOLDEN / "ixi012_brain_mask.nii.gz")
    assert mask.same_grid(golden)
    found = np.asarray(mask.array) > 0
    assert dice(found, np.asarray(golden.array) > 0) >= 0.99
    assert abs(np.count_nonzero(found) - FACTS["voxels"]) <= 0.01 * FACTS["voxels"]


@pytest.fixture(scope="module")
def api_outputs(tmp_path_factory) -> dict[str, Path]:
    return run([DEMO_ZIP], tmp_path_factory.mktemp("golden") / "out", device="cpu", threads=1)


def test_golden_mask_was_made_by_the_shipped_weights() -> None:
    entry = load_manifest().get("brain-extraction-unet")
    assert FACTS["model_sha256"] == entry.file().sha256, (
        "the shipped weights changed: run scripts/regenerate_brain_extraction_golden.py and review the new mask"
    )


def test_api_on_the_demo_dicom_zip_reproduces_the_golden_mask(api_outputs: dict[str, Path]) -> None:
    assert_matches_golden(api_outputs["mask"])
    report = json.loads(api_outputs["report"].read_text())
    assert report["status"] == "ok" and report["warnings"] == []
    assert 800 <= report["brain_volume_ml"] <= 2200
    assert report["model"]["sha256"] == FACTS["model_sha256"]
    assert report["inputs"][0]["series_instance_uid"]
    assert {"mask", "masked_image", "seg", "qc", "report"} <= set(api_outputs)


def test_command_on_the_demo_dicom_zip_reproduces_the_golden_mask(tmp_path: Path, capsys) -> None:
    code = main([str(DEMO_ZIP), str(tmp_path / "out"), "--device", "cpu", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "brain volume" in captured.out
    assert_matches_golden(tmp_path / "out" / "brain_mask.nii.gz")
    assert (tmp_path / "out" / "brain_mask_seg.dcm").is_file()
