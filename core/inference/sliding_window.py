"""Overlapping-patch (sliding window) inference with constant or Gaussian blending, memory bounded.

Holds only the output, one weight map of the output's spatial size, and the current batch of
patches: the input is never padded or copied as a whole (patches reaching past an edge are padded
one by one).
"""

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
    network_spatial_dims,
    size_divisor,
)
from medpipes.core.inference.windows import check_overlap, importance_map, patch_starts


def _regions(
    start: Sequence[int], patch: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """(slices into the image, slices into the patch) of the part of a patch that lies inside the image."""
    image_sl, patch_sl = [], []
    for s, p, n in zip(start, patch, shape):
        lo, hi = max(s, 0), min(s + p, n)
        image_sl.append(slice(lo, hi))
        patch_sl.append(slice(lo - s, hi - s))
    return tuple(image_sl), tuple(patch_sl)


def _is_padded(patch_sl: Sequence[slice], patch: Sequence[int]) -> bool:
    return any(sl.start != 0 or sl.stop != p for sl, p in zip(patch_sl, patch))


def infer_patches(
    network: nn.Module,
    data: torch.Tensor | Image,
    patch_size: int | Sequence[int],
    *,
    overlap: float | Sequence[float] = 0.5,
    blend: str = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
    batch_size: int = 1,
    pad_value: float = 0.0,
    skip_empty: float | None = None,
    empty_output: float | Sequence[float] = 0.0,
    tta_flip_axes: Sequence[int] | None = None,
    activation: str | None = None,
    device: str | torch.device | None = None,
    output_device: str | torch.device | None = None,
    precision: str = "float32",
) -> torch.Tensor | Image:
    """Run ``network`` on overlapping patches of ``data`` and blend them into one output on the same grid.

    ``data``: a (N, C, *spatial) tensor or an Image (its 4th axis, if any, holds the channels); the
    result is a (N, K, *spatial) float32 tensor, or an Image (K outputs on the 4th axis) on the same grid.
    Patches step by int(patch * (1 - overlap)), the last flush with the edge (MONAI's placement);
    axes shorter than a patch are padded with ``pad_value``. ``blend`` is constant or gaussian
    (``sigma_scale`` * patch size, MONAI's definition). ``batch_size`` patches go through each forward
    pass. ``skip_empty``: a patch whose input voxels all equal this value is not run; it counts as
    ``empty_output`` (one value, or one per output channel, before activation). ``tta_flip_axes``
    averages over flips along those spatial axes. ``activation`` (softmax or sigmoid) is applied
    after blending. ``precision``: float32, bfloat16 (autocast) or auto (bfloat16 where the device runs
    it natively). The network is used as given (put it in eval mode first); ``data`` is never modified.
    """
    check_activation(activation)
    dims = network_spatial_dims(network, default=data.ndim - 2 if isinstance(data, torch.Tensor) else 3)
    batch, image = as_batch(data, dims)
    check_channels(network, batch.shape[1])
    patch = (patch_size,) * dims if isinstance(patch_size, int) else tuple(int(p) for p in patch_size)
    if len(patch) != dims or any(p < 1 for p in patch):
        raise InputError(f"patch_size = {patch_size} needs {dims} positive sizes")
    divisor = size_divisor(network, dims)
    if any(p % d for p, d in zip(patch, divisor)):
        raise InputError(f"patch_size = {list(patch)} must be a multiple of {list(divisor)} for this network")
    if batch_size < 1:
        raise InputError(f"batch_size = {batch_size} must be at least 1")
    overlaps = check_overlap(overlap, dims)
    run_device = network_device(network, device)
    out_device = torch.device(output_device) if output_device is not None else batch.device
    predictor = make_predictor(network, tta_flip_axes, dims, precision, run_device)

    spatial = tuple(batch.shape[2:])
    starts = patch_starts(spatial, patch, overlaps)
    weights = importance_map(patch, blend, sigma_scale, device=run_device)
    weights_out = weights.to(out_device)
    weight_sum = torch.zeros((1, 1) + spatial, dtype=torch.float32, device=out_device)
    for start in starts:
        image_sl, patch_sl = _regions(start, patch, spatial)
        weight_sum[(0, 0) + image_sl] += weights_out[patch_sl]

    output: torch.Tensor | None = None
    skipped: list[tuple[int, tuple[int, ...]]] = []
    jobs = [(n, start) for n in range(batch.shape[0]) for start in starts]
    with torch.no_grad():
        for first in range(0, len(jobs), batch_size):
            chunk = []
            for n, start in jobs[first : first + batch_size]:
                tile = _gather(batch[n], start, patch, pad_value)
                if skip_empty is not None and bool((tile == skip_empty).all()):
                    skipped.append((n, start))
                    continue
                chunk.append((n, start, tile))
            if not chunk:
                continue
            inputs = torch.stack([tile for _, _, tile in chunk]).to(run_device, torch.float32, non_blocking=True)
            predictions = predictor(inputs)
            if tuple(predictions.shape[2:]) != patch:
                raise InputError(
                    f"the network returned spatial size {list(predictions.shape[2:])} for a {list(patch)} patch; "
                    "patch inference needs outputs the size of their inputs"
                )
            if output is None:
                output = torch.zeros(
                    (batch.shape[0], predictions.shape[1]) + spatial, dtype=torch.float32, device=out_device
                )
            predictions = predictions.float().mul_(weights).to(out_device)
            for (n, start, _), prediction in zip(chunk, predictions):
                image_sl, patch_sl = _regions(start, patch, spatial)
                output[(n, slice(None)) + image_sl] += prediction[(slice(None),) + patch_sl]

        if output is None:
            channels = getattr(network, "out_channels", None)
            if channels is None:
                raise InputError(
                    "every patch was empty and the network does not declare out_channels; set skip_empty=None"
                )
            output = torch.zeros((batch.shape[0], channels) + spatial, dtype=torch.float32, device=out_device)
        if skipped:
            fill = torch.as_tensor(empty_output, dtype=torch.float32, device=out_device).reshape(-1, *([1] * dims))
            if bool((fill != 0).any()):
                for n, start in skipped:
                    image_sl, patch_sl = _regions(start, patch, spatial)
                    output[(n, slice(None)) + image_sl] += fill * weights_out[patch_sl]
        output.div_(weight_sum)
        apply_activation_(output, activation)
    return batch_to_image(output, image) if image is not None else output


def _gather(sample: torch.Tensor, start: Sequence[int], patch: Sequence[int], pad_value: float) -> torch.Tensor:
    """One (C, *patch) input patch; the part outside the image is ``pad_value``."""
    image_sl, patch_sl = _regions(start, patch, sample.shape[1:])
    if not _is_padded(patch_sl, patch):
        return sample[(slice(None),) + image_sl]
    tile = torch.full((sample.shape[0],) + tuple(patch), pad_value, dtype=sample.dtype, device=sample.device)
    tile[(slice(None),) + patch_sl] = sample[(slice(None),) + image_sl]
    return tile
