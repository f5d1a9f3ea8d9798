"""The bundled demo zip is exactly what scripts/make_demo_dicom.py makes from the shared IXI head."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medpipes.core import read_image

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "demo" / "ixi012_t1_dicom.zip"


@pytest.mark.realdata
def test_demo_zip_is_regenerated_byte_for_byte(shared_data, tmp_path: Path) -> None:
    source = shared_data("brain", "ixi_small", "t1", "IXI012-HH-1211_T1.nii.gz")
    out = tmp_path / "demo.zip"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_demo_dicom.py"), "--input", str(source), "--output", str(out)],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(BUNDLED.read_bytes()).hexdigest()


@pytest.mark.realdata
def test_demo_series_reads_back_onto_the_nifti_in_world_space(shared_data) -> None:
    source = read_image(shared_data("brain", "ixi_small", "t1", "IXI012-HH-1211_T1.nii.gz"))
    dicom = read_image(BUNDLED)
    # the script permutes/flips axes to an axial layout: compare voxel values at the same world points
    ijk = np.argwhere(np.ones(source.spatial_shape, bool))[::997]
    world = source.voxel_to_world(ijk)
    back = np.rint(dicom.world_to_voxel(world)).astype(int)
    assert np.allclose(dicom.voxel_to_world(back), world, atol=1e-3)
    assert np.allclose(dicom.array[tuple(back.T)], source.array[tuple(ijk.T)], rtol=1e-5, atol=1e-3)
    assert dicom.meta.modality == "MR"
