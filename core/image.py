"""Image and LabelMap: a voxel array that always travels with its 4x4 affine and metadata.

Conventions (the same as nibabel's): the array is indexed (i, j, k[, t]); ``affine`` maps voxel
indices (i, j, k, 1) to RAS+ world coordinates in millimetres. A 4D array's last axis is time or
volume. SimpleITK's LPS frame and (z, y, x) array order are converted at the boundary only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medpipes.core.errors import GeometryError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class ImageMeta:
    """What an image is, beyond its voxels and grid."""

    modality: str | None = None
    series_instance_uid: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    study_instance_uid: str | None = None
    source_paths: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> "ImageMeta":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def validate_affine(affine: Any) -> np.ndarray:
    """Return ``affine`` as a float64 4x4 array, or raise GeometryError saying what is wrong."""
    try:
        a = np.array(affine, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"affine is not numeric: {exc}; pass a 4x4 array of floats") from None
    if a.shape != (4, 4):
        raise GeometryError(f"affine has shape {a.shape}; an Image needs a 4x4 affine")
    if not np.all(np.isfinite(a)):
        raise GeometryError("affine contains NaN or infinity; check the source header's geometry")
    if not np.allclose(a[3], [0, 0, 0, 1], atol=1e-9):
        raise GeometryError(f"affine's last row is {a[3].tolist()}, expected [0, 0, 0, 1]")
    det = np.linalg.det(a[:3, :3])
    if abs(det) < 1e-12:
        raise GeometryError("affine's 3x3 part is singular (zero spacing or collinear axes)")
    return a


class Image:
    """A 3D or 4D voxel array with its voxel-to-RAS affine and metadata."""

    is_label: bool = False

    def __init__(self, array: np.ndarray, affine: Any, meta: ImageMeta | None = None) -> None:
        array = np.asarray(array)
        if array.ndim not in (3, 4):
            raise GeometryError(
                f"an Image needs a 3D or 4D array, got shape {array.shape}; "
                "give a single slice an axis of length 1"
            )
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        self.array = array
        self.affine = validate_affine(affine)
        self.meta = meta if meta is not None else ImageMeta()
        self._check_kind()

    def _check_kind(self) -> None:
        """Subclasses restrict the dtype."""

    # --- geometry derived from the affine --------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape[:3])  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def origin(self) -> tuple[float, float, float]:
        """RAS position (mm) of the centre of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit RAS directions of the i, j, k axes."""
        return self.affine[:3, :3] / np.array(self.spacing)

    @property
    def orientation(self) -> str:
        """Axis codes such as 'RAS' or 'LPI': where each array axis points (closest world axis)."""
        return "".join(nib.aff2axcodes(self.affine))

    def voxel_to_world(self, ijk: Any) -> np.ndarray:
        """RAS mm coordinates of voxel indices (N x 3 or 3)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_voxel(self, xyz: Any) -> np.ndarray:
        """Continuous voxel indices of RAS mm coordinates (N x 3 or 3)."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=np.float64)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def same_grid(self, other: "Image", atol_mm: float = 1e-3) -> bool:
        """True when both images have the same spatial shape and affines within ``atol_mm``."""
        return self.spatial_shape == other.spatial_shape and bool(
            np.allclose(self.affine, other.affine, atol=atol_mm)
        )

    # --- copies ---------------------------------------------------------------------------
    def with_array(self, array: np.ndarray) -> "Image":
        """Same grid and metadata, new voxels (the spatial shape must not change)."""
        array = np.asarray(array)
        if tuple(array.shape[:3]) != self.spatial_shape or array.ndim not in (3, 4):
            raise GeometryError(
                f"with_array needs spatial shape {self.spatial_shape}, got {array.shape}; "
                "use a resampling step to change the grid"
            )
        return type(self)(array, self.affine, self.meta)

    def with_meta(self, **changes: Any) -> "Image":
        """Same voxels and grid, some metadata fields changed."""
        return type(self)(self.array, self.affine, self.meta.replace(**changes))

    def as_label_map(self) -> "LabelMap":
        """This image's voxels read as labels (must be integer-valued)."""
        return LabelMap(self.array, self.affine, self.meta)

    def volumes(self) -> list["Image"]:
        """The 3D volumes of a 4D image (a 3D image gives itself)."""
        if self.array.ndim == 3:
            return [self]
        return [type(self)(self.array[..., t], self.affine, self.meta) for t in range(self.array.shape[3])]

    # --- conversions ----------------------------------------------------------------------
    def to_nibabel(self) -> nib.Nifti1Image:
        """A NIfTI-1 image with this affine as both sform and qform (code 1, scanner)."""
        img = nib.Nifti1Image(self.array, self.affine)
        img.set_sform(self.affine, code=1)
        img.set_qform(self.affine, code=1)
        zooms = list(self.spacing) + [1.0] * (self.array.ndim - 3)
        img.header.set_zooms(zooms)
        return img

    @classmethod
    def from_nibabel(cls, img: nib.spatialimages.SpatialImage, meta: ImageMeta | None = None) -> "Image":
        """Voxels and affine exactly as nibabel reads them (scaling applied, never reoriented)."""
        data = np.asanyarray(img.dataobj)
        if data.ndim > 4:
            data = data.reshape(data.shape[:4] + (-1,)) if data.shape[4] == 1 else data
            if data.ndim > 4:
                raise GeometryError(f"{data.ndim}D images are not supported (shape {data.shape})")
            data = data[..., 0]
        if data.ndim == 2:
            data = data[..., np.newaxis]
        return cls(np.asarray(data), img.affine, meta)

    def to_sitk(self) -> sitk.Image:
        """A SimpleITK image (LPS, (z, y, x) array order); 4D gives a 4D image with unit time step."""
        arr = np.asarray(self.array)
        lps = LPS_TO_RAS @ self.affine
        spacing = np.array(self.spacing)
        direction = lps[:3, :3] / spacing
        if arr.ndim == 3:
            out = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
            out.SetSpacing(spacing.tolist())
            out.SetOrigin(lps[:3, 3].tolist())
            out.SetDirection(direction.flatten().tolist())
            return out
        out = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(3, 2, 1, 0)), isVector=False)
        d4 = np.eye(4)
        d4[:3, :3] = direction
        out.SetSpacing(spacing.tolist() + [1.0])
        out.SetOrigin(lps[:3, 3].tolist() + [0.0])
        out.SetDirection(d4.flatten().tolist())
        return out

    @classmethod
    def from_sitk(cls, img: sitk.Image, meta: ImageMeta | None = None) -> "Image":
        """Voxels and geometry of a 2D, 3D or 4D SimpleITK image (vector pixels become a 4th axis)."""
        dim = img.GetDimension()
        if dim not in (2, 3, 4):
            raise GeometryError(f"{dim}D SimpleITK images are not supported")
        arr = sitk.GetArrayFromImage(img)
        n_comp = img.GetNumberOfComponentsPerPixel()
        spacing = np.array(img.GetSpacing()[:3], dtype=np.float64)
        origin = np.array(img.GetOrigin()[:3], dtype=np.float64)
        direction = np.array(img.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
        if dim == 2:
            arr = arr[np.newaxis]  # one slice: (1, y, x[, c])
            spacing = np.array(list(img.GetSpacing()) + [1.0])
            origin = np.array(list(img.GetOrigin()) + [0.0])
            d = np.eye(3)
            d[:2, :2] = np.array(img.GetDirection()).reshape(2, 2)
            direction = d
        if dim == 4:
            arr = arr.transpose(3, 2, 1, 0)
        elif n_comp > 1:
            arr = arr.transpose(2, 1, 0, 3)
        else:
            arr = arr.transpose(2, 1, 0)
        lps = np.eye(4)
        lps[:3, :3] = direction * spacing
        lps[:3, 3] = origin
        return cls(np.ascontiguousarray(arr), LPS_TO_RAS @ lps, meta)

    # --- display --------------------------------------------------------------------------
    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        extra = f", modality={self.meta.modality}" if self.meta.modality else ""
        return (
            f"{type(self).__name__}(shape={self.shape}, spacing=({sp}) mm, "
            f"orientation={self.orientation}, dtype={self.dtype}{extra})"
        )


class LabelMap(Image):
    """An Image whose values are labels: integer voxels, resampled with nearest neighbour only."""

    is_label = True

    def _check_kind(self) -> None:
        if self.array.dtype.kind in "iu":
            return
        if self.array.dtype.kind == "f" and np.array_equal(self.array, np.round(self.array)):
            self.array = self.array.astype(np.int32 if self.array.min() < 0 else _smallest_uint(self.array))
            return
        raise GeometryError(
            f"a LabelMap needs integer labels, got dtype {self.array.dtype} with fractional values; "
            "threshold or argmax the probabilities first"
        )

    @property
    def labels(self) -> list[int]:
        """The label values present, background (0) excluded."""
        return [int(v) for v in np.unique(self.array) if v != 0]


def _smallest_uint(array: np.ndarray) -> type:
    top = float(array.max()) if array.size else 0.0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return dtype
    return np.int64
