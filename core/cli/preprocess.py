"""`medpipes preprocess`: run a chain of processing steps on images without a model.

Steps come from ``--steps "reorient:RAS,resample:1,n4,zscore:nonzero"`` or a YAML ``--config``.
A step is ``name`` or ``name:arg:arg`` where each arg is positional or ``key=value``; values are
read as YAML scalars or lists (``[1,1,2]``), and ``1x1x2`` is a list of three numbers. Config:

    steps:
      - reorient: RAS
      - resample: {spacing: [1, 1, 2]}
      - n4: {backend: ants, shrink_factor: 4}
      - zscore: nonzero
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from medpipes.core.errors import InputError

if TYPE_CHECKING:  # the processing stack (SimpleITK, scipy, ANTs) is imported lazily: `--help` stays fast
    from medpipes.core.image import Image
    from medpipes.core.processing import Chain, Preprocessor


@dataclass(frozen=True)
class StepSpec:
    """One step as the user wrote it: its name, positional and keyword arguments."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


def step_factories() -> dict[str, Callable[..., Preprocessor]]:
    """The steps ``--steps`` and ``--config`` know, by the name users write."""
    from medpipes.core.processing import (
        Binarise,
        CropToForeground,
        FillHoles,
        KeepLargestComponent,
        Pad,
        RemoveIslands,
        Reorient,
        Resample,
    )
    from medpipes.core.processing.bias import N4BiasFieldCorrection
    from medpipes.core.processing.external import ExternalProgram
    from medpipes.core.processing.intensity import Clip, CTWindow, HistogramStandardisation, Rescale, Threshold, ZScore
    from medpipes.core.processing.registration import Coregister

    return {
        "reorient": Reorient,
        "resample": Resample,
        "crop": CropToForeground,
        "pad": Pad,
        "coregister": Coregister,
        "n4": N4BiasFieldCorrection,
        "zscore": ZScore,
        "clip": Clip,
        "threshold": Threshold,
        "rescale": Rescale,
        "ctwindow": CTWindow,
        "histstd": HistogramStandardisation,
        "external": ExternalProgram,
        "binarise": Binarise,
        "keep_largest": KeepLargestComponent,
        "remove_islands": RemoveIslands,
        "fill_holes": FillHoles,
    }


# --- parsing -----------------------------------------------------------------------------------
_TRIPLE = re.compile(r"^\s*-?\d+(\.\d*)?(\s*x\s*-?\d+(\.\d*)?)+\s*$")


def parse_steps(text: str) -> list[StepSpec]:
    """``"reorient:RAS,resample:1x1x2,n4"`` -> step specs (commas inside [...] do not split)."""
    specs = []
    for chunk in _split_top_level(text, ","):
        chunk = chunk.strip()
        if not chunk:
            raise InputError(f"--steps: empty step in '{text}'; separate steps with single commas")
        name, *raw_args = _split_top_level(chunk, ":")
        args: list[Any] = []
        kwargs: list[tuple[str, Any]] = []
        for raw in raw_args:
            key, sep, value = raw.partition("=")
            if sep and re.fullmatch(r"[A-Za-z_]\w*", key.strip()):
                kwargs.append((key.strip(), _value(value)))
            elif kwargs:
                raise InputError(f"--steps: in '{chunk}', positional value '{raw}' follows a key=value; put positional values first")
            else:
                args.append(_value(raw))
        specs.append(StepSpec(name.strip().lower(), tuple(args), tuple(kwargs)))
    if not specs:
        raise InputError("--steps: no step given; e.g. --steps \"reorient:RAS,resample:1,zscore:nonzero\"")
    return specs


def parse_config(path: Path) -> list[StepSpec]:
    """Steps from a YAML file: ``steps:`` (or the top level) lists ``name`` or ``{name: value | [args] | {key: value}}``."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found; check the path") from None
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not readable YAML ({' '.join(str(exc).split())})") from None
    items = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise InputError(f"{path}: expected a list under 'steps:', e.g. steps: [reorient: RAS, zscore: nonzero]")
    specs = []
    for index, item in enumerate(items, start=1):
        if isinstance(item, str):
            specs.append(StepSpec(item.strip().lower()))
            continue
        if not isinstance(item, dict) or len(item) != 1:
            raise InputError(f"{path}: step {index} is {item!r}; write a name, or one 'name: arguments' pair")
        (name, value), = item.items()
        if isinstance(value, dict):
            specs.append(StepSpec(str(name).lower(), (), tuple((str(k), v) for k, v in value.items())))
        elif isinstance(value, list):
            specs.append(StepSpec(str(name).lower(), tuple(value)))
        elif value is None:
            specs.append(StepSpec(str(name).lower()))
        else:
            specs.append(StepSpec(str(name).lower(), (value,)))
    return specs


def build_steps(specs: Sequence[StepSpec], source: str = "--steps") -> list[Preprocessor]:
    """Construct the steps; unknown steps or arguments give one line naming the valid ones."""
    factories = step_factories()
    steps = []
    seen: dict[str, int] = {}
    for spec in specs:
        factory = factories.get(spec.name)
        if factory is None:
            raise InputError(f"{source}: unknown step '{spec.name}'; valid steps: {', '.join(factories)}")
        positional, keywords = _parameters(factory)
        valid = positional + keywords
        if len(spec.args) > len(positional):
            raise InputError(
                f"{source}: step '{spec.name}' takes at most {len(positional)} positional value(s) ({', '.join(positional)}), "
                f"got {len(spec.args)}; name the others as key=value"
            )
        kwargs = dict(zip(positional, spec.args))
        for key, value in spec.kwargs:
            if key not in valid:
                raise InputError(f"{source}: step '{spec.name}' has no argument '{key}'; valid: {', '.join(valid)}")
            if key in kwargs:
                raise InputError(f"{source}: step '{spec.name}' gets '{key}' twice; give it once")
            kwargs[key] = value
        seen[spec.name] = seen.get(spec.name, 0) + 1
        kwargs.setdefault("name", spec.name if seen[spec.name] == 1 else f"{spec.name}_{seen[spec.name]}")
        try:
            steps.append(factory(**kwargs))
        except TypeError as exc:
            raise InputError(f"{source}: step '{spec.name}': {exc}; valid arguments: {', '.join(valid)}") from None
    return steps


def _parameters(factory: Callable[..., Any]) -> tuple[list[str], list[str]]:
    """(positional-or-keyword names, keyword-only names) of a step's constructor, ``name`` excluded."""
    positional, keywords = [], []
    for parameter in list(inspect.signature(factory).parameters.values()):
        if parameter.name in ("self", "name") or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        (positional if parameter.kind == parameter.POSITIONAL_OR_KEYWORD else keywords).append(parameter.name)
    return positional, keywords


def _value(text: str) -> Any:
    import yaml

    if _TRIPLE.match(text):
        return [float(v) if "." in v else int(v) for v in text.replace(" ", "").split("x")]
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        return text


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside [...], (...), {...} and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


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

    if (steps is None) == (config is None):
        raise InputError("give exactly one of --steps \"reorient:RAS,zscore:nonzero\" or --config steps.yaml")
    specs = parse_steps(steps) if steps is not None else parse_config(config)  # type: ignore[arg-type]
    chain = Chain(build_steps(specs, "--steps" if steps is not None else str(config)))
    written = run_preprocess(inputs, output_dir, chain, labels=label or (), suffix=suffix, record_path=record)
    for path, image in written.values():
        spacing = " x ".join(f"{s:.4g}" for s in image.spacing)
        print(f"{path}  shape {image.shape}  spacing {spacing} mm  {image.orientation}")
