"""`medpipes-brain-extraction INPUT... OUTPUT_DIR` (also `medpipes brain-extraction`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from medpipes.core.errors import InputError


def brain_extraction(
    paths: Annotated[list[Path], typer.Argument(help="INPUT... OUTPUT_DIR: MR images (DICOM folder or zip, NIfTI, NRRD, MHA), then the output folder.", metavar="INPUT... OUTPUT_DIR")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    model: Annotated[Optional[str], typer.Option(help="Manifest model id or a .safetensors checkpoint (default: the shipped model).")] = None,
    n4: Annotated[bool, typer.Option("--n4", help="N4 bias-field correction first (costs seconds; the model does not need it).")] = False,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for inference.")] = None,
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Also write brain_probability.nii.gz.")] = False,
    save_intermediates: Annotated[bool, typer.Option("--save-intermediates", help="Also write the model-grid images and the chain record.")] = False,
    registered: Annotated[bool, typer.Option("--registered", help="Inputs already share one grid: skip co-registration.")] = False,
) -> None:
    """Extract the brain from MR heads: brain_mask.nii.gz, brain.nii.gz, brain_mask_seg.dcm (DICOM input), qc.png, report.json.

    Example: medpipes-brain-extraction t1_dicom/ flair.nii.gz out/
    """
    from medpipes.pipelines.brain_extraction import run

    if len(paths) < 2:
        raise InputError("give at least one INPUT and then the OUTPUT_DIR, e.g. medpipes-brain-extraction t1.nii.gz out/")
    *inputs, output_dir = paths
    outputs = run(
        inputs, output_dir, model=model, device=device, threads=threads, n4=n4, registered=registered,
        probabilities=probabilities, save_intermediates=save_intermediates,
    )  # fmt: skip
    import json

    report = json.loads(outputs["report"].read_text(encoding="utf-8"))
    for warning in report.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"brain volume {report['volume_ml']:.0f} mL; outputs in {output_dir}")
    for key, path in outputs.items():
        print(f"  {key}: {path}")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command(help=brain_extraction.__doc__)(brain_extraction)


def main(argv: list[str] | None = None) -> int:
    """Run the command; MedpipesError -> one line on stderr and exit 2 (bad input) or 1 (processing failed)."""
    from medpipes.core.cli.main import run_app

    return run_app(app, argv, prog_name="medpipes-brain-extraction")


def run_cli() -> None:
    """Console-script entry point (`medpipes-brain-extraction`)."""
    sys.exit(main())
