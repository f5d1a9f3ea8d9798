"""Decoding one file's pixels (native or compressed transfer syntaxes) and value rescaling."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
from pydicom.uid import UID

from medpipes.core.errors import DicomError
from medpipes.core.io.dicom.records import FileInfo, Frame

_NATIVE = {
    pydicom.uid.ImplicitVRLittleEndian,
    pydicom.uid.ExplicitVRLittleEndian,
    pydicom.uid.DeflatedExplicitVRLittleEndian,
    pydicom.uid.ExplicitVRBigEndian,
}


def syntax_name(ts: UID) -> str:
    """'JPEG Lossless ... (1.2.840.10008.1.2.4.70)'."""
    name = ts.name if ts.is_valid and ts.name != str(ts) else "unknown transfer syntax"
    return f"{name} ({ts})"


def is_compressed(ts: UID) -> bool:
    return ts not in _NATIVE


def undecodable_reason(info: FileInfo) -> str | None:
    """Why this file's pixels cannot be decoded here (message names file, syntax and fix), or None."""
    ts = info.transfer_syntax
    if ts in _NATIVE:
        problem = None
    else:
        try:
            decoder = pydicom.pixels.get_decoder(ts)
            problem = None if decoder.is_available else "no installed decoder plugin can read it"
        except NotImplementedError:
            problem = "no decoder exists for it in pydicom"
        except Exception as exc:  # noqa: BLE001
            problem = f"no decoder ({exc})"
    if problem is None and info.samples_per_pixel != 1:
        return (
            f"{info.source.path}: {info.samples_per_pixel}-sample ({info.photometric}) colour pixels are not "
            "supported; convert the series to grayscale (MONOCHROME2)"
        )
    if problem is None:
        return None
    return (
        f"{info.source.path}: transfer syntax {syntax_name(ts)} cannot be decoded: {problem}; re-export the "
        "series uncompressed or convert it with `gdcmconv --raw IN OUT` (or `dcmdjpeg`)"
    )


def _native_dtype(info: FileInfo) -> np.dtype | None:
    """The stored dtype of native pixel data that numpy can read as is, or None (pydicom's handlers)."""
    bits = info.bits_allocated
    if info.transfer_syntax not in _NATIVE or bits not in (8, 16, 32) or info.samples_per_pixel != 1:
        return None
    if info.pixel_representation == 1 and info.bits_stored != bits:
        return None  # sign extension of packed values: let pydicom do it
    kind = "i" if info.pixel_representation == 1 else "u"
    order = ">" if info.transfer_syntax == pydicom.uid.ExplicitVRBigEndian else "<"
    return np.dtype(f"{order}{kind}{bits // 8}")


def _from_bytes(raw: bytes, dtype: np.dtype, info: FileInfo) -> np.ndarray | None:
    n = info.n_frames * info.rows * info.cols
    if len(raw) < n * dtype.itemsize:
        return None
    arr = np.frombuffer(raw, dtype=dtype, count=n).reshape(info.n_frames, info.rows, info.cols)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else arr


def _native_array(ds: pydicom.Dataset, info: FileInfo) -> np.ndarray | None:
    """Stored values straight from the PixelData bytes (fast path), or None to use pydicom's handlers."""
    dtype = _native_dtype(info)
    raw = ds.PixelData
    if dtype is None or not isinstance(raw, (bytes, bytearray)):
        return None
    return _from_bytes(raw, dtype, info)


def _decode_encapsulated(info: FileInfo) -> np.ndarray | None:
    """Compressed frames decoded from the PixelData items the scan located, without re-parsing the header.

    None when this fast path fails for any reason: the caller then decodes the fully parsed dataset.
    """
    if info.samples_per_pixel != 1:
        return None
    try:
        data = info.source.read_bytes()
        buffer = data[info.pixel_offset :]
        end = buffer.rfind(b"\xfe\xff\xdd\xe0")  # the sequence delimiter (checked present by the scan)
        decoder = pydicom.pixels.get_decoder(info.transfer_syntax)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr, _ = decoder.as_array(
                buffer[:end],
                rows=info.rows,
                columns=info.cols,
                samples_per_pixel=1,
                bits_allocated=info.bits_allocated,
                bits_stored=info.bits_stored,
                pixel_representation=info.pixel_representation,
                photometric_interpretation=info.photometric,
                number_of_frames=info.n_frames,
            )
    except Exception:  # noqa: BLE001 - fall back to pydicom's full path, which reports errors properly
        return None
    arr = np.asarray(arr)
    return arr[np.newaxis] if arr.ndim == 2 else arr


def decode_file(info: FileInfo) -> np.ndarray:
    """The stored values of every frame of ``info``'s file, shape (frames, rows, cols)."""
    reason = undecodable_reason(info)
    if reason:
        raise DicomError(reason)
    arr = _fast_path(info)
    if arr is None:
        arr = _via_dataset(info)
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.shape != (info.n_frames, info.rows, info.cols):
        raise DicomError(
            f"{info.source.path}: decoded pixel data has shape {arr.shape}, expected "
            f"{(info.n_frames, info.rows, info.cols)}; re-export the file"
        )
    return arr


def _fast_path(info: FileInfo) -> np.ndarray | None:
    """Pixels read from where the scan found them (no second header parse), or None."""
    if info.pixel_offset is None:
        return None
    if info.transfer_syntax not in _NATIVE:
        return _decode_encapsulated(info)
    dtype = _native_dtype(info)
    if dtype is None:
        return None
    nbytes = info.n_frames * info.rows * info.cols * dtype.itemsize
    try:
        return _from_bytes(info.source.read_range(info.pixel_offset, nbytes), dtype, info)
    except OSError as exc:
        raise DicomError(f"{info.source.path}: cannot read pixel data ({exc}); check the file is readable") from None


def _via_dataset(info: FileInfo) -> np.ndarray:
    """Pixels of the fully parsed dataset through pydicom's handlers (every syntax, every quirk)."""
    try:
        data = info.source.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            if "PixelData" not in ds:
                raise DicomError(f"{info.source.path}: no pixel data (file truncated); re-export it or remove it")
            arr = _native_array(ds, info) if info.transfer_syntax in _NATIVE else None
            return ds.pixel_array if arr is None else arr
    except DicomError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoder failures come in many types
        raise DicomError(
            f"{info.source.path}: cannot decode pixel data ({syntax_name(info.transfer_syntax)}): "
            f"{type(exc).__name__}: {exc}; re-export the file uncompressed (`gdcmconv --raw IN OUT`) or remove it"
        ) from None


def frame_pixels(decoded: np.ndarray, frame: Frame) -> np.ndarray:
    """The (rows, cols) stored values of ``frame`` within its decoded file."""
    info = frame.file
    if info.mosaic_tile is not None:
        tr, tc = info.mosaic_tile
        side = info.cols // tc
        r, c = divmod(frame.index, side)
        return decoded[0, r * tr : (r + 1) * tr, c * tc : (c + 1) * tc]
    return decoded[frame.index]


def scaling_of(frame: Frame) -> tuple[float, float]:
    """(slope, intercept) from stored to output values; Philips precise values as dcm2niix uses them."""
    if frame.philips_scale is not None and frame.slope:
        # dcm2niix's Philips floating-point value: FP = (PV * RS + RI) / (RS * SS)
        return 1.0 / frame.philips_scale, frame.intercept / (frame.slope * frame.philips_scale)
    return frame.slope, frame.intercept
