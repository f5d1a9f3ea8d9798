"""Which reader or writer handles a path: by suffix, or a folder/zip for DICOM."""

from __future__ import annotations

import enum
import zipfile
from pathlib import Path

from medpipes.core.errors import InputError


class Format(enum.Enum):
    NIFTI = "nifti"
    NRRD = "nrrd"
    METAIMAGE = "metaimage"
    DICOM = "dicom"


_SUFFIXES: dict[str, Format] = {
    ".nii": Format.NIFTI,
    ".nii.gz": Format.NIFTI,
    ".nrrd": Format.NRRD,
    ".nhdr": Format.NRRD,
    ".mha": Format.METAIMAGE,
    ".mhd": Format.METAIMAGE,
    ".dcm": Format.DICOM,
    ".dcm.gz": Format.DICOM,
    ".zip": Format.DICOM,
}

WRITABLE = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def suffix_of(path: str | Path) -> str:
    """The format suffix of a path, lower case ('.nii.gz' counts as one)."""
    name = Path(path).name.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return Path(path).suffix.lower()


def format_for_reading(path: Path) -> Format:
    """The format of an existing input path; raise InputError for anything unreadable."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        return Format.DICOM
    suffix = suffix_of(path)
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if zipfile.is_zipfile(path):
        return Format.DICOM
    with path.open("rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        return Format.DICOM
    raise InputError(
        f"{path}: unknown image format '{suffix or path.name}'; "
        "use NIfTI (.nii, .nii.gz), NRRD, MHA/MHD, or DICOM (a folder, a zip of one, or a .dcm file)"
    )


def format_for_writing(path: Path) -> Format:
    """The format to write for an output path's suffix."""
    suffix = suffix_of(path)
    if suffix not in WRITABLE:
        raise InputError(
            f"{path}: cannot write '{suffix or path.name}'; name the output .nii.gz, .nii, .nrrd or .mha "
            "(DICOM SEG is written by medpipes.core.io.dicom.write_seg)"
        )
    return _SUFFIXES[suffix]
