"""Edge-case DICOM inputs made from REAL series: each generator copies a real series and edits it.

Every function takes a source series folder (real data, read only) and a destination inside pytest's
tmp_path, writes there and returns the path to give to the reader. All edits are deterministic: UIDs
are derived from the source UIDs, zip and gzip entries carry fixed timestamps.
Load it in tests through the ``dicom_cases`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import gzip
import math
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

JPEG_XL_LOSSLESS = "1.2.840.10008.1.2.4.110"  # no pydicom/pylibjpeg/GDCM plugin decodes it
MPEG2_MAIN = "1.2.840.10008.1.2.4.100"
FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


# --- reading the real series ------------------------------------------------------------------
def series_files(folder: Path) -> list[Path]:
    """The DICOM files of a one-series folder (non-DICOM files such as .nfo skipped), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and _is_dicom(p))


def sorted_by_position(folder: Path) -> list[tuple[Path, pydicom.Dataset]]:
    """(path, header) of each file, sorted along the slice normal."""
    items = [(p, pydicom.dcmread(p, stop_before_pixels=True)) for p in series_files(folder)]
    normal = slice_normal(items[0][1])
    return sorted(items, key=lambda item: float(np.dot(normal, np.array(item[1].ImagePositionPatient, float))))


def slice_normal(ds: pydicom.Dataset) -> np.ndarray:
    """Unit normal (LPS) of a slice: row direction x column direction."""
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return normal / np.linalg.norm(normal)


def copy_series(src: Path, dest: Path) -> Path:
    """A plain copy of a real series folder (all files, non-DICOM ones too)."""
    shutil.copytree(src, dest)
    return dest


