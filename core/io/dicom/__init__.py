"""DICOM series reading: scan a folder / zip / file, pick a series, load it as an Image.

``scan_dicom`` lists series (``medpipes dicom ls``); ``load_series`` reads one; ``read_dicom`` does both.
Geometry follows the image positions (never file names or InstanceNumber); values follow dcm2niix.
"""

from __future__ import annotations

from typing import Any

from medpipes.core.io.dicom.load import load_series, read_dicom
from medpipes.core.io.dicom.scan import DicomScan, SeriesInfo, scan_dicom


_SEG_NAMES = ("write_seg", "read_seg", "read_seg_segments", "check_seg_against_source", "SegmentCodes")


def __getattr__(name: str) -> Any:
    # SEG support needs highdicom, slow to import: load it only when a SEG name is asked for.
    if name in _SEG_NAMES:
        from medpipes.core.io.dicom import seg

        return getattr(seg, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DicomScan", "SeriesInfo", "load_series", "read_dicom", "scan_dicom", *_SEG_NAMES]
