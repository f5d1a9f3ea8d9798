"""Reading and writing images: NIfTI, NRRD, MHA/MHD and DICOM series, geometry always kept."""

from __future__ import annotations

import os
from pathlib import Path

from medpipes.core.image import Image
from medpipes.core.io.formats import Format, format_for_reading, format_for_writing


def read_image(path: str | os.PathLike[str], series: str | None = None) -> Image:
    """Read one image from a file, a DICOM folder (searched recursively) or a zip of one.

    ``series`` picks a DICOM series by SeriesInstanceUID, SeriesNumber or the id shown by
    ``medpipes dicom ls``; it is required when a folder holds several candidate series.
    """
    path = Path(path)
    fmt = format_for_reading(path)
    if fmt is Format.NIFTI:
        from medpipes.core.io.nifti import read_nifti

        return read_nifti(path)
    if fmt in (Format.NRRD, Format.METAIMAGE):
        from medpipes.core.io.itk import read_itk

        return read_itk(path)
    from medpipes.core.io.dicom import read_dicom

    return read_dicom(path, series=series)


def write_image(image: Image, path: str | os.PathLike[str]) -> Path:
    """Write ``image`` atomically in the format its suffix names; return the path written."""
    path = Path(path)
    fmt = format_for_writing(path)
    if fmt is Format.NIFTI:
        from medpipes.core.io.nifti import write_nifti

        write_nifti(image, path)
    else:
        from medpipes.core.io.itk import write_itk

        write_itk(image, path)
    return path


__all__ = ["read_image", "write_image"]
