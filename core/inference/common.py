"""What every inferer shares: tensor/Image adapters, channel checks, devices, activation and flip TTA."""

from __future__ import annotations

import itertools
import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from medpipes.core.errors import InputError
from medpipes.core.image import Image

Predictor = Callable[[torch.Tensor], torch.Tensor]
ACTIVATIONS = (None, "softmax", "sigmoid")
PRECISIONS = ("float32", "bfloat16", "auto")


_TORCH_DTYPES = {np.dtype(t) for t in ("float32", "float64", "float16", "uint8", "int8", "int16", "int32", "int64")}


def image_to_batch(image: Image) -> torch.Tensor:
    """A (1, channels, i, j, k) view of an Image's voxels (a 3D array is one channel, a 4D array's last axis
    the channels); no copy unless torch cannot hold the dtype (inferers convert to float32 patch by patch)."""
    array = np.asarray(image.array)
    if array.dtype not in _TORCH_DTYPES:
        array = array.astype(np.float32)
    array = array[np.newaxis] if array.ndim == 3 else np.moveaxis(array, -1, 0)
    with warnings.catch_warnings():  # read-only arrays (memory-mapped NIfTI) are fine: inferers never write to inputs
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array).unsqueeze(0)


def batch_to_image(output: torch.Tensor, like: Image) -> Image:
    """The (1, K, i, j, k) result as an Image on ``like``'s grid, the K outputs on its 4th axis (a view, no copy)."""
    array = output[0].detach().to("cpu", torch.float32).numpy()
    return Image(np.moveaxis(array, 0, -1), like.affine, like.meta)


def as_batch(data: torch.Tensor | Image, spatial_dims: int) -> tuple[torch.Tensor, Image | None]:
    """The input as a (N, C, *spatial) tensor, plus the Image it came from (None for tensors)."""
    if isinstance(data, Image):
        if spatial_dims != 3:
            raise InputError(
                f"an Image is a volume but the network is {spatial_dims}D; use infer_slices for 2D networks"
            )
        return image_to_batch(data), data
    if not isinstance(data, torch.Tensor):
        raise InputError(f"inferers take a torch.Tensor (N, C, *spatial) or an Image, got {type(data).__name__}")
    if data.ndim != spatial_dims + 2:
        raise InputError(
            f"input has shape {list(data.shape)}; "
            f"a {spatial_dims}D inferer needs (N, C, {', '.join(['size'] * spatial_dims)})"
        )
    return data, None


def network_spatial_dims(network: nn.Module, default: int = 3) -> int:
    """The network's declared dimensionality (medpipes networks and wrapped imports declare it)."""
    return int(getattr(network, "spatial_dims", default))


def check_channels(network: nn.Module, channels: int) -> None:
    """Raise InputError naming both numbers when the data's channels differ from the network's input channels."""
    expected = getattr(network, "in_channels", None)
    if expected is not None and channels != expected:
        raise InputError(
            f"the data has {channels} channel(s) but the network expects {expected} input channel(s); "
            "give the model the channels (modalities) it was trained on"
        )


def network_device(network: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` if given, else where the network's parameters live (CPU for a parameter-free module)."""
    if device is not None:
        return torch.device(device)
    param = next(network.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def size_divisor(network: nn.Module, spatial_dims: int) -> tuple[int, ...]:
    """The multiple each spatial size must be for the network (1 when it does not say)."""
    divisor = getattr(network, "size_divisor", 1)
    return (int(divisor),) * spatial_dims if isinstance(divisor, int) else tuple(int(d) for d in divisor)


def check_activation(activation: str | None) -> None:
    """Refuse an unknown activation name."""
    if activation not in ACTIVATIONS:
        raise InputError(f"activation = {activation!r} is not valid; choose one of none, softmax, sigmoid")


def apply_activation_(output: torch.Tensor, activation: str | None) -> torch.Tensor:
    """Softmax over channels or sigmoid, in place (temporaries are one channel, never a second output)."""
    if activation == "sigmoid":
        return output.sigmoid_()
    if activation == "softmax":
        for n in range(output.shape[0]):
            sample = output[n]
            sample.sub_(sample.amax(dim=0, keepdim=True)).exp_()
            sample.div_(sample.sum(dim=0, keepdim=True))
    return output


def flip_averaged(predictor: Predictor, axes: Sequence[int], spatial_dims: int) -> Predictor:
    """A predictor that averages ``predictor`` over every combination of flips along spatial ``axes``."""
    axes = tuple(sorted(set(int(a) for a in axes)))
    if any(a < 0 or a >= spatial_dims for a in axes):
        raise InputError(f"tta_flip_axes = {list(axes)} must be spatial axes 0..{spatial_dims - 1}")
    combos = [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]

    def predict(batch: torch.Tensor) -> torch.Tensor:
        total = predictor(batch)
        for combo in combos[1:]:
            dims = [a + 2 for a in combo]
            total = total + predictor(batch.flip(dims)).flip(dims)
        return total / len(combos)

    return predict


def bfloat16_native(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively (CPU: oneDNN with AVX512-BF16/AMX; CUDA: Ampere+)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        # torch has no public query for CPU bf16 support; oneDNN's own check is what autocast relies on.
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``float32`` or ``bfloat16``: ``auto`` picks bfloat16 where ``device`` runs it natively, else float32."""
    if precision not in PRECISIONS:
        raise InputError(f"precision = {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bfloat16" if bfloat16_native(device) else "float32"
    return precision


def with_autocast(predictor: Predictor, device: torch.device) -> Predictor:
    """``predictor`` under bfloat16 autocast on ``device`` (weights stay float32); outputs come back float32."""

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return predictor(batch).float()

    return predict


def make_predictor(
    network: nn.Module,
    tta_flip_axes: Sequence[int] | None,
    spatial_dims: int,
    precision: str = "float32",
    device: torch.device | None = None,
) -> Predictor:
    """The network, wrapped in flip TTA when axes are given and in bfloat16 autocast for ``precision`` bfloat16."""
    predictor: Predictor = network
    if resolve_precision(precision, device or torch.device("cpu")) == "bfloat16":
        predictor = with_autocast(predictor, device or torch.device("cpu"))
    if tta_flip_axes:
        predictor = flip_averaged(predictor, tta_flip_axes, spatial_dims)
    return predictor
