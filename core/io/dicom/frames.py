"""The 2D frames of one DICOM image file: a classic slice, the tiles of a Siemens mosaic, or the
frames of an enhanced multi-frame object (per-frame functional groups)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from pydicom.dataset import Dataset

from medpipes.core.io.dicom.records import FileInfo, Frame, as_float, as_int, time_seconds

_PHILIPS_SCALE = (0x2005, 0x100E)  # Philips "scale slope" for precise floating-point values
_PHILIPS_FRAME_PRIVATE = (0x2005, 0x140F)  # Philips per-frame private sequence (holds 2005,100E)
_SIEMENS_N_MOSAIC = (0x0019, 0x100A)


def _image_type(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.upper()
    return "\\".join(str(v) for v in value).upper()  # type: ignore[union-attr]


def _vec(value: object, n: int, what: str) -> np.ndarray:
    if value is None:
        raise ValueError(f"no {what}")
    arr = np.array([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    if arr.shape != (n,):
        raise ValueError(f"{what} has {arr.size} values, expected {n}")
    return arr


def _spacing(value: object) -> tuple[float, float]:
    if value is None:
        return (1.0, 1.0)
    vals = [float(v) for v in value]  # type: ignore[union-attr]
    return (vals[0], vals[1] if len(vals) > 1 else vals[0])


def _philips_scale(ds: Dataset, info: FileInfo) -> float | None:
    if not info.manufacturer.upper().startswith("PHILIPS") or _PHILIPS_SCALE not in ds:
        return None
    value = ds[_PHILIPS_SCALE].value
    if isinstance(value, (bytes, bytearray)):  # implicit VR: FL stored as raw bytes
        value = np.frombuffer(bytes(value[:4]), "<f4")[0] if len(value) >= 4 else None
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    scale = as_float(value)
    return scale if scale not in (None, 0.0) and math.isfinite(scale) else None  # type: ignore[arg-type]


def _echo_number(ds: Dataset) -> int | None:
    return as_int(ds.get("EchoNumbers"))


def _slice_spacing_hint(ds: Dataset) -> float | None:
    hint = as_float(ds.get("SpacingBetweenSlices"))
    if hint is None or hint <= 0:
        hint = as_float(ds.get("SliceThickness"))
    return hint if hint and hint > 0 else None


def frames_of(ds: Dataset, info: FileInfo) -> list[Frame]:
    """Every 2D frame of ``ds`` with its geometry and acquisition keys."""
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        info.is_multiframe = True
        return _enhanced_frames(ds, info)
    image_type = _image_type(ds.get("ImageType"))
    if "MOSAIC" in image_type.split("\\") and info.n_frames == 1:
        mosaic = _mosaic_frames(ds, info, image_type)
        if mosaic:
            return mosaic
    return _classic_frames(ds, info, image_type)


def _classic_kwargs(ds: Dataset, info: FileInfo, image_type: str) -> dict:
    return dict(
        iop=_vec(ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient (0020,0037)"),
        pixel_spacing=_spacing(ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")),
        echo_number=_echo_number(ds),
        echo_time=as_float(ds.get("EchoTime")),
        image_type=image_type,
        acquisition=as_int(ds.get("AcquisitionNumber")),
        instance=as_int(ds.get("InstanceNumber")),
        temporal=as_int(ds.get("TemporalPositionIdentifier")),
        time=time_seconds(ds.get("AcquisitionTime") or ds.get("ContentTime")),
        slope=as_float(ds.get("RescaleSlope"), 1.0) or 1.0,
        intercept=as_float(ds.get("RescaleIntercept"), 0.0) or 0.0,
        philips_scale=_philips_scale(ds, info),
        spacing_hint=_slice_spacing_hint(ds),
        is_localizer="LOCALIZER" in image_type.split("\\"),
    )


def _classic_frames(ds: Dataset, info: FileInfo, image_type: str) -> list[Frame]:
    kw = _classic_kwargs(ds, info, image_type)
    ipp = _vec(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient (0020,0032)")
    if info.n_frames == 1:
        return [Frame(file=info, index=0, ipp=ipp, rows=info.rows, cols=info.cols, **kw)]
    # A classic multi-frame object without functional groups (e.g. NM): frames stacked along the normal.
    step = _slice_spacing_hint(ds) or 1.0
    normal = np.cross(kw["iop"][:3], kw["iop"][3:])
    info.is_multiframe = True
    return [
        Frame(file=info, index=i, ipp=ipp + i * step * normal, rows=info.rows, cols=info.cols, **kw)
        for i in range(info.n_frames)
    ]


def _mosaic_frames(ds: Dataset, info: FileInfo, image_type: str) -> list[Frame]:
    """Split a Siemens mosaic into its tiles, positioned with the CSA header (nibabel's reader)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel.nicom warns that its DICOM readers are experimental
        from nibabel.nicom import csareader  # CSA parsing is nibabel's, not hand-written

        try:
            csa = csareader.get_csa_header(ds, "image")
        except Exception:  # noqa: BLE001 - a broken CSA header: fall back to the public tag
            csa = None
    n = None
    if csa is not None:
        try:
            n = csareader.get_n_mosaic(csa)
        except Exception:  # noqa: BLE001
            n = None
    if not n and _SIEMENS_N_MOSAIC in ds:
        n = as_int(ds[_SIEMENS_N_MOSAIC].value)
    if not n or n < 1:
        return []
    side = math.ceil(math.sqrt(n))
    tile_rows, tile_cols = info.rows // side, info.cols // side
    kw = _classic_kwargs(ds, info, image_type)
    iop = kw["iop"]
    row_cos, col_cos = iop[:3], iop[3:]
    normal = None
    if csa is not None:
        try:
            sn = csareader.get_slice_normal(csa)
            normal = None if sn is None else np.asarray(sn, dtype=np.float64)
        except Exception:  # noqa: BLE001
            normal = None
    if normal is None or normal.shape != (3,) or not np.isfinite(normal).all() or np.linalg.norm(normal) < 0.5:
        normal = np.cross(row_cos, col_cos)
    normal = normal / np.linalg.norm(normal)
    dy, dx = _spacing(ds.get("PixelSpacing"))
    ipp = _vec(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient (0020,0032)")
    # The header's position is the mosaic's top-left corner; move it to the first tile's corner.
    first = ipp + col_cos * dy * (info.rows - tile_rows) / 2.0 + row_cos * dx * (info.cols - tile_cols) / 2.0
    step = kw["spacing_hint"] or 1.0
    info.mosaic_tile = (tile_rows, tile_cols)
    info.n_mosaic = n
    return [
        Frame(file=info, index=k, ipp=first + k * step * normal, rows=tile_rows, cols=tile_cols, **kw)
        for k in range(n)
    ]


def _group_item(frame_item: Dataset | None, shared: Dataset | None, name: str) -> Dataset | None:
    for holder in (frame_item, shared):
        if holder is not None and name in holder:
            seq = holder[name].value
            if seq:
                return seq[0]
    return None


def _enhanced_frames(ds: Dataset, info: FileInfo) -> list[Frame]:
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    top_type = _image_type(ds.get("ImageType"))
    philips = info.manufacturer.upper().startswith("PHILIPS")
    frames: list[Frame] = []
    for i in range(info.n_frames):
        item = per_frame[i] if i < len(per_frame) else None
        pos = _group_item(item, shared, "PlanePositionSequence")
        ori = _group_item(item, shared, "PlaneOrientationSequence")
        meas = _group_item(item, shared, "PixelMeasuresSequence")
        echo = _group_item(item, shared, "MREchoSequence")
        content = _group_item(item, shared, "FrameContentSequence")
        transform = _group_item(item, shared, "PixelValueTransformationSequence")
        ftype = _group_item(item, shared, "MRImageFrameTypeSequence") or _group_item(item, shared, "CTImageFrameTypeSequence")
        private = None
        if philips:
            if item is not None and _PHILIPS_FRAME_PRIVATE in item and item[_PHILIPS_FRAME_PRIVATE].value:
                private = item[_PHILIPS_FRAME_PRIVATE].value[0]
        ipp = _vec(pos.get("ImagePositionPatient") if pos is not None else ds.get("ImagePositionPatient"), 3,
                   f"ImagePositionPatient of frame {i + 1} (PlanePositionSequence)")
        iop = _vec(ori.get("ImageOrientationPatient") if ori is not None else ds.get("ImageOrientationPatient"), 6,
                   f"ImageOrientationPatient of frame {i + 1} (PlaneOrientationSequence)")
        spacing = _spacing((meas.get("PixelSpacing") if meas is not None else None) or ds.get("PixelSpacing"))
        hint = None
        if meas is not None:
            hint = as_float(meas.get("SpacingBetweenSlices")) or as_float(meas.get("SliceThickness"))
        hint = hint or _slice_spacing_hint(ds)
        frame_type = _image_type(ftype.get("FrameType")) if ftype is not None else ""
        if ftype is not None and ftype.get("ComplexImageComponent"):
            frame_type += "\\" + str(ftype.get("ComplexImageComponent")).upper()
        slope = intercept = None
        if transform is not None:
            slope, intercept = as_float(transform.get("RescaleSlope")), as_float(transform.get("RescaleIntercept"))
        if slope is None and private is not None:
            slope, intercept = as_float(private.get("RescaleSlope")), as_float(private.get("RescaleIntercept"))
        if slope is None:
            slope, intercept = as_float(ds.get("RescaleSlope"), 1.0), as_float(ds.get("RescaleIntercept"), 0.0)
        echo_time = as_float(echo.get("EffectiveEchoTime")) if echo is not None else as_float(ds.get("EchoTime"))
        echo_number = as_int(private.get("EchoNumbers")) if private is not None else None
        frames.append(
            Frame(
                file=info,
                index=i,
                ipp=ipp,
                iop=iop,
                pixel_spacing=spacing,
                rows=info.rows,
                cols=info.cols,
                echo_number=echo_number,
                echo_time=echo_time,
                image_type=frame_type or top_type,
                acquisition=as_int(ds.get("AcquisitionNumber")),
                instance=as_int(ds.get("InstanceNumber")),
                temporal=as_int(content.get("TemporalPositionIndex")) if content is not None else None,
                time=time_seconds(content.get("FrameAcquisitionDateTime")) if content is not None else None,
                slope=slope if slope else 1.0,
                intercept=intercept or 0.0,
                philips_scale=_philips_scale(private, info) if private is not None else _philips_scale(ds, info),
                spacing_hint=hint,
                stack_id=str(content.get("StackID")) if content is not None and content.get("StackID") else None,
                is_localizer="LOCALIZER" in (frame_type or top_type).split("\\"),
            )
        )
    return frames
