"""Brain extraction: MR heads in (DICOM, NIfTI, NRRD, MHA), a brain mask on each input's grid out.

    from medpipes.pipelines.brain_extraction import run
    outputs = run(["t1_dicom/"], "out/")        # {"mask": out/brain_mask.nii.gz, "seg": ..., ...}

The plan lives in ``pipeline.yaml`` and the weights in ``models_manifest.yaml``; the code here is glue.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from medpipes.core.pipeline import PipelineSpec, load_pipeline_spec, run_pipeline

SPEC_NAME = "pipeline.yaml"


def spec() -> PipelineSpec:
    """The brain-extraction plan shipped with the package."""
    return load_pipeline_spec(resources.files(__name__) / SPEC_NAME)


def run(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    threads: int | None = None,
    n4: bool = False,
    registered: bool = False,
    probabilities: bool = False,
    save_intermediates: bool = False,
) -> dict[str, Path]:
    """Extract the brain from one head (one or more MR sequences, co-registered to the first); the outputs' paths."""
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    result = run_pipeline(
        spec(), paths, output_dir, model=model, device=device, threads=threads, n4=n4, registered=registered,
        probabilities=probabilities, save_intermediates=save_intermediates,
    )  # fmt: skip
    return result.outputs


__all__ = ["run", "spec"]
