"""Typed configuration records read from plain dicts (JSON/YAML): unknown keys and wrong types are refused."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping, TypeVar

from medpipes.core.errors import InputError

T = TypeVar("T")


def config_from_dict(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``data``, naming the key and the valid options on any mistake.

    ``where`` says where the dict came from (a file and section, e.g. ``train.yaml: model``).
    A dataclass may declare ``CHOICES = {"field": ("a", "b")}`` to restrict string values.
    """
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}; valid keys are {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    choices: Mapping[str, tuple[Any, ...]] = getattr(cls, "CHOICES", {})
    values: dict[str, Any] = {}
    for name, value in data.items():
        value = _coerce(value, hints[name], f"{where}: {name}")
        allowed = choices.get(name)
        if allowed is not None and value not in allowed:
            raise InputError(f"{where}: {name} = {value!r} is not valid; choose one of {', '.join(map(str, allowed))}")
        values[name] = value
    missing = [n for n, f in fields.items() if n not in values and _has_no_default(f)]
    if missing:
        raise InputError(f"{where}: missing key {missing[0]!r}; add it (valid keys: {', '.join(sorted(fields))})")
    return cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a JSON-ready dict (tuples become lists)."""
    return {k: _plain(v) for k, v in dataclasses.asdict(config).items()}


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _has_no_default(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, label: str) -> Any:
    """``value`` checked against type ``tp`` (int given for float is accepted; lists become tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _coerce(value, option, label)
            except InputError as exc:
                errors.append(exc)
        names = " or ".join(_type_name(a) for a in args)
        raise InputError(f"{label} = {value!r} has the wrong type; expected {names}")
    if tp is type(None):
        if value is None:
            return None
        raise InputError(f"{label} = {value!r} has the wrong type; expected null")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{label} = {value!r} has the wrong type; expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], label) for v in value)
        if len(args) != len(value):
            raise InputError(f"{label} = {value!r} needs {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, label) for v, a in zip(value, args))
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    elif dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        return config_from_dict(tp, value, label)
    raise InputError(f"{label} = {value!r} has the wrong type; expected {_type_name(tp)}")
