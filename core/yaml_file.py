"""Reading a YAML file with one actionable line for the usual failures (the same for every config we read)."""

from __future__ import annotations

from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from medpipes.core.errors import InputError


def read_yaml(source: Path | Traversable, what: str) -> Any:
    """The parsed YAML document at ``source``; missing -> "``<source>: <what> not found``", bad YAML -> one line."""
    import yaml

    if not source.is_file():
        raise InputError(f"{source}: {what} not found; check the path")
    try:
        return yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{source}: not readable YAML ({' '.join(str(exc).split())})") from None
