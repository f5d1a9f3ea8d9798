"""Reading one file's header: is it a DICOM image, is it complete, and which 2D frames does it hold."""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass, field
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from medpipes.core.errors import DicomError
from medpipes.core.io.dicom.frames import frames_of
from medpipes.core.io.dicom.records import FileInfo, Frame, as_float, as_int
from medpipes.core.io.dicom.sources import Source

# SOP classes and modalities that carry no image volume (segmentations, structures, reports...).
_NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "SR", "PR", "KO", "REG", "RTPLAN", "RTRECORD", "DOC", "PLAN"}
_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
_ITEM_LE = b"\xfe\xff\x00\xe0"
_SEQ_DELIM_LE = b"\xfe\xff\xdd\xe0"


@dataclass
class HeaderResult:
    """The outcome of reading one file: an image (info + frames), not an image, or unreadable."""

    kind: str  # "image", "not-dicom", "other-dicom", "unreadable"
    info: FileInfo | None = None
    frames: list[Frame] = field(default_factory=list)
    reason: str = ""
    series_uid: str | None = None  # known even for an unreadable file when its header got that far


def _looks_like_dicom(head: bytes) -> tuple[bool, bool]:
    """(is DICOM-like, has the DICM preamble) from a file's first 132 bytes."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True, True
    # Raw datasets without preamble start with a group 0x0002 or 0x0008 element (little endian).
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00"), False


def _read_at(fh: BinaryIO, pos: int, n: int) -> bytes:
    fh.seek(pos)
    return fh.read(n)


def _pixel_data_problem(fh: BinaryIO, size: int, offset: int, ts: UID, expected: int) -> tuple[str | None, int | None]:
    """(why the pixel data at ``offset`` is missing or cut short, or None; where its value starts).

    Only element and item headers are read (seeking past the values), so big files stay cheap.
    """
    if offset >= size - 8:
        return "no pixel data (the file ends before it: truncated)", None
    big = ts == pydicom.uid.ExplicitVRBigEndian
    head = _read_at(fh, offset, 12)
    if head[:4] != (b"\x7f\xe0\x00\x10" if big else _PIXEL_TAG_LE):
        return None, None  # another pixel element (float data...): let the decoder judge
    if ts == pydicom.uid.ImplicitVRLittleEndian:
        start, length = offset + 8, struct.unpack("<I", head[4:8])[0]
    else:
        if len(head) < 12:
            return "pixel data header truncated", None
        start, length = offset + 12, struct.unpack(">I" if big else "<I", head[8:12])[0]
    if length != 0xFFFFFFFF:
        have = size - start
        if have < length or length < expected:
            return f"pixel data truncated: {min(have, length)} of {max(length, expected)} bytes present", None
        return None, start
    pos = start  # encapsulated: walk the items up to the sequence delimiter
    while True:
        item = _read_at(fh, pos, 8)
        if len(item) < 8:
            return "compressed pixel data truncated (no sequence delimiter)", None
        item_tag, item_len = item[:4], struct.unpack("<I", item[4:8])[0]
        if item_tag == _SEQ_DELIM_LE:
            return None, start
        if item_tag != _ITEM_LE:
            return "compressed pixel data corrupt (bad item tag)", None
        pos += 8 + item_len
        if pos > size:
            return f"compressed pixel data truncated: a fragment needs {pos - size} more bytes", None


def read_header(source: Source) -> HeaderResult:
    """Read ``source``'s header (pixels are only checked for completeness, not decoded)."""
    try:
        if source.gz and not _looks_like_dicom(source.head(132))[0]:
            return HeaderResult("not-dicom")  # e.g. a stray .nii.gz: never inflated whole
        with source.open() as fh:
            return _read_header(source, fh)
    except OSError as exc:
        return HeaderResult("unreadable", reason=f"cannot read file: {exc}")
    except DicomError as exc:
        return HeaderResult("unreadable", reason=str(exc))


