"""Hand (i, j, k) arrays to SimpleITK and back with one copy each way: the axis order goes into the geometry.

``Image.to_sitk`` transposes the voxels so that SimpleITK's x is our i (what NRRD/MHA files need).
Inside processing no file is written, so the voxels can stay where they are instead:

- a C-ordered array is given to SimpleITK as it lies; SimpleITK reads it as (z, y, x), so its
  index (x, y, z) is our (k, j, i) and the spacing and direction columns are reversed to match
  ("reversed" axes);
- an F-ordered array (as nibabel reads NIfTI) is given as its transposed view, which is already
  C-ordered, so SimpleITK's x is our i as in ``to_sitk`` ("plain" axes).

Either way SimpleITK copies the voxels once, and reading a result back (``array_from_sitk`` with
the same ``reverse``) is one copy without a transpose: the output keeps the input's memory order.
Filters work in physical space, so the voxels they compute are the same up to float rounding.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medpipes.core.image import LPS_TO_RAS
from medpipes.core.processing.grid import Grid


def reverses_axes(array: np.ndarray) -> bool:
    """True when ``array`` goes to SimpleITK as it lies (reversed axes): always, unless it is F-ordered."""
    return not (array.flags.f_contiguous and not array.flags.c_contiguous)


def sitk_ready(array: np.ndarray) -> np.ndarray:
    """``array`` in a pixel type SimpleITK takes: native byte order, float16 -> float32, bool -> uint8 (no copy when fine)."""
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if not array.dtype.isnative:
        return array.astype(array.dtype.newbyteorder("="))
    return array


def sitk_geometry(grid: Grid, reverse: bool) -> tuple[list[float], list[float], list[float]]:
    """SimpleITK spacing, origin (LPS) and direction of ``grid``, with axes reversed when ``reverse``."""
    lps = LPS_TO_RAS @ grid.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    if reverse:
        spacing, direction = spacing[::-1], direction[:, ::-1]
    return spacing.tolist(), lps[:3, 3].tolist(), direction.flatten().tolist()


def sitk_size(grid: Grid, reverse: bool) -> list[int]:
    """SimpleITK's (x, y, z) size of ``grid``."""
    size = [int(n) for n in grid.spatial_shape]
    return size[::-1] if reverse else size


def array_to_sitk(array: np.ndarray, affine: np.ndarray, reverse: bool | None = None) -> tuple[sitk.Image, bool]:
    """A 3D SimpleITK image of ``array`` (our (i, j, k) order) on ``affine``, copied once; and whether its axes are reversed.

    ``reverse`` defaults to what costs no transposed copy (``reverses_axes``); pass the same value to
    ``array_from_sitk`` for anything computed on this image's grid.
    """
    if array.ndim != 3:
        raise ValueError(f"array_to_sitk: needs a 3D array, got shape {array.shape}")
    array = sitk_ready(array)
    reverse = reverses_axes(array) if reverse is None else reverse
    image = sitk.GetImageFromArray(array if reverse else array.T, isVector=False)
    spacing, origin, direction = sitk_geometry(Grid(array.shape, affine), reverse)  # type: ignore[arg-type]
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image, reverse


def array_from_sitk(image: sitk.Image, reverse: bool) -> np.ndarray:
    """The voxels of a 3D SimpleITK image in our (i, j, k) order: one copy, C-ordered when reversed, else F-ordered."""
    array = sitk.GetArrayFromImage(image)
    return array if reverse else array.T


def resampler_onto(grid: Grid, reverse: bool, interpolator: int, output_pixel: int = sitk.sitkUnknown) -> sitk.ResampleImageFilter:
    """A ResampleImageFilter onto ``grid`` (axes reversed when ``reverse``), 0 outside the input."""
    spacing, origin, direction = sitk_geometry(grid, reverse)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(sitk_size(grid, reverse))
    resampler.SetOutputSpacing(spacing)
    resampler.SetOutputOrigin(origin)
    resampler.SetOutputDirection(direction)
    resampler.SetInterpolator(interpolator)
    resampler.SetDefaultPixelValue(0)
    resampler.SetOutputPixelType(output_pixel)
    return resampler


__all__ = ["array_from_sitk", "array_to_sitk", "resampler_onto", "reverses_axes", "sitk_geometry", "sitk_ready", "sitk_size"]
