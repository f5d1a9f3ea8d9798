"""Where overlapping patches go, and how much each voxel of a patch counts when they are blended."""

from __future__ import annotations

import itertools
from typing import Sequence

import torch

from medpipes.core.errors import InputError

BLEND_MODES = ("constant", "gaussian")


def axis_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Patch starts along one axis: a step of int(patch * (1 - overlap)), the last patch flush with the end.

    When the axis is shorter than the patch, one patch starts before 0, centred (the part outside is
    padding). This is MONAI's rule (``dense_patch_slices``), so results can be compared voxel for voxel.
    """
    if size <= patch:
        return [-((patch - size) // 2)]
    step = max(int(patch * (1 - overlap)), 1)
    starts = []
    position = 0
    while True:
        starts.append(min(position, size - patch))
        if position + patch >= size:
            return starts
        position += step


def patch_starts(
    spatial_shape: Sequence[int], patch_size: Sequence[int], overlap: Sequence[float]
) -> list[tuple[int, ...]]:
    """Every patch's start corner (row-major over the axes); together the patches cover the whole image."""
    per_axis = [axis_starts(s, p, o) for s, p, o in zip(spatial_shape, patch_size, overlap)]
    return list(itertools.product(*per_axis))


def check_overlap(overlap: float | Sequence[float], spatial_dims: int) -> tuple[float, ...]:
    """Overlap per axis, each in [0, 1)."""
    values = (float(overlap),) * spatial_dims if isinstance(overlap, (int, float)) else tuple(float(o) for o in overlap)
    if len(values) != spatial_dims or any(not 0 <= o < 1 for o in values):
        raise InputError(f"overlap = {overlap} must be one value or {spatial_dims} values, each in [0, 1)")
    return values


def importance_map(
    patch_size: Sequence[int],
    mode: str = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Blending weights over one patch: ones, or a separable Gaussian (sigma = sigma_scale * patch size).

    The Gaussian matches MONAI's ``compute_importance_map``: exp(-x^2 / (2 sigma^2)) for x measured
    from the patch centre, multiplied across axes, then raised to at least max(min, 1e-3) so no voxel
    has zero weight.
    """
    if mode not in BLEND_MODES:
        raise InputError(f"blend = {mode!r} is not valid; choose one of {', '.join(BLEND_MODES)}")
    if mode == "constant":
        return torch.ones(tuple(patch_size), dtype=torch.float32, device=device)
    scales = (sigma_scale,) * len(patch_size) if isinstance(sigma_scale, (int, float)) else tuple(sigma_scale)
    if len(scales) != len(patch_size) or any(s <= 0 for s in scales):
        raise InputError(f"sigma_scale = {sigma_scale} must be positive, one value or one per axis")
    weights = None
    for axis, (size, scale) in enumerate(zip(patch_size, scales)):
        sigma = size * scale
        x = torch.arange(-(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=torch.float32, device=device)
        g = torch.exp(x**2 / (-2 * sigma**2))
        weights = g if weights is None else weights.unsqueeze(-1) * g[(None,) * axis]
    assert weights is not None
    floor = max(torch.min(weights).item(), 1e-3)
    return weights.clamp_(min=floor)
