"""Resampling a voxel array through a chain of spatial steps, over the whole output grid or one box of it.

Every step maps its OUTPUT voxel indices to its INPUT voxel indices (what resampling needs). A chain of
affine steps is multiplied into one matrix, so flips, rotations and a random affine cost one
interpolation; an elastic step (a cubic B-spline displacement field) joins them in one SimpleITK
composite transform. A chain that is a pure signed axis permutation with whole-voxel offsets (flips,
90-degree rotations, crops) is done by indexing: exact and fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

Box = tuple[tuple[int, int, int], tuple[int, int, int]]
"""(start, size) in voxels of a grid; may reach outside it (filled)."""


@dataclass(frozen=True, eq=False)
class AffineStep:
    """Output voxel (i, j, k, 1) -> input voxel, as a 4x4 matrix."""

    matrix: np.ndarray


@dataclass(frozen=True, eq=False)
class ElasticStep:
    """Output voxel -> output voxel + cubic B-spline displacement (voxels), over an output grid of ``shape``.

    ``coefficients`` has shape (3, n, n, n): per axis, the control points' displacements in voxels.
    """

    shape: tuple[int, int, int]
    coefficients: np.ndarray

    def sitk_transform(self) -> sitk.Transform:
        """The displacement as a SimpleITK BSplineTransform in index space (spacing 1, origin 0)."""
        reference = sitk.Image([int(n) for n in self.shape], sitk.sitkUInt8)
        mesh = [int(n) - 3 for n in self.coefficients.shape[1:]]
        transform = sitk.BSplineTransformInitializer(reference, mesh, 3)
        # SimpleITK orders each axis' coefficients with x fastest: transpose (i, j, k) to (k, j, i) before ravel.
        params = np.concatenate([self.coefficients[a].transpose(2, 1, 0).ravel() for a in range(3)])
        transform.SetParameters(params.astype(np.float64).tolist())
        return transform


Step = AffineStep | ElasticStep


def compose(steps: Sequence[Step]) -> list[Step]:
    """The same chain with runs of affine steps multiplied into one (steps listed in the order applied)."""
    out: list[Step] = []
    for step in steps:
        if isinstance(step, AffineStep) and out and isinstance(out[-1], AffineStep):
            out[-1] = AffineStep(out[-1].matrix @ step.matrix)  # earlier step's map applied after the later's
        else:
            out.append(step)
    return out


def total_matrix(steps: Sequence[Step]) -> np.ndarray | None:
    """Output -> source voxel matrix of an all-affine chain (None when it holds an elastic step)."""
    matrix = np.eye(4)
    for step in steps:
        if not isinstance(step, AffineStep):
            return None
        matrix = matrix @ step.matrix
    return matrix


def resample(
    array: np.ndarray,
    steps: Sequence[Step],
    box: Box,
    *,
    nearest: bool,
    fill: float = 0.0,
) -> np.ndarray:
    """Values of ``array`` (i, j, k[, c]) through ``steps`` at the voxels of ``box`` of the output grid.

    Linear interpolation for images (float32 out), nearest neighbour for labels (dtype kept); points
    outside the source read ``fill``.
    """
    steps = compose(steps)
    matrix = total_matrix(steps)
    if matrix is not None and _is_permutation(matrix):
        return _index(array, matrix, box, fill)
    squeeze = array.ndim == 3
    channels = array[..., np.newaxis] if squeeze else array
    transform = _sitk_chain(steps)
    start, size = box
    out = np.empty(tuple(size) + (channels.shape[3],), dtype=channels.dtype if nearest else np.float32)
    for c in range(channels.shape[3]):
        volume = channels[..., c] if nearest else channels[..., c].astype(np.float32, copy=False)
        out[..., c] = _sitk_resample(volume, transform, start, size, nearest, fill)
    return out[..., 0] if squeeze else out


def _sitk_chain(steps: Sequence[Step]) -> sitk.Transform:
    transforms: list[sitk.Transform] = []
    for step in steps:
        if isinstance(step, AffineStep):
            affine = sitk.AffineTransform(3)
            affine.SetMatrix(step.matrix[:3, :3].ravel().tolist())
            affine.SetTranslation(step.matrix[:3, 3].tolist())
            transforms.append(affine)
        else:
            transforms.append(step.sitk_transform())
    # A CompositeTransform applies its last transform first: the last step's map meets output points first.
    return transforms[0] if len(transforms) == 1 else sitk.CompositeTransform(transforms)


def _sitk_resample(
    volume: np.ndarray, transform: sitk.Transform, start: Sequence[int], size: Sequence[int], nearest: bool, fill: float
) -> np.ndarray:
    # SimpleITK's (x, y, z) array order is our (k, j, i): the transposed view puts index i on x.
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.T))
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in size])
    resampler.SetOutputOrigin([float(s) for s in start])
    resampler.SetOutputSpacing([1.0, 1.0, 1.0])
    resampler.SetTransform(transform)
    resampler.SetInterpolator(sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear)
    resampler.SetDefaultPixelValue(float(fill))
    resampler.SetOutputPixelType(image.GetPixelID())
    return sitk.GetArrayFromImage(resampler.Execute(image)).T


def _is_permutation(matrix: np.ndarray) -> bool:
    linear = matrix[:3, :3]
    rounded = np.round(linear)
    if not np.allclose(linear, rounded, atol=1e-9) or not np.allclose(matrix[:3, 3], np.round(matrix[:3, 3]), atol=1e-6):
        return False
    return bool(np.all(np.abs(rounded).sum(axis=0) == 1) and np.all(np.abs(rounded).sum(axis=1) == 1))


def _index(array: np.ndarray, matrix: np.ndarray, box: Box, fill: float) -> np.ndarray:
    """Exact resampling by a signed axis permutation (flips, 90-degree turns, whole-voxel shifts)."""
    start, size = box
    linear = np.round(matrix[:3, :3]).astype(int)
    offset = np.round(matrix[:3, 3]).astype(int)
    source_axis = [int(np.flatnonzero(linear[:, a])[0]) for a in range(3)]  # output axis a reads source axis
    moved = np.moveaxis(array, source_axis, [0, 1, 2])
    index, valid = [], []
    for a in range(3):
        s = source_axis[a]
        coords = linear[s, a] * (start[a] + np.arange(size[a])) + offset[s]
        inside = (coords >= 0) & (coords < array.shape[s])
        index.append(np.clip(coords, 0, array.shape[s] - 1))
        valid.append(inside)
    out = moved[np.ix_(*index)]
    if not all(v.all() for v in valid):
        out = np.array(out, copy=True)
        for a in range(3):
            if not valid[a].all():
                selector = [slice(None)] * out.ndim
                selector[a] = ~valid[a]
                out[tuple(selector)] = fill
    return out
