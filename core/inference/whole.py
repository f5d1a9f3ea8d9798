"""Whole-volume inference: the network sees the entire image at once (padded to the size it needs)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medpipes.core.errors import InputError
from medpipes.core.image import Image
from medpipes.core.inference.common import (
    Predictor,
    apply_activation_,
    as_batch,
    batch_to_image,
    check_activation,
    check_channels,
    make_predictor,
    network_device,
    network_spatial_dims,
    size_divisor,
)


def pad_to_multiple(
    batch: torch.Tensor, divisor: Sequence[int], value: float
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """``batch`` padded evenly before/after to multiples of ``divisor`` per spatial axis, and the crop back."""
    pads: list[int] = []
    crop: list[slice] = []
    for size, d in zip(batch.shape[2:], divisor):
        extra = (-size) % d
        before = extra // 2
        pads.append((before, extra - before))
        crop.append(slice(before, before + size))
    if not any(sum(p) for p in pads):
        return batch, tuple(crop)
    flat = [v for pair in reversed(pads) for v in pair]  # F.pad wants the last axis first
    return F.pad(batch, flat, mode="constant", value=value), tuple(crop)


def predict_padded(
    predictor: Predictor,
    chunk: torch.Tensor,
    divisor: Sequence[int],
    pad_value: float,
    run_device: torch.device,
    out_device: torch.device,
    size_error: str,
) -> torch.Tensor:
    """``predictor`` on ``chunk`` padded to multiples of ``divisor``, cropped back, float32 on ``out_device``.

    ``size_error`` is the InputError message (with ``{got}`` and ``{expected}``) when the output size differs.
    """
    padded, crop = pad_to_multiple(chunk, divisor, pad_value)
    prediction = predictor(padded.to(run_device, torch.float32, copy=True))  # a model may work in place
    if tuple(prediction.shape[2:]) != tuple(padded.shape[2:]):
        raise InputError(size_error.format(got=list(prediction.shape[2:]), expected=list(padded.shape[2:])))
    return prediction[(slice(None), slice(None)) + crop].float().to(out_device)


def infer_whole(
    network: nn.Module,
    data: torch.Tensor | Image,
    *,
    batch_size: int = 1,
    pad_value: float = 0.0,
    tta_flip_axes: Sequence[int] | None = None,
    activation: str | None = None,
    device: str | torch.device | None = None,
    output_device: str | torch.device | None = None,
    precision: str = "float32",
) -> torch.Tensor | Image:
    """Run ``network`` on each whole image of ``data`` (``batch_size`` images per forward pass).

    ``data``: a (N, C, *spatial) tensor or an Image; the result is (N, K, *spatial) float32 or an Image
    on the same grid. Sizes the network cannot take are padded with ``pad_value`` and cropped back.
    ``precision``: float32, bfloat16 (autocast) or auto (bfloat16 where the device runs it natively).
    """
    check_activation(activation)
    if batch_size < 1:
        raise InputError(f"batch_size = {batch_size} must be at least 1")
    dims = network_spatial_dims(network, default=data.ndim - 2 if isinstance(data, torch.Tensor) else 3)
    batch, image = as_batch(data, dims)
    check_channels(network, batch.shape[1])
    run_device = network_device(network, device)
    out_device = torch.device(output_device) if output_device is not None else batch.device
    predictor = make_predictor(network, tta_flip_axes, dims, precision, run_device)
    divisor = size_divisor(network, dims)
    output: torch.Tensor | None = None
    with torch.no_grad():
        for first in range(0, batch.shape[0], batch_size):
            prediction = predict_padded(
                predictor, batch[first : first + batch_size], divisor, pad_value, run_device, out_device,
                "the network returned spatial size {got} for input {expected}; "
                "whole-volume inference needs outputs the size of their inputs",
            )
            if output is None:
                output = torch.empty(
                    (batch.shape[0], prediction.shape[1]) + tuple(batch.shape[2:]),
                    dtype=torch.float32,
                    device=out_device,
                )
            output[first : first + batch_size] = prediction
        assert output is not None
        apply_activation_(output, activation)
    return batch_to_image(output, image) if image is not None else output
