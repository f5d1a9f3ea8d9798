"""NRRD and MetaImage (.mha/.mhd) through SimpleITK, converted between LPS and RAS at the boundary."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import SimpleITK as sitk

from medpipes.core.errors import InputError
from medpipes.core.image import Image, ImageMeta
from medpipes.core.io.atomic import atomic_path


def read_itk(path: Path) -> Image:
    """Read any file SimpleITK reads (used for NRRD and MHA/MHD)."""
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:200]
        raise InputError(f"{path}: not readable by SimpleITK ({first}); check the file is complete") from None
    return Image.from_sitk(img, ImageMeta(source_paths=(str(path),)))


def write_itk(image: Image, path: Path) -> None:
    """Write atomically, compressed where the format allows. A .mhd writes its .raw/.zraw beside it."""
    if path.suffix.lower() in (".mhd", ".nhdr"):
        _write_detached(image, path)
        return
    with atomic_path(path) as tmp:
        sitk.WriteImage(image.to_sitk(), str(tmp), True)


def _write_detached(image: Image, path: Path) -> None:
    """Header + data file: write both in a temporary folder, move the data file, then the header."""
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: output folder does not exist; create it first")
    with tempfile.TemporaryDirectory(prefix=".medpipes-", dir=path.parent) as tmp_dir:
        tmp_header = Path(tmp_dir) / path.name
        sitk.WriteImage(image.to_sitk(), str(tmp_header), True)
        for written in Path(tmp_dir).iterdir():
            if written != tmp_header:
                os.replace(written, path.parent / written.name)
        os.replace(tmp_header, path)
