"""DICOM in, DICOM SEG out: the Trio MPRAGE folder (held out from training) through the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medpipes.core.io import read_image
from medpipes.core.io.dicom import read_dicom, read_seg
from medpipes.pipelines.brain_extraction import run

pytestmark = pytest.mark.realdata


def test_trio_dicom_folder_gives_a_seg_that_reads_back_onto_the_nifti_mask_grid(shared_data, tmp_path: Path) -> None:
    series = shared_data("brain", "trio_b17_dicom", "t1_MPRAGEcr_noGRAPPA_19")
    outputs = run([series], tmp_path / "out", device="cpu")
    mask = read_image(outputs["mask"])
    source = read_dicom(series)
    assert mask.same_grid(source)
    seg = read_seg(outputs["seg"], source_like=mask)  # highdicom decodes the frames onto the mask's grid
    assert seg.same_grid(mask)
    np.testing.assert_array_equal(np.asarray(seg.array) > 0, np.asarray(mask.array) > 0)
    header = pydicom.dcmread(outputs["seg"], stop_before_pixels=True)
    assert header.ReferencedSeriesSequence[0].SeriesInstanceUID == source.meta.series_instance_uid
    assert header.SegmentSequence[0].SegmentLabel == "brain"
    report = json.loads(outputs["report"].read_text())
    assert report["inputs"][0]["series_instance_uid"] == source.meta.series_instance_uid
    assert any("brain_mask_seg.dcm read back" in check for check in report["geometry_checks_passed"])
    assert 800 <= report["brain_volume_ml"] <= 2200, report["warnings"]
