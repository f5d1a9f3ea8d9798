"""Spatial steps: reorient, resample, crop to foreground, pad; each records its input grid and inverts.

Inverses put back the recorded input affine itself, so shape and affine round-trip exactly; the
voxels round-trip exactly for reorient, crop (outside the box is background) and pad.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import SimpleITK as sitk
from nibabel import orientations

from medpipes.core.errors import InputError, ProcessingError
from medpipes.core.image import Image
from medpipes.core.processing.base import Box, Preprocessor, Record, named_input
from medpipes.core.processing.grid import Grid, require_one_grid
from medpipes.core.processing._sitk_bridge import array_from_sitk, array_to_sitk, resampler_onto, reverses_axes, sitk_ready

INTERPOLATORS: dict[str, int] = {
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
    "nearest": sitk.sitkNearestNeighbor,
}
_AXIS_PAIRS = ("LR", "PA", "IS")


class Reorient(Preprocessor):
    """Permute and flip axes so they point along ``axcodes`` (e.g. 'RAS', 'LPS'): exact, no interpolation.

    Each array axis is matched to its closest world axis (nibabel's ``io_orientation``), so an
    oblique grid stays oblique: only the voxel order changes, never a voxel's world position.
    """

    spatial = True

    def __init__(self, axcodes: str = "RAS", *, on: str | Sequence[str] | None = None, name: str | None = None) -> None:
        super().__init__(on=on, name=name)
        codes = str(axcodes).upper()
        letters = [c for pair in _AXIS_PAIRS for c in pair]
        if len(codes) != 3 or any(c not in letters for c in codes) or any(
            sum(c in pair for c in codes) != 1 for pair in _AXIS_PAIRS
        ):
            raise InputError(
                f"reorient: axis codes '{axcodes}' are not one letter from each of L/R, P/A, I/S; "
                "use e.g. 'RAS', 'LPS' or 'PIR'"
            )
        self.axcodes = codes
        self._target = orientations.axcodes2ornt(tuple(codes))

    def _apply(self, image: Image) -> tuple[Image, Record]:
        transform = orientations.ornt_transform(orientations.io_orientation(image.affine), self._target)
        array = np.array(orientations.apply_orientation(image.array, transform))  # a copy, never a view
        affine = image.affine @ orientations.inv_ornt_aff(transform, image.spatial_shape)
        out = type(image)(array, affine, image.meta)
        return out, self.spatial_record(image, out)

    def _invert(self, image: Image, record: Record) -> Image:
        assert record.input_grid is not None
        back = orientations.io_orientation(record.input_grid.affine)
        transform = orientations.ornt_transform(orientations.io_orientation(image.affine), back)
        array = np.array(orientations.apply_orientation(image.array, transform))
        return type(image)(array, record.input_grid.affine, image.meta)

    def __repr__(self) -> str:
        return f"Reorient({self.axcodes!r})"


class Resample(Preprocessor):
    """Resample onto a new spacing or shape with SimpleITK; label maps always use nearest neighbour.

    The new grid keeps the input's direction and the world position of its centre. With ``shape``
    the field of view (voxels x spacing) is kept exactly and the spacing follows from it; with
    ``spacing`` the voxel count is rounded, so the field of view changes by less than one new
    voxel. Linear and B-spline results are float32 (float64 input stays float64). The inverse
    resamples back onto the recorded input grid: nearest for label maps, linear for images.
    """

    spatial = True

    def __init__(
        self,
        spacing: float | Sequence[float] | None = None,
        shape: Sequence[int] | None = None,
        interpolation: str = "linear",
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name)
        if (spacing is None) == (shape is None):
            raise InputError("resample: give exactly one of spacing= (mm) or shape= (voxels)")
        self.spacing_mm: tuple[float, float, float] | None = None
        self.shape: tuple[int, int, int] | None = None
        if spacing is not None:
            values = _three(spacing)
            if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
                raise InputError(f"resample: spacing {spacing!r} is not one or three positive numbers (mm); e.g. 1 or (1, 1, 3)")
            self.spacing_mm = tuple(float(v) for v in values)  # type: ignore[assignment]
        else:
            sizes = _whole_numbers(_three(shape), minimum=1) if np.ndim(shape) == 1 else None
            if sizes is None:
                raise InputError(f"resample: shape {shape!r} is not three positive whole numbers; e.g. (128, 128, 96)")
            self.shape = sizes
        if interpolation not in INTERPOLATORS:
            raise InputError(f"resample: unknown interpolation '{interpolation}'; use one of {', '.join(INTERPOLATORS)}")
        self.interpolation = interpolation

    def target_grid(self, image: Image) -> Grid:
        """The grid this step resamples ``image`` onto."""
        old_shape = np.array(image.spatial_shape, dtype=np.float64)
        old_spacing = np.array(image.spacing)
        if self.shape is not None:
            new_shape = np.array(self.shape, dtype=np.float64)
            new_spacing = old_shape * old_spacing / new_shape
        else:
            new_spacing = np.array(self.spacing_mm)
            new_shape = np.maximum(1.0, np.floor(old_shape * old_spacing / new_spacing + 0.5))
        centre = image.voxel_to_world((old_shape - 1) / 2)
        affine = np.eye(4)
        affine[:3, :3] = image.direction * new_spacing
        affine[:3, 3] = centre - affine[:3, :3] @ ((new_shape - 1) / 2)
        return Grid(tuple(int(n) for n in new_shape), affine)  # type: ignore[arg-type]

    def _apply(self, image: Image) -> tuple[Image, Record]:
        out = resample_onto(image, self.target_grid(image), self.interpolation)
        return out, self.spatial_record(image, out)

    def _invert(self, image: Image, record: Record) -> Image:
        assert record.input_grid is not None
        return resample_onto(image, record.input_grid, "linear")

    def __repr__(self) -> str:
        target = f"spacing={self.spacing_mm}" if self.spacing_mm is not None else f"shape={self.shape}"
        return f"Resample({target}, interpolation={self.interpolation!r})"


def resample_onto(image: Image, grid: Grid, interpolation: str = "linear") -> Image:
    """``image`` resampled onto ``grid`` (world positions kept; outside the input is 0; labels nearest).

    Linear and B-spline results are float32 (float64 input stays float64); nearest keeps the dtype.
    The result keeps the input's memory order (C or F): the voxels are copied once into SimpleITK
    and once out, never transposed (``_sitk_bridge``).
    """
    if interpolation not in INTERPOLATORS:
        raise InputError(f"resample: unknown interpolation '{interpolation}'; use one of {', '.join(INTERPOLATORS)}")
    mode = "nearest" if image.is_label else interpolation
    array = sitk_ready(image.array)
    reverse = reverses_axes(array)
    # Interpolating integers straight into float32 output gives the same voxels as converting them first, without the copy.
    output_pixel = sitk.sitkUnknown if mode == "nearest" or array.dtype == np.float64 else sitk.sitkFloat32
    resampler = resampler_onto(grid, reverse, INTERPOLATORS[mode], output_pixel)

    def one(volume: np.ndarray) -> np.ndarray:
        return array_from_sitk(resampler.Execute(array_to_sitk(volume, image.affine, reverse)[0]), reverse)

    if array.ndim == 3:
        return type(image)(one(array), grid.affine, image.meta)
    first = one(array[..., 0])
    data = np.empty(grid.spatial_shape + (array.shape[3],), first.dtype, order="C" if reverse else "F")
    data[..., 0] = first
    for t in range(1, array.shape[3]):
        data[..., t] = one(array[..., t])
    return type(image)(data, grid.affine, image.meta)


def _three(value: float | Sequence[float]) -> np.ndarray:
    """One number repeated for the three axes, or the three numbers given (any other length kept, to refuse)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([np.nan])
    return np.repeat(array, 3) if array.ndim == 0 else array.ravel()


def _whole_numbers(values: np.ndarray, minimum: int) -> tuple[int, int, int] | None:
    """Three whole numbers >= ``minimum`` as ints, or None when ``values`` is anything else."""
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values != np.round(values)) or np.any(values < minimum):
        return None
    return tuple(int(v) for v in values)  # type: ignore[return-value]


