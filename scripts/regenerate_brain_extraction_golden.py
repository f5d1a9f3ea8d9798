"""Regenerate the brain-extraction golden mask: the shipped model on the bundled IXI012 demo head.

    .venv/bin/python scripts/regenerate_brain_extraction_golden.py

Runs ``medpipes.pipelines.brain_extraction.run`` on ``demo/ixi012_t1_dicom.zip`` (CPU, 1 thread) and
stores its ``brain_mask.nii.gz`` with the model's sha256 and the mask's voxel count under
``tests/golden/brain_extraction/``. Run it after the shipped weights change (the golden test says so).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO_ZIP = REPO / "demo" / "ixi012_t1_dicom.zip"
GOLDEN = REPO / "tests" / "golden" / "brain_extraction"


def main() -> int:
    """Run the pipeline on the demo head and store the mask, the voxel count and the model's sha256."""
    from medpipes.core.io import read_image
    from medpipes.pipelines.brain_extraction import run

    with tempfile.TemporaryDirectory() as tmp:
        outputs = run([DEMO_ZIP], Path(tmp) / "out", device="cpu", threads=1)
        report = json.loads(outputs["report"].read_text(encoding="utf-8"))
        GOLDEN.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(outputs["mask"], GOLDEN / "ixi012_brain_mask.nii.gz")
    voxels = int(np.count_nonzero(read_image(GOLDEN / "ixi012_brain_mask.nii.gz").array))
    facts = {"model_id": report["model"]["id"], "model_sha256": report["model"]["sha256"], "voxels": voxels,
             "brain_volume_ml": report["volume_ml"]}
    (GOLDEN / "ixi012_brain_mask.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
