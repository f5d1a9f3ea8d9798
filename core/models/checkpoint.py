"""Checkpoints as safetensors weights + a JSON config (never pickle); TorchScript/ONNX export and import.

A checkpoint ``NAME.safetensors`` has its config beside it as ``NAME.json``:
``{"format": "medpipes-checkpoint", "format_version": 1, "network": {"architecture": ..., ...},
"extra": {...}}``. ``extra`` holds what the training engine wants to keep (epoch, metrics, ...).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medpipes.core.errors import InputError, ProcessingError
from medpipes.core.io.atomic import atomic_path, atomic_write_text
from medpipes.core.models.base import Network, check_input_shape
from medpipes.core.models.networks import build_network
from medpipes.core.store.formats import detect_weights_format

CHECKPOINT_FORMAT = "medpipes-checkpoint"
FORMAT_VERSION = 1
_PICKLE_FIX = (
    "pickles run code when loaded and are refused; convert it once in a trusted environment: "
    "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors') and write the JSON config"
)


def config_path(weights_path: str | Path) -> Path:
    """The JSON config beside a ``.safetensors`` checkpoint."""
    return Path(weights_path).with_suffix(".json")


def save_checkpoint(network: Network, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``network``'s weights to ``path`` (.safetensors) and its config to the ``.json`` beside it."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"{path}: a checkpoint is written as NAME.safetensors; change the suffix")
    if not isinstance(network, Network):
        raise InputError(
            f"save_checkpoint needs a medpipes network (UNet, FCN, VGGNet), got {type(network).__name__}; "
            "export other modules with export_torchscript"
        )
    state = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    document = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "network": network.network_config(),
        "extra": dict(extra or {}),
    }
    text = json.dumps(document, indent=2, sort_keys=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": CHECKPOINT_FORMAT})
    atomic_write_text(config_path(path), text + "\n")
    return path


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The JSON document beside checkpoint ``path`` (checked for its format marker)."""
    cfg = config_path(path)
    if not cfg.is_file():
        raise InputError(f"{cfg}: the checkpoint's JSON config is missing; it must sit beside {Path(path).name}")
    try:
        document = json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{cfg}: not valid JSON ({exc.msg} at line {exc.lineno}); restore the file") from None
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT or "network" not in document:
        raise InputError(f"{cfg}: not a medpipes checkpoint config (needs format: {CHECKPOINT_FORMAT} and network)")
    if document.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{cfg}: format_version {document.get('format_version')!r} is not supported; "
            f"this medpipes reads {FORMAT_VERSION}"
        )
    return document


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Network:
    """The network saved at ``path``: rebuilt from its JSON config, weights loaded strictly, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found; check the path")
    found = detect_weights_format(path)
    if found == "pickle":
        raise InputError(f"{path}: is a pickle file (torch.save, .pth or .pkl); {_PICKLE_FIX}")
    if found != "safetensors":
        hint = "; import it with import_torchscript" if found == "torchscript" else ""
        raise InputError(f"{path}: is {found}, not a safetensors checkpoint{hint}")
    document = read_checkpoint_config(path)
    network = build_network(document["network"], where=f"{config_path(path)}: network")
    state = load_file(str(path), device="cpu")
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    found_shapes = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found_shapes:
        missing = sorted(set(expected) - set(found_shapes))
        unexpected = sorted(set(found_shapes) - set(expected))
        resized = sorted(k for k in set(expected) & set(found_shapes) if expected[k] != found_shapes[k])
        raise InputError(
            f"{path}: weights do not match the config's network (missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"other shape {resized[:3]}); the .json and .safetensors belong to different models"
        )
    network.load_state_dict(state, strict=True)
    return network.to(device).eval()


def _example(network: nn.Module, example_shape: Sequence[int]) -> torch.Tensor:
    param = next(network.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.randn(*example_shape, generator=torch.Generator().manual_seed(0)).to(device)


def export_torchscript(network: nn.Module, path: str | Path, example_shape: Sequence[int]) -> Path:
    """Trace ``network`` in eval mode on a random input of ``example_shape`` and save it as TorchScript."""
    path = Path(path)
    with _evaluating(network), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 flags torch.jit as deprecated
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks are constants for a fixed input size
        traced = torch.jit.trace(network, _example(network, example_shape), check_trace=False)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp))
    return path


@contextlib.contextmanager
def _evaluating(network: nn.Module) -> Iterator[None]:
    """Eval mode for the export, the caller's train/eval mode restored afterwards."""
    was_training = network.training
    network.eval()
    try:
        yield
    finally:
        network.train(was_training)


def export_onnx(network: nn.Module, path: str | Path, example_shape: Sequence[int], opset: int | None = None) -> Path:
    """Export ``network`` in eval mode to ONNX (dynamo exporter) at ``example_shape``; checked by onnx.checker."""
    import onnx

    path = Path(path)
    kwargs = {} if opset is None else {"opset_version": opset}
    with _evaluating(network), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress notes are not the user's concern
        try:
            program = torch.onnx.export(
                network, (_example(network, example_shape),), dynamo=True, verbose=False, **kwargs
            )
        except Exception as exc:  # the exporter raises many kinds; report one line with the fix
            raise ProcessingError(
                f"ONNX export of {type(network).__name__} failed: {str(exc).splitlines()[0]}; "
                "export to TorchScript instead or simplify the network"
            ) from exc
    with atomic_path(path) as tmp:
        program.save(str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return path


class TorchScriptNetwork(nn.Module):
    """An external TorchScript model wrapped to run like a medpipes network (declared channels, dims, divisor)."""

    architecture = "torchscript"

    def __init__(
        self,
        module: torch.jit.ScriptModule,
        in_channels: int,
        out_channels: int,
        spatial_dims: int,
        size_divisor: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        self.module = module
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.spatial_dims = spatial_dims
        divisor = (size_divisor,) * spatial_dims if isinstance(size_divisor, int) else tuple(size_divisor)
        self.size_divisor = divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_shape(tuple(x.shape), self.in_channels, self.spatial_dims, self.size_divisor, "imported")
        out = self.module(x)
        if isinstance(out, (tuple, list)):  # deep-supervision models return several outputs; the first is full size
            out = out[0]
        if out.shape[1] != self.out_channels:
            raise InputError(
                f"the imported model returned {out.shape[1]} channel(s), "
                f"but out_channels={self.out_channels} was declared; "
                "fix the declaration"
            )
        return out


def import_torchscript(
    path: str | Path,
    in_channels: int,
    out_channels: int,
    spatial_dims: int = 3,
    size_divisor: int | Sequence[int] = 1,
    device: str | torch.device = "cpu",
) -> TorchScriptNetwork:
    """Load a peer's TorchScript archive (pickle refused) and wrap it so medpipes inferers can run it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: TorchScript file not found; check the path")
    found = detect_weights_format(path)
    if found == "pickle":
        raise InputError(f"{path}: is a pickle file (torch.save, .pth or .pkl), not TorchScript; {_PICKLE_FIX}")
    if found != "torchscript":
        raise InputError(
            f"{path}: is {found}, not a TorchScript archive; export the model with torch.jit.trace and torch.jit.save"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 marks torch.jit.load deprecated
        module = torch.jit.load(str(path), map_location=device)
    return TorchScriptNetwork(module.eval(), in_channels, out_channels, spatial_dims, size_divisor).eval()