class _BoxStep(Preprocessor):
    """A step that cuts a box out of the grid (padding where the box reaches outside); inverts exactly."""

    spatial = True

    def _invert(self, image: Image, record: Record) -> Image:
        assert record.input_grid is not None and record.box is not None
        back: Box = tuple(  # type: ignore[assignment]
            (-start, -start + n) for (start, _), n in zip(record.box, record.input_grid.spatial_shape)
        )
        array = extract_box(image.array, back)
        return type(image)(array, record.input_grid.affine, image.meta)

    def _cut(self, image: Image, box: Box, fill_value: float = 0.0) -> tuple[Image, Record]:
        array = extract_box(image.array, box, 0.0 if image.is_label else fill_value)
        affine = image.affine.copy()
        affine[:3, 3] = image.affine[:3, :3] @ np.array([start for start, _ in box], dtype=np.float64) + image.affine[:3, 3]
        out = type(image)(array, affine, image.meta)
        return out, self.spatial_record(image, out, box)


def extract_box(array: np.ndarray, box: Box, fill_value: float = 0.0) -> np.ndarray:
    """A new array holding ``array[box]`` over the first three axes, ``fill_value`` outside the input."""
    out_shape = tuple(stop - start for start, stop in box) + tuple(array.shape[3:])
    out = np.full(out_shape, fill_value, dtype=array.dtype)
    src, dst = [], []
    for (start, stop), n in zip(box, array.shape[:3]):
        lo, hi = max(start, 0), min(stop, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = array[tuple(src)]
    return out


class CropToForeground(_BoxStep):
    """Crop to the bounding box of voxels above ``threshold``, widened by ``margin_vox`` (kept inside the image).

    Given several named images (on one grid), one box is cut from all of them: the box of
    ``reference`` when named, else the box around the foreground of every one.
    """

    def __init__(
        self,
        margin_vox: int | Sequence[int] = 0,
        threshold: float = 0.0,
        *,
        reference: str | None = None,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name)
        margin = _whole_numbers(_three(margin_vox), minimum=0)
        if margin is None:
            raise InputError(f"crop_to_foreground: margin_vox {margin_vox!r} is not one or three whole numbers >= 0; e.g. 2")
        self.margin_vox = margin
        self.threshold = float(threshold)
        self.reference = reference

    def foreground_box(self, image: Image) -> Box | None:
        """The margin-widened box around voxels above the threshold (any volume of a 4D image), or None."""
        mask = image.array > self.threshold
        if mask.ndim == 4:
            mask = mask.any(axis=3)
        if not mask.any():
            return None
        box = []
        for axis, (n, margin) in enumerate(zip(image.spatial_shape, self.margin_vox)):
            hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
            box.append((max(int(hit[0]) - margin, 0), min(int(hit[-1]) + 1 + margin, n)))
        return tuple(box)  # type: ignore[return-value]

    def _apply(self, image: Image) -> tuple[Image, Record]:
        return self._cut(image, self._box_or_fail({"image": image}))

    def apply_all(self, images: Mapping[str, Image]) -> dict[str, tuple[Image, Record]]:
        """Cut one box from all images (they must share one grid), so they stay aligned."""
        for name, image in images.items():
            with named_input(name):
                self.check_input(image)
        if len(images) > 1:
            require_one_grid(images, self.name)
        if self.reference is not None:
            if self.reference not in images:
                raise InputError(
                    f"{self.name}: reference '{self.reference}' is not among its inputs {sorted(images)}; "
                    "name one of them or add it to on=[...]"
                )
            box = self._box_or_fail({self.reference: images[self.reference]})
        else:
            box = self._box_or_fail(images)
        return {name: self._cut(image, box) for name, image in images.items()}

    def _box_or_fail(self, images: Mapping[str, Image]) -> Box:
        boxes = [b for b in (self.foreground_box(image) for image in images.values()) if b is not None]
        if not boxes:
            raise ProcessingError(
                f"{self.name}: no voxel above {self.threshold:g} in {', '.join(repr(n) for n in images)}; "
                "lower threshold= or drop the crop step"
            )
        return tuple((min(b[a][0] for b in boxes), max(b[a][1] for b in boxes)) for a in range(3))  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"CropToForeground(margin_vox={self.margin_vox}, threshold={self.threshold:g})"


class Pad(_BoxStep):
    """Pad each axis up to ``shape`` (centred; an odd extra voxel goes at the end); longer axes are kept.

    Intensity images are padded with ``fill_value``, label maps with 0.
    """

    def __init__(
        self,
        shape: Sequence[int],
        fill_value: float = 0.0,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name)
        sizes = _whole_numbers(_three(shape), minimum=1) if np.ndim(shape) == 1 else None
        if sizes is None:
            raise InputError(f"pad: shape {shape!r} is not three positive whole numbers; e.g. (128, 128, 96)")
        self.shape = sizes
        self.fill_value = float(fill_value)

    def _apply(self, image: Image) -> tuple[Image, Record]:
        box = []
        for n, m in zip(image.spatial_shape, self.shape):
            before = max(m - n, 0) // 2
            box.append((-before, -before + max(m, n)))
        return self._cut(image, tuple(box), self.fill_value)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Pad(shape={self.shape}, fill_value={self.fill_value:g})"