# --- geometry edits -----------------------------------------------------------------------------
def drop_slice(src: Path, dest: Path, index: int | None = None) -> Path:
    """Copy the series without one interior slice (the middle one by position): a missing slice."""
    copy_series(src, dest)
    ordered = sorted_by_position(dest)
    victim = ordered[len(ordered) // 2 if index is None else index][0]
    victim.unlink()
    return dest


def gantry_tilt(src: Path, dest: Path, degrees: float = 15.0) -> Path:
    """CT-style gantry tilt: image planes rotated about the x axis while positions advance along z only.

    The slices keep their spacing along z, so the volume is sheared: the stack direction differs from
    the plane normal by ``degrees``.
    """
    copy_series(src, dest)
    ordered = sorted_by_position(dest)
    t = math.radians(degrees)
    iop = [1.0, 0.0, 0.0, 0.0, math.cos(t), math.sin(t)]
    first = np.array(ordered[0][1].ImagePositionPatient, dtype=float)
    step = _mean_spacing(ordered)
    for k, (path, _) in enumerate(ordered):
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [_ds_float(v) for v in iop]
        ds.ImagePositionPatient = [_ds_float(v) for v in (first[0], first[1], first[2] + k * step)]
        ds.save_as(path)
    return dest


def uneven_spacing(src: Path, dest: Path, factor: float = 1.3) -> Path:
    """Slices of the second half spaced ``factor`` times wider along the normal: uneven spacing."""
    copy_series(src, dest)
    ordered = sorted_by_position(dest)
    normal = slice_normal(ordered[0][1])
    first = np.array(ordered[0][1].ImagePositionPatient, dtype=float)
    step = _mean_spacing(ordered)
    half = len(ordered) // 2
    offset = 0.0
    for k, (path, _) in enumerate(ordered):
        if k > 0:
            offset += step * (factor if k > half else 1.0)
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [_ds_float(v) for v in first + offset * normal]
        ds.save_as(path)
    return dest


def add_localizer(src: Path, dest: Path, series_number: int = 99) -> Path:
    """Copy the series and add a 3-slice localizer (axial, coronal, sagittal; ImageType LOCALIZER).

    The localizer's slices are 3 real slices of the same series, given a new series UID and number.
    """
    copy_series(src, dest)
    ordered = sorted_by_position(dest)
    picks = [ordered[0][0], ordered[len(ordered) // 2][0], ordered[-1][0]]
    source_uid = str(ordered[0][1].SeriesInstanceUID)
    new_series_uid = generate_uid(entropy_srcs=[source_uid, "localizer"])
    orientations = ([1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1])
    out_dir = dest / "localizer"
    out_dir.mkdir()
    for k, (path, iop) in enumerate(zip(picks, orientations)):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = new_series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = "localizer"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = [_ds_float(v) for v in iop]
        ds.ImagePositionPatient = [_ds_float(-100.0), _ds_float(-100.0), _ds_float(0.0)]
        ds.InstanceNumber = k + 1
        sop = generate_uid(entropy_srcs=[str(ds.SOPInstanceUID), "localizer"])
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.save_as(out_dir / f"loc{k + 1}.dcm")
    return dest


# --- encodings and containers -------------------------------------------------------------------
def gzip_files(src: Path, dest: Path) -> Path:
    """Every DICOM file of the series gzipped as ``NAME.dcm.gz`` (fixed mtime)."""
    dest.mkdir(parents=True)
    for f in series_files(src):
        name = f.name if f.name.lower().endswith(".dcm") else f.name + ".dcm"
        with gzip.GzipFile(dest / (name + ".gz"), "wb", mtime=0) as out:
            out.write(f.read_bytes())
    return dest


def zip_folder(src: Path, dest_zip: Path) -> Path:
    """The series folder as a zip file (entries under the folder's name, fixed timestamps)."""
    with zipfile.ZipFile(dest_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(p for p in Path(src).rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(f"{src.name}/{f.relative_to(src).as_posix()}", date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, f.read_bytes())
    return dest_zip


def deflate(src: Path, dest: Path) -> Path:
    """Every file re-encoded with the Deflated Explicit VR Little Endian transfer syntax (1.2.840.10008.1.2.1.99)."""
    dest.mkdir(parents=True)
    for f in series_files(src):
        ds = pydicom.dcmread(f)
        _require_native(ds, f)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(dest / f.name, enforce_file_format=True)
    return dest


def truncate_one(src: Path, dest: Path, index: int | None = None) -> Path:
    """Copy the series and cut half of one file's pixel data (the middle slice by position); returns the folder."""
    copy_series(src, dest)
    ordered = sorted_by_position(dest)
    path = ordered[len(ordered) // 2 if index is None else index][0]
    truncate_file(path)
    return dest


def truncate_file(path: Path) -> Path:
    """Cut the second half of a file's pixel data off, in place (the header stays readable)."""
    data = path.read_bytes()
    n_pixel = len(pydicom.dcmread(path).PixelData)
    path.write_bytes(data[: len(data) - n_pixel // 2])
    return path


def unsupported_transfer_syntax(src_files: list[Path], dest: Path, uid: str = JPEG_XL_LOSSLESS) -> Path:
    """Copy files re-labelled with a compressed transfer syntax no installed plugin decodes.

    The pixel bytes are encapsulated (one fragment per frame) so the file is well formed; only
    decoding can fail.
    """
    dest.mkdir(parents=True)
    for f in src_files:
        ds = pydicom.dcmread(f)
        _require_native(ds, f)
        frame = bytes(ds.PixelData)
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = uid
        _write_explicit_le(ds, dest / f.name)
    return dest


# --- helpers ------------------------------------------------------------------------------------
def _write_explicit_le(ds: pydicom.Dataset, path: Path) -> None:
    """Preamble, file meta and an explicit-VR little-endian body, whatever the meta's transfer syntax says.

    pydicom's dcmwrite refuses transfer syntaxes its dictionary lacks (JPEG XL), so the parts are
    written with its lower-level writers.
    """
    meta = DicomBytesIO()
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian = True
    body.is_implicit_VR = False
    write_dataset(body, ds)
    path.write_bytes(b"\0" * 128 + b"DICM" + meta.getvalue() + body.getvalue())


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


def _mean_spacing(ordered: list[tuple[Path, pydicom.Dataset]]) -> float:
    normal = slice_normal(ordered[0][1])
    pos = [float(np.dot(normal, np.array(ds.ImagePositionPatient, float))) for _, ds in ordered]
    return (pos[-1] - pos[0]) / (len(pos) - 1)


def _ds_float(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6f}"[:16]


def _require_native(ds: pydicom.Dataset, path: Path) -> None:
    """Generators that re-encode start from little-endian, uncompressed files (bytes kept as they are)."""
    tsyntax = ds.file_meta.TransferSyntaxUID
    if tsyntax.is_compressed or not tsyntax.is_little_endian:
        raise ValueError(f"{path}: generators need uncompressed little-endian files, got {tsyntax}")
