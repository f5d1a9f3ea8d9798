"""DICOM series reading: scan a folder / zip / file, pick a series, load it as an Image.

``scan_dicom`` lists series (``medpipes dicom ls``); ``load_series`` reads one; ``read_dicom`` does both.
Geometry follows the image positions (never file names or InstanceNumber); values follow dcm2niix.
"""

from __future__ import annotations

from typing import Any

from medpipes.core.io.dicom.load import load_series, read_dicom
from medpipes.core.io.dicom.scan import DicomScan, SeriesInfo, scan_dicom


def __getattr__(name: str) -> Any:
    # The SEG writer lives in seg.py (another module's job); import it only when asked for.
    if name == "write_seg":
        from medpipes.core.io.dicom import seg

        return seg.write_seg
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DicomScan", "SeriesInfo", "load_series", "read_dicom", "scan_dicom"]
