"""Step specs: processing steps written as text or YAML (``reorient:RAS`` / ``- resample: {spacing: 2}``) and built.

A step is ``name`` or ``name:arg:arg`` where each arg is positional or ``key=value``; values are
read as YAML scalars or lists (``[1,1,2]``), and ``1x1x2`` is a list of three numbers. In YAML a
step is ``name`` or one ``name: value | [args] | {key: value}`` pair. `medpipes preprocess`, the
training config and pipeline specs all read their steps here.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medpipes.core.errors import InputError

if TYPE_CHECKING:
    from medpipes.core.processing.base import Preprocessor


@dataclass(frozen=True)
class StepSpec:
    """One step as the user wrote it: its name, positional and keyword arguments."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


def step_factories() -> dict[str, Callable[..., Preprocessor]]:
    """The steps a spec may name, by the name users write."""
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


def parse_step_list(items: Sequence[Any], source: str) -> list[StepSpec]:
    """Step specs from a YAML list of ``name`` or ``{name: value | [args] | {key: value}}``; errors name ``source``."""
    specs = []
    for index, item in enumerate(items, start=1):
        if isinstance(item, str):
            specs.append(StepSpec(item.strip().lower()))
            continue
        if not isinstance(item, Mapping) or len(item) != 1:
            raise InputError(f"{source}: step {index} is {item!r}; write a name or one 'name: arguments' pair")
        ((name, value),) = item.items()
        if isinstance(value, Mapping):
            specs.append(StepSpec(str(name).lower(), (), tuple((str(k), v) for k, v in value.items())))
        elif isinstance(value, list):
            specs.append(StepSpec(str(name).lower(), tuple(value)))
        else:
            specs.append(StepSpec(str(name).lower(), () if value is None else (value,)))
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
