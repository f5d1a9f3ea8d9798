"""Slice-wise inference: a 2D network applied to every slice of a volume along one axis."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from medpipes.core.errors import InputError
from medpipes.core.image import Image
from medpipes.core.inference.common import (
    apply_activation_,
    as_batch,
    batch_to_image,
    check_activation,
    check_channels,
    make_predictor,
    network_device,
    size_divisor,
)
from medpipes.core.inference.whole import predict_padded


def infer_slices(
    network: nn.Module,
    data: torch.Tensor | Image,
    *,
    axis: int = 2,
    batch_size: int = 16,
    pad_value: float = 0.0,
    tta_flip_axes: Sequence[int] | None = None,
    activation: str | None = None,
    device: str | torch.device | None = None,
    output_device: str | torch.device | None = None,
) -> torch.Tensor | Image:
    """Run a 2D ``network`` on the slices of ``data`` across spatial ``axis`` (0, 1 or 2), ``batch_size`` at a time.

    ``data``: a (N, C, X, Y, Z) tensor or an Image; the result is (N, K, X, Y, Z) float32 or an Image
    on the same grid. ``tta_flip_axes`` are the slice's own axes (0, 1).
    """
    check_activation(activation)
    if getattr(network, "spatial_dims", 2) != 2:
        raise InputError(
            f"infer_slices needs a 2D network, this one is {network.spatial_dims}D; use infer_whole or infer_patches"
        )
    if axis not in (0, 1, 2):
        raise InputError(f"axis = {axis} is not valid; choose the spatial axis 0, 1 or 2 to slice across")
    if batch_size < 1:
        raise InputError(f"batch_size = {batch_size} must be at least 1")
    volume, image = as_batch(data, 3)
    check_channels(network, volume.shape[1])
    run_device = network_device(network, device)
    out_device = torch.device(output_device) if output_device is not None else volume.device
    predictor = make_predictor(network, tta_flip_axes, 2)
    divisor = size_divisor(network, 2)
    output: torch.Tensor | None = None
    count = volume.shape[2 + axis]
    with torch.no_grad():
        for n in range(volume.shape[0]):
            sample = volume[n].movedim(1 + axis, 0)  # (slices, C, a, b): a view, nothing copied
            for first in range(0, count, batch_size):
                prediction = predict_padded(
                    predictor, sample[first : first + batch_size], divisor, pad_value, run_device, out_device,
                    "the network returned slice size {got} for {expected}; "
                    "slice-wise inference needs outputs the size of their inputs",
                )
                if output is None:
                    output = torch.empty(
                        (volume.shape[0], prediction.shape[1]) + tuple(volume.shape[2:]),
                        dtype=torch.float32,
                        device=out_device,
                    )
                output[n].movedim(1 + axis, 0)[first : first + batch_size] = prediction
        assert output is not None
        apply_activation_(output, activation)
    return batch_to_image(output, image) if image is not None else output
