"""`medpipes preprocess`: run a chain of processing steps on images without a model.

Steps come from ``--steps "reorient:RAS,resample:1,n4,zscore:nonzero"`` or a YAML ``--config``,
both read by ``medpipes.core.processing.spec`` (which describes the syntax). Config:

    steps:
      - reorient: RAS
      - resample: {spacing: [1, 1, 2]}
      - n4: {backend: ants, shrink_factor: 4}
      - zscore: nonzero
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from medpipes.core.errors import InputError

if TYPE_CHECKING:  # the processing stack (SimpleITK, scipy, ANTs) is imported lazily: `--help` stays fast
    from medpipes.core.image import Image
    from medpipes.core.processing import Chain
    from medpipes.core.processing.spec import StepSpec


def parse_config(path: Path) -> list[StepSpec]:
    """Steps from a YAML file: ``steps:`` (or the top level) lists ``name`` or ``{name: value | [args] | {key: value}}``."""
    from medpipes.core.yaml_file import read_yaml

    data = read_yaml(path, "config file")
    items = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise InputError(f"{path}: expected a list under 'steps:', e.g. steps: [reorient: RAS, zscore: nonzero]")
    from medpipes.core.processing.spec import parse_step_list

    return parse_step_list(items, str(path))


# --- running -----------------------------------------------------------------------------------
def output_names(inputs: Sequence[Path]) -> dict[str, Path]:
    """Each input's name: its file name without the format suffix (a folder keeps its name)."""
    from medpipes.core.io.formats import suffix_of

    named: dict[str, Path] = {}
    for path in inputs:
        suffix = "" if path.is_dir() else suffix_of(path)
        name = path.name[: -len(suffix)] if suffix and path.name.lower().endswith(suffix) else path.name
        if name in named:
            raise InputError(f"{path}: another input is also named '{name}'; rename one or process them separately")
        named[name] = path
    return named


def run_preprocess(
    inputs: Sequence[Path],
    output_dir: Path,
    chain: Chain,
    labels: Sequence[str] = (),
    suffix: str = ".nii.gz",
    record_path: Path | None = None,
) -> dict[str, tuple[Path, Image]]:
    """Read, run the chain, then write every output (and the record) or, on any failure, nothing.

    Returns, per input name, the path written and the image it holds.
    """
    from medpipes.core.io import read_image, write_image
    from medpipes.core.io.formats import WRITABLE

    if suffix not in WRITABLE:
        raise InputError(f"--suffix {suffix}: cannot write that format; use one of {', '.join(WRITABLE)}")
    named = output_names(inputs)
    if record_path is not None and not record_path.parent.is_dir():
        raise InputError(f"--record {record_path}: its folder does not exist; create it or write the record elsewhere")
    unknown = sorted(set(labels) - set(named))
    if unknown:
        raise InputError(f"--label names {unknown}, which are not inputs {sorted(named)}; use the file names without suffix")
    targets = {name: output_dir / f"{name}{suffix}" for name in named}
    sources = {p.resolve() for p in named.values()}
    for target in [*targets.values(), *([record_path] if record_path else [])]:
        if target.resolve() in sources:
            raise InputError(f"{target}: would overwrite an input; choose another output folder")
    images = {}
    for name, path in named.items():
        image = read_image(path)
        images[name] = image.as_label_map() if name in labels else image
    results, record = chain.run(images)
    _write_all(output_dir, {targets[n]: results[n] for n in named}, record_path, record.to_dict(), write_image)
    return {name: (targets[name], results[name]) for name in named}


def _write_all(output_dir: Path, outputs: Mapping[Path, Any], record_path: Path | None, record: dict, write: Callable) -> list[Path]:
    """Write into a staging folder inside ``output_dir``, then move each file into place; nothing stays on failure."""
    from medpipes.core.io.atomic import atomic_write_text

    created = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".medpipes-preprocess-", dir=output_dir))
    moved: list[Path] = []
    try:
        staged = {target: write(image, staging / target.name) for target, image in outputs.items()}
        for target, path in staged.items():
            os.replace(path, target)
            moved.append(target)
        if record_path is not None:
            atomic_write_text(record_path, json.dumps(record, indent=2) + "\n")
    except BaseException:
        for target in moved:
            with contextlib.suppress(OSError):
                target.unlink()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(output_dir.iterdir()):
            output_dir.rmdir()
    return moved


def preprocess(
    inputs: Annotated[list[Path], typer.Argument(metavar="INPUT", help="Input images: NIfTI, NRRD, MHA or DICOM folders/zips.", show_default=False)],
    output_dir: Annotated[Path, typer.Argument(metavar="OUTPUT_DIR", help="Folder for the outputs, one per input, named like the input.", show_default=False)],
    steps: Annotated[Optional[str], typer.Option("--steps", help='Steps, e.g. "reorient:RAS,resample:1,n4,zscore:nonzero".')] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML file with a 'steps:' list (instead of --steps).")] = None,
    label: Annotated[Optional[list[str]], typer.Option("--label", help="Read this input (file name without suffix) as a label map; repeatable.")] = None,
    suffix: Annotated[str, typer.Option("--suffix", help="Output format suffix.")] = ".nii.gz",
    record: Annotated[Optional[Path], typer.Option("--record", help="Also write the chain's record (JSON) here, to undo the spatial steps later.")] = None,
) -> None:
    """Run preprocessing steps on images, without a model; one output per input, written only if all succeed.

    Example: medpipes preprocess t1.nii.gz flair.nii.gz out/ --steps "reorient:RAS,resample:1,n4,zscore:nonzero"

    Steps: reorient, resample, crop, pad, coregister, n4, zscore, clip, threshold, rescale, ctwindow,
    histstd, external, binarise, keep_largest, remove_islands, fill_holes. Write a step as name,
    name:value:value or name:key=value (e.g. resample:1x1x2, n4:backend=ants, ctwindow:brain).
    """
    from medpipes.core.processing import Chain
    from medpipes.core.processing.spec import build_steps, parse_steps

    if (steps is None) == (config is None):
        raise InputError("give exactly one of --steps \"reorient:RAS,zscore:nonzero\" or --config steps.yaml")
    specs = parse_steps(steps) if steps is not None else parse_config(config)  # type: ignore[arg-type]
    chain = Chain(build_steps(specs, "--steps" if steps is not None else str(config)))
    written = run_preprocess(inputs, output_dir, chain, labels=label or (), suffix=suffix, record_path=record)
    for path, image in written.values():
        spacing = " x ".join(f"{s:.4g}" for s in image.spacing)
        print(f"{path}  shape {image.shape}  spacing {spacing} mm  {image.orientation}")