def _read_header(source: Source, fh: BinaryIO) -> HeaderResult:
    size = fh.seek(0, os.SEEK_END)
    dicom_like, has_preamble = _looks_like_dicom(_read_at(fh, 0, 132))
    if not dicom_like:
        return HeaderResult("not-dicom")
    fh.seek(0)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
        offset = fh.tell()
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a cut header
        uid = _series_uid_of_partial(_read_at(fh, 0, 1 << 16))
        return HeaderResult("unreadable", reason=f"header truncated or corrupt ({type(exc).__name__}: {exc})", series_uid=uid)
    eof_warning = next((str(w.message) for w in caught if "end of file" in str(w.message).lower()), None)
    uid = str(ds.get("SeriesInstanceUID", "") or "") or None
    if eof_warning:
        return HeaderResult("unreadable", reason=f"header truncated ({eof_warning})", series_uid=uid)
    meta = getattr(ds, "file_meta", None)
    if "Rows" not in ds or "Columns" not in ds or str(ds.get("Modality", "")).upper() in _NON_IMAGE_MODALITIES:
        sop = str((meta.get("MediaStorageSOPClassUID", "") if meta is not None else "") or ds.get("SOPClassUID", ""))
        sop_name = UID(sop).name if sop else ""
        if "Rows" not in ds and sop_name.endswith("Image Storage"):
            return HeaderResult("unreadable", reason=f"header truncated: a {sop_name} file without Rows/Columns", series_uid=uid)
        if has_preamble and len(ds) == 0:
            return HeaderResult("unreadable", reason="header truncated: no data elements after the file meta", series_uid=uid)
        if "Rows" not in ds and "SOPClassUID" not in ds and "SeriesInstanceUID" not in ds:
            return HeaderResult("not-dicom")
        return HeaderResult("other-dicom")
    ts = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None and "TransferSyntaxUID" in meta else None
    if ts is None:  # a raw dataset without file meta: the encoding pydicom found while reading it
        implicit, little = getattr(ds, "original_encoding", (True, True))
        if not little:
            ts = pydicom.uid.ExplicitVRBigEndian
        else:
            ts = pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian
    rows, cols = int(ds.Rows), int(ds.Columns)
    n_frames = as_int(ds.get("NumberOfFrames")) or 1
    bits = int(ds.get("BitsAllocated", 16) or 16)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    pixel_offset = None
    if ts != pydicom.uid.DeflatedExplicitVRLittleEndian:
        problem, pixel_offset = _pixel_data_problem(fh, size, offset, ts, rows * cols * n_frames * spp * bits // 8)
    else:
        problem = _deflated_problem(_read_at(fh, 0, size))
    if problem:
        return HeaderResult("unreadable", reason=problem, series_uid=uid)
    if uid is None:
        return HeaderResult("unreadable", reason="no SeriesInstanceUID (0020,000E); fix the header or re-export", series_uid=None)
    info = FileInfo(
        source=source,
        series_uid=uid,
        study_uid=str(ds.get("StudyInstanceUID", "") or "") or None,
        series_number=as_int(ds.get("SeriesNumber")),
        description=str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or ""),
        modality=str(ds.get("Modality", "") or "") or None,
        manufacturer=str(ds.get("Manufacturer", "") or ""),
        transfer_syntax=ts,
        sop_uid=str(ds.get("SOPInstanceUID", "") or "") or None,
        rows=rows,
        cols=cols,
        n_frames=n_frames,
        bits_allocated=bits,
        bits_stored=int(ds.get("BitsStored", bits) or bits),
        pixel_representation=int(ds.get("PixelRepresentation", 0) or 0),
        samples_per_pixel=spp,
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        repetition_time_ms=as_float(ds.get("RepetitionTime")),
        pixel_offset=pixel_offset,
    )
    try:
        frames = frames_of(ds, info)
    except Exception as exc:  # noqa: BLE001 - a malformed geometry header makes the file unusable
        return HeaderResult("unreadable", reason=f"cannot read its geometry ({type(exc).__name__}: {exc})", series_uid=uid)
    return HeaderResult("image", info=info, frames=frames, series_uid=uid)


def _deflated_problem(data: bytes) -> str | None:
    """A deflated file is inflated whole by pydicom: parse it fully to check it is complete."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if "PixelData" not in ds:
            return "no pixel data (truncated?)"
        expected = int(ds.Rows) * int(ds.Columns) * (as_int(ds.get("NumberOfFrames")) or 1) * int(ds.get("BitsAllocated", 16)) // 8
        if len(ds.PixelData) < expected:
            return f"pixel data truncated: {len(ds.PixelData)} of {expected} bytes present"
    except Exception as exc:  # noqa: BLE001
        return f"deflated data truncated or corrupt ({type(exc).__name__}: {exc})"
    return None


def _series_uid_of_partial(data: bytes) -> str | None:
    """The SeriesInstanceUID (0020,000E) of a file whose header is cut after it, found in the raw bytes."""
    pos = data.find(b"\x20\x00\x0e\x00")
    if pos < 0 or pos + 8 > len(data):
        return None
    if data[pos + 4 : pos + 6] == b"UI":  # explicit VR: 2-byte length
        length, start = struct.unpack("<H", data[pos + 6 : pos + 8])[0], pos + 8
    else:
        length, start = struct.unpack("<I", data[pos + 4 : pos + 8])[0], pos + 8
    if length > 64 or start + length > len(data):
        return None
    text = data[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
    return text if text and all(c.isdigit() or c == "." for c in text) else None


def dataset_from(source: Source) -> Dataset:
    """The full dataset of ``source`` (pixels included, not decoded)."""
    return pydicom.dcmread(io.BytesIO(source.read_bytes()), force=True)
