"""Choose the torch device from ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import re

import torch

from medpipes.core.errors import InputError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The device named by ``spec``; ``auto`` (or None) picks CUDA when present, else the CPU."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise InputError(f"device = {spec!r} is not valid; choose one of {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise InputError(f"device = {spec!r} but CUDA is not available on this machine; use device: auto or cpu")
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise InputError(f"device = {spec!r} but this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)
