"""Where one channel's image comes from: a file, an Image in memory or an HDF5 dataset, loaded on request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from medpipes.core.errors import GeometryError, InputError
from medpipes.core.image import Image, ImageMeta, LabelMap

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class GridInfo:
    """A channel's spatial shape and voxel-to-RAS affine, known without loading its voxels where possible."""

    spatial_shape: tuple[int, int, int]
    affine: np.ndarray

    def matches(self, other: GridInfo, atol_mm: float = 1e-3) -> bool:
        """Same shape and affines within ``atol_mm``."""
        return self.spatial_shape == other.spatial_shape and bool(np.allclose(self.affine, other.affine, atol=atol_mm))

    def describe(self) -> str:
        """One line: shape, spacing and origin."""
        spacing = ", ".join(f"{s:.4g}" for s in np.linalg.norm(self.affine[:3, :3], axis=0))
        origin = ", ".join(f"{v:.4g}" for v in self.affine[:3, 3])
        return f"shape {self.spatial_shape}, spacing ({spacing}) mm, origin ({origin}) mm"


class Source(Protocol):
    """Anything that loads one channel as an Image and describes itself in one line."""

    is_label: bool

    def load(self) -> Image: ...

    def grid(self) -> GridInfo: ...

    def describe(self) -> str: ...


def as_kind(image: Image, is_label: bool, where: str) -> Image:
    """``image`` as a LabelMap when ``is_label`` (error naming ``where`` when its values are not labels)."""
    if not is_label or image.is_label:
        return image
    try:
        return image.as_label_map()
    except GeometryError as exc:
        raise GeometryError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class FileSource:
    """An image file (or DICOM folder) read with ``medpipes.core.io.read_image`` when asked."""

    path: Path
    is_label: bool = False

    def load(self) -> Image:
        """Read the file; a label channel comes back as a LabelMap."""
        from medpipes.core.io import read_image

        if not self.path.exists():
            raise InputError(f"{self.path}: file does not exist; fix the path or remove the case")
        return as_kind(read_image(self.path), self.is_label, str(self.path))

    def grid(self) -> GridInfo:
        """Shape and affine from the NIfTI header alone; other formats are read in full."""
        if self.path.name.endswith(_NIFTI_SUFFIXES):
            import nibabel as nib

            try:
                header_only = nib.load(str(self.path))
            except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds; the message says which file
                raise InputError(f"{self.path}: not a readable NIfTI header ({exc}); re-export the file") from None
            shape = tuple(int(n) for n in (header_only.shape + (1, 1))[:3])
            return GridInfo(shape, np.array(header_only.affine, dtype=np.float64))  # type: ignore[arg-type]
        image = self.load()
        return GridInfo(image.spatial_shape, image.affine)

    def describe(self) -> str:
        """The path."""
        return str(self.path)


@dataclass(frozen=True, eq=False)
class ImageSource:
    """An Image already in memory (e.g. an augmented copy); never modified."""

    image: Image
    is_label: bool = False

    def load(self) -> Image:
        """The image itself (callers never modify it)."""
        return as_kind(self.image, self.is_label, "in-memory image")

    def grid(self) -> GridInfo:
        """The image's grid."""
        return GridInfo(self.image.spatial_shape, self.image.affine)

    def describe(self) -> str:
        """The image's repr."""
        return repr(self.image)


@dataclass(frozen=True, eq=False)
class Hdf5Source:
    """One dataset of a medpipes HDF5 file; the file is opened read-only for each load (safe in worker processes)."""

    path: Path
    key: str
    spatial_shape: tuple[int, int, int]
    affine: np.ndarray
    meta_json: str
    is_label: bool = False

    def load(self) -> Image:
        """Read the dataset's voxels; geometry and metadata come from its attributes."""
        import h5py

        with h5py.File(self.path, "r") as handle:
            array = handle[self.key][()]
        meta = meta_from_json(self.meta_json)
        return (LabelMap if self.is_label else Image)(array, self.affine, meta)

    def grid(self) -> GridInfo:
        """Shape and affine stored beside the dataset (no voxels read)."""
        return GridInfo(self.spatial_shape, self.affine)

    def describe(self) -> str:
        """File and dataset key."""
        return f"{self.path}:{self.key}"


def meta_to_json(meta: ImageMeta, where: str) -> str:
    """ImageMeta as JSON text; InputError naming ``where`` and the key when ``extra`` holds something JSON cannot."""
    data: dict[str, Any] = {
        "modality": meta.modality,
        "series_instance_uid": meta.series_instance_uid,
        "series_number": meta.series_number,
        "series_description": meta.series_description,
        "study_instance_uid": meta.study_instance_uid,
        "source_paths": list(meta.source_paths),
        "extra": dict(meta.extra),
    }
    for key, value in dict(meta.extra).items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise InputError(
                f"{where}: meta.extra['{key}'] is a {type(value).__name__}, which HDF5 metadata (JSON) cannot hold; "
                "store it as numbers, strings, lists or dicts"
            ) from None
    return json.dumps(data)


def meta_from_json(text: str) -> ImageMeta:
    """Inverse of ``meta_to_json``."""
    data = json.loads(text)
    return ImageMeta(
        modality=data.get("modality"),
        series_instance_uid=data.get("series_instance_uid"),
        series_number=data.get("series_number"),
        series_description=data.get("series_description"),
        study_instance_uid=data.get("study_instance_uid"),
        source_paths=tuple(data.get("source_paths") or ()),
        extra=data.get("extra") or {},
    )

