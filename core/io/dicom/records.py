"""The records a scan builds: one per image file (FileInfo) and one per 2D slice (Frame)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom.uid import UID

from medpipes.core.io.dicom.sources import Source


@dataclass
class FileInfo:
    """What one DICOM image file is: its series, transfer syntax and pixel format."""

    source: Source
    series_uid: str
    study_uid: str | None
    series_number: int | None
    description: str
    modality: str | None
    manufacturer: str
    transfer_syntax: UID
    sop_uid: str | None
    rows: int
    cols: int
    n_frames: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    photometric: str
    repetition_time_ms: float | None
    mosaic_tile: tuple[int, int] | None = None  # (rows, cols) of one tile of a Siemens mosaic
    n_mosaic: int = 0
    is_multiframe: bool = False
    pixel_offset: int | None = None  # where the PixelData value (native values or encapsulated items) starts


@dataclass
class Frame:
    """One 2D slice: where it lies, how it was acquired, and where its pixels are (file + index)."""

    file: FileInfo
    index: int  # frame number in a multi-frame file, tile number in a mosaic, 0 otherwise
    ipp: np.ndarray
    iop: np.ndarray
    pixel_spacing: tuple[float, float]  # (between rows, between columns) as DICOM PixelSpacing
    rows: int
    cols: int
    echo_number: int | None
    echo_time: float | None
    image_type: str
    acquisition: int | None
    instance: int | None
    temporal: int | None
    time: float | None
    slope: float
    intercept: float
    philips_scale: float | None
    spacing_hint: float | None  # SpacingBetweenSlices, else SliceThickness
    stack_id: str | None = None
    is_localizer: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.iop[:3], self.iop[3:])


def as_float(value: object, default: float | None = None) -> float | None:
    """A DICOM DS/FD value as float, or ``default`` when absent or malformed."""
    try:
        if value is None or value == "":
            return default
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def as_int(value: object) -> int | None:
    """A DICOM IS/US value (the first of several) as int, or None when absent or malformed."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None  # type: ignore[index,arg-type]
    try:
        if value is None or value == "":
            return None
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def time_seconds(value: object) -> float | None:
    """DICOM TM / DT (the time part) as seconds since midnight."""
    if not value:
        return None
    text = str(value).strip()
    if len(text.split(".")[0].split("+")[0].split("-")[0]) > 6:
        text = text[8:]  # DT: drop the date
    try:
        hh, mm = int(text[0:2]), int(text[2:4] or 0)
        ss = float(text[4:] or 0)
    except ValueError:
        return None
    return hh * 3600 + mm * 60 + ss
