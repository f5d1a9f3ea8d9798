"""Load a model's verified weights: safetensors into a dict of tensors, imported TorchScript as a module."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from medpipes.core.store.config import StoreConfig
from medpipes.core.store.errors import WeightsFormatError
from medpipes.core.store.manifest import Manifest, load_manifest
from medpipes.core.store.resolve import file_label, resolve_file

if TYPE_CHECKING:
    from pathlib import Path

    import torch


def _verified_file(
    model_id: str, file: str | None, manifest: Manifest | None, config: StoreConfig | None, fmt: str, shown: str, other: str
) -> Path:
    """The model file's local path (resolved, sha256-verified); WeightsFormatError pointing to ``other`` when not ``fmt``."""
    manifest = manifest or load_manifest()
    model = manifest.get(model_id)
    f = model.file(file)
    if f.format != fmt:
        raise WeightsFormatError(f"{file_label(model, f)} is {f.format}, not {shown}; load it with {other}('{model_id}')")
    return resolve_file(model, f, config)


def load_state_dict(
    model_id: str, file: str | None = None, manifest: Manifest | None = None, config: StoreConfig | None = None
) -> "dict[str, torch.Tensor]":
    """The model's safetensors weights as a dict of CPU tensors (resolved and sha256-verified first)."""
    path = _verified_file(model_id, file, manifest, config, "safetensors", "safetensors", "load_torchscript")
    from safetensors.torch import load_file  # imports torch: only here

    return load_file(str(path), device="cpu")


def load_torchscript(
    model_id: str, file: str | None = None, manifest: Manifest | None = None, config: StoreConfig | None = None
) -> "torch.jit.ScriptModule":
    """An imported model's TorchScript archive, loaded on the CPU after its sha256 matched the manifest."""
    path = _verified_file(model_id, file, manifest, config, "torchscript", "TorchScript", "load_state_dict")
    import torch

    with warnings.catch_warnings():  # torch 2.13 marks torch.jit.load deprecated; imported models still use it
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu")
