"""NIfTI reading and writing through nibabel, geometry exactly as stored."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib

from medpipes.core.errors import InputError
from medpipes.core.image import Image, ImageMeta
from medpipes.core.io.atomic import atomic_path


def read_nifti(path: Path) -> Image:
    """Read a .nii or .nii.gz file (nibabel's best affine: sform if set, else qform)."""
    try:
        img = nib.load(str(path))
        image = Image.from_nibabel(img, ImageMeta(source_paths=(str(path),)))
    except (nib.filebasedimages.ImageFileError, EOFError, OSError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a readable NIfTI file ({_short(exc)}); re-export or re-download it") from None
    return image


def write_nifti(image: Image, path: Path) -> None:
    """Write atomically; sform and qform both hold the affine."""
    with atomic_path(path) as tmp:
        nib.save(image.to_nibabel(), str(tmp))


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
