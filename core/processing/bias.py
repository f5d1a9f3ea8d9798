"""N4 bias field correction (Tustison et al. 2010) with a SimpleITK or an ANTs backend.

Both backends get the same parameters: the mask (given, or Otsu's foreground of the image), the
shrink factor, the iterations per fitting level (one level per entry), the convergence threshold
and the B-spline mesh size (control points = mesh + spline order 3, ITK's default 4 per axis).
The field is fitted on the shrunk image and evaluated on the full grid; the output is the input
divided by it (float32; float64 stays float64).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medpipes.core.errors import InputError, ProcessingError
from medpipes.core.image import Image
from medpipes.core.processing.base import Record, check_finite
from medpipes.core.processing.grid import require_one_grid
from medpipes.core.processing.intensity import IntensityStep
from medpipes.core.processing._sitk_bridge import array_from_sitk, array_to_sitk

BACKENDS = ("sitk", "ants")
SPLINE_ORDER = 3


class N4BiasFieldCorrection(IntensityStep):
    """Divide out a smooth multiplicative bias field estimated by N4 (``backend`` 'sitk' or 'ants').

    ``mask`` (an Image on the same grid, or its path; voxels > 0 count) restricts the fit; without
    one, Otsu's threshold of the image gives the foreground. Voxels <= 0 are left out of the fit.
    """

    def __init__(
        self,
        backend: str = "sitk",
        mask: Image | str | os.PathLike[str] | None = None,
        shrink_factor: int = 4,
        iterations: int | Sequence[int] = (50, 50, 50, 50),
        convergence_threshold: float = 1e-7,
        spline_mesh_size: int = 1,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name or "n4")
        if backend not in BACKENDS:
            raise InputError(f"{self.name}: unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.mask = _mask(mask, self.name)
        if int(shrink_factor) != shrink_factor or int(shrink_factor) < 1:
            raise InputError(f"{self.name}: shrink_factor {shrink_factor!r} must be a whole number >= 1, e.g. 4")
        self.shrink_factor = int(shrink_factor)
        levels = [iterations] if np.ndim(iterations) == 0 else list(iterations)  # type: ignore[list-item]
        if not levels or any(int(n) != n or int(n) < 1 for n in levels):
            raise InputError(f"{self.name}: iterations {iterations!r} must be whole numbers >= 1, one per level, e.g. 50,50,50,50")
        self.iterations = tuple(int(n) for n in levels)
        self.convergence_threshold = float(convergence_threshold)
        if not self.convergence_threshold >= 0:
            raise InputError(f"{self.name}: convergence_threshold {convergence_threshold!r} must be >= 0")
        if int(spline_mesh_size) != spline_mesh_size or int(spline_mesh_size) < 1:
            raise InputError(f"{self.name}: spline_mesh_size {spline_mesh_size!r} must be a whole number >= 1")
        self.spline_mesh_size = int(spline_mesh_size)

    def _apply(self, image: Image) -> tuple[Image, Record]:
        if image.array.ndim != 3:
            raise InputError(f"{self.name}: needs a 3D image, got shape {image.shape}; correct each volume separately")
        if self.mask is not None:
            require_one_grid({"image": image, "mask": self.mask}, self.name)
        array = image.array if image.array.dtype == np.float64 else image.array.astype(np.float32, copy=False)
        source = Image(array, image.affine)
        mask = self.mask_for(source)
        if self.backend == "sitk":
            corrected = self._sitk(source, mask)
        else:
            corrected = self._ants(source, mask)
        return image.with_array(corrected.astype(array.dtype, copy=False)), Record(self.name)

    def mask_for(self, image: Image) -> np.ndarray:
        """The uint8 fit mask: the given mask, else Otsu's foreground; voxels <= 0 always excluded."""
        if self.mask is not None:
            mask = self.mask.array > 0
        else:
            source, _ = array_to_sitk(image.array, image.affine, reverse=False)
            mask = array_from_sitk(sitk.OtsuThreshold(source, 0, 1, 200), reverse=False).astype(bool)
        mask &= image.array > 0
        if not mask.any():
            raise ProcessingError(f"{self.name}: the fit mask holds no voxel > 0; give a mask= over the anatomy")
        return mask.astype(np.uint8)

    def _sitk(self, image: Image, mask: np.ndarray) -> np.ndarray:
        # SimpleITK's x stays our i even for C-ordered arrays (one transposed copy of a small volume): with the
        # axes reversed N4's iterative fit amplifies float rounding to ~4e-4 (relative) on a real T1, for no gain.
        full, _ = array_to_sitk(image.array, image.affine, reverse=False)
        small = sitk.Shrink(full, [self.shrink_factor] * 3)
        small_mask = sitk.Shrink(array_to_sitk(mask, image.affine, reverse=False)[0], [self.shrink_factor] * 3)
        n4 = sitk.N4BiasFieldCorrectionImageFilter()
        n4.SetMaximumNumberOfIterations(list(self.iterations))
        n4.SetConvergenceThreshold(self.convergence_threshold)
        n4.SetSplineOrder(SPLINE_ORDER)
        n4.SetNumberOfControlPoints([self.spline_mesh_size + SPLINE_ORDER] * 3)
        try:
            n4.Execute(small, small_mask)
            log_field = n4.GetLogBiasFieldAsImage(full)
        except RuntimeError as exc:
            raise ProcessingError(f"{self.name}: SimpleITK N4 failed: {_last_line(str(exc))}") from None
        field = array_from_sitk(log_field, reverse=False)
        return image.array / np.exp(field, dtype=np.float64)

    def _ants(self, image: Image, mask: np.ndarray) -> np.ndarray:
        import ants
        from medpipes.core.processing.registration import to_ants

        try:
            field = ants.n4_bias_field_correction(
                to_ants(Image(image.array.astype(np.float32, copy=False), image.affine)),
                mask=to_ants(Image(mask, image.affine)).clone("float"),
                shrink_factor=self.shrink_factor,
                convergence={"iters": list(self.iterations), "tol": self.convergence_threshold},
                spline_param=[self.spline_mesh_size] * 3,
                return_bias_field=True,
            )
        except (RuntimeError, ValueError) as exc:
            raise ProcessingError(f"{self.name}: ANTs N4 failed: {_last_line(str(exc))}") from None
        # ANTs returns the field itself; divide in our precision (the image it returns is float32).
        return image.array / field.numpy().astype(np.float64)

    def __repr__(self) -> str:
        mask = "given" if self.mask is not None else "otsu"
        return (
            f"N4BiasFieldCorrection(backend={self.backend!r}, mask={mask}, shrink_factor={self.shrink_factor}, "
            f"iterations={list(self.iterations)}, convergence_threshold={self.convergence_threshold:g}, "
            f"spline_mesh_size={self.spline_mesh_size})"
        )


def _mask(mask: Image | str | os.PathLike[str] | None, step: str) -> Image | None:
    if mask is None or isinstance(mask, Image):
        if mask is not None:
            check_finite(mask, f"{step} mask")
        return mask
    path = Path(mask)
    if not path.exists():
        raise InputError(f"{step}: mask file {path} not found; fix the path or leave mask out (Otsu)")
    from medpipes.core.io import read_image

    image = read_image(path)
    check_finite(image, f"{step} mask")
    return image


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


__all__ = ["BACKENDS", "N4BiasFieldCorrection"]
