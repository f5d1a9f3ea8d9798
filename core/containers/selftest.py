"""`selftest`: run a pipeline's golden case inside the image and compare it with the stored result.

The image carries a folder (MEDPIPES_SELFTEST_DIR) with ``selftest.json``, written at build time::

    {"inputs": ["ixi012_t1_dicom.zip"], "output": "mask", "golden_mask": "ixi012_brain_mask.nii.gz",
     "golden_facts": "ixi012_brain_mask.json", "min_dice": 0.99}

``golden_facts`` holds at least ``model_sha256`` (the weights that made the golden mask).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medpipes.core.errors import InputError, ProcessingError

DEFAULT_MIN_DICE = 0.99


@dataclass(frozen=True)
class SelftestResult:
    """How the image's output compares with the stored golden result."""

    dice: float
    min_dice: float
    model_sha256: str
    golden_sha256: str | None
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def compare_with_golden(
    found: np.ndarray, golden: np.ndarray, model_sha256: str, facts: dict[str, Any], min_dice: float = DEFAULT_MIN_DICE
) -> SelftestResult:
    """Dice of the two masks (>= ``min_dice``) and the same model sha256 as the golden facts name."""
    problems: list[str] = []
    if found.shape != golden.shape:
        return SelftestResult(0.0, min_dice, model_sha256, facts.get("model_sha256"),
                              (f"mask shape {found.shape} differs from the golden mask's {golden.shape}",))  # fmt: skip
    score = dice(found > 0, golden > 0)
    if score < min_dice:
        problems.append(f"Dice {score:.4f} with the golden mask is below {min_dice}")
    golden_sha = facts.get("model_sha256")
    if golden_sha and golden_sha != model_sha256:
        problems.append(
            f"the image's weights (sha256 {model_sha256}) are not the ones that made the golden mask ({golden_sha}); "
            "regenerate the golden files or rebuild the image with the matching weights"
        )
    return SelftestResult(score, min_dice, model_sha256, golden_sha, tuple(problems))


def load_selftest_spec(folder: Path) -> dict[str, Any]:
    """``selftest.json`` of the image's selftest folder, checked for the keys the selftest needs."""
    path = folder / "selftest.json"
    if not path.is_file():
        raise InputError(f"{path}: not found; this image was built without its selftest case (scripts/build_images.py adds it)")
    spec = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in ("inputs", "golden_mask", "golden_facts") if k not in spec]
    if missing:
        raise InputError(f"{path}: missing key(s) {missing}")
    return spec


def run_selftest(pipeline: str, folder: Path, args: Sequence[str] = ()) -> int:
    """Fetch the weights, run the golden case, compare; prints one PASS line, or raises ProcessingError."""
    from medpipes.core.containers.entrypoint import PREFIX, ensure_weights, pipeline_model
    from medpipes.core.io import read_image

    parser = argparse.ArgumentParser(prog="selftest", description="Run the golden case and compare it.")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for inference")
    options = parser.parse_args(list(args))
    spec = load_selftest_spec(folder)
    ensure_weights(pipeline_model(pipeline))
    run = importlib.import_module(f"medpipes.pipelines.{pipeline}").run
    with tempfile.TemporaryDirectory(prefix="medpipes-selftest-") as tmp:
        outputs = run([folder / name for name in spec["inputs"]], Path(tmp) / "out", device=options.device,
                      threads=options.threads)  # fmt: skip
        report = json.loads(outputs["report"].read_text(encoding="utf-8"))
        found = np.asarray(read_image(outputs[spec.get("output", "mask")]).array)
    golden = np.asarray(read_image(folder / spec["golden_mask"]).array)
    facts = json.loads((folder / spec["golden_facts"]).read_text(encoding="utf-8"))
    result = compare_with_golden(found, golden, report["model"]["sha256"], facts, float(spec.get("min_dice", DEFAULT_MIN_DICE)))
    if not result.passed:
        raise ProcessingError(f"selftest of {pipeline} failed: " + "; ".join(result.problems))
    print(
        f"{PREFIX}: selftest {pipeline}: PASS (Dice {result.dice:.4f} >= {result.min_dice} with the stored golden "
        f"mask; model sha256 {result.model_sha256} as stored)",
        file=sys.stderr,
    )
    return 0
