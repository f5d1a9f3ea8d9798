"""Intensity steps: z-score, clip, threshold, rescale, CT window, histogram standardisation.

Every step here changes voxel values only (never the grid), returns float32 (float64 stays
float64), skips label maps in a chain and refuses one given explicitly, and refuses NaN/infinity
(both through ``Preprocessor.check_input``). Statistics of a 4D image are taken per volume.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medpipes.core.errors import InputError, ProcessingError
from medpipes.core.image import Image
from medpipes.core.io.atomic import atomic_write_text
from medpipes.core.processing.base import Preprocessor, Record, check_finite, read_json_file
from medpipes.core.processing.grid import require_one_grid

REGIONS = ("image", "nonzero")
"""Named voxel sets a statistic may be taken over; a mask Image (or its path) is the third choice."""

CT_WINDOWS: dict[str, tuple[float, float]] = {
    # (level, width) in HU, the usual radiology presets (Radiopaedia, "Windowing (CT)").
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "bone": (400.0, 1800.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (50.0, 400.0),
    "liver": (30.0, 150.0),
}


class IntensityStep(Preprocessor):
    """A step that maps voxel values: never applied to label maps; the grid is kept."""

    accepts_labels = False

    def _apply(self, image: Image) -> tuple[Image, Record]:
        array = _float(image.array)
        if array.ndim == 4:
            out = np.stack([self.transform(array[..., t], image) for t in range(array.shape[3])], axis=-1)
        else:
            out = self.transform(array, image)
        return image.with_array(out.astype(array.dtype, copy=False)), Record(self.name)

    def transform(self, volume: np.ndarray, image: Image) -> np.ndarray:
        """New values of one 3D float volume of ``image`` (a fresh array; ``volume`` is never modified)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement transform")


# --- z-score -------------------------------------------------------------------------------
class ZScore(IntensityStep):
    """(x - mean) / std, the statistics taken over the whole image, its non-zero voxels or a mask.

    ``region`` is 'image', 'nonzero', or a mask (an Image or LabelMap on the same grid, or a path
    to one; voxels > 0 count). With 'nonzero' or a mask only those voxels are changed when
    ``outside`` is 'keep'; 'zero' sets the others to 0 (nnU-Net's choice for MR with a brain mask).
    """

    def __init__(
        self,
        region: str | os.PathLike[str] | Image = "image",
        outside: str = "keep",
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name)
        self.region = _region(region, self.name)
        if outside not in ("keep", "zero"):
            raise InputError(f"{self.name}: outside='{outside}' is not 'keep' or 'zero'")
        self.outside = outside

    def transform(self, volume: np.ndarray, image: Image) -> np.ndarray:
        selected = _selection(volume, image, self.region, self.name)
        values = volume[selected]
        if values.size == 0:
            raise ProcessingError(f"{self.name}: no voxel in region {_region_name(self.region)}; choose another region")
        mean = float(values.mean(dtype=np.float64))
        std = float(values.std(dtype=np.float64))
        if std == 0.0 or not math.isfinite(std):
            raise ProcessingError(
                f"{self.name}: the voxels of region {_region_name(self.region)} all equal {mean:g} (std 0), "
                "so there is no scale to divide by; check the image or choose another region"
            )
        out = (volume - mean) / std
        if not isinstance(self.region, str) or self.region != "image":
            out = np.where(selected, out, volume if self.outside == "keep" else 0.0)
        return out

    def __repr__(self) -> str:
        return f"ZScore(region={_region_name(self.region)}, outside={self.outside!r})"


# --- clip / threshold / rescale ----------------------------------------------------------------
class Clip(IntensityStep):
    """Clip values to [low, high] (either may be None); ``percentiles=True`` reads them as percentiles (0-100)."""

    def __init__(
        self,
        low: float | None = None,
        high: float | None = None,
        percentiles: bool = False,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name)
        if low is None and high is None:
            raise InputError(f"{self.name}: give low=, high= or both")
        self.low, self.high = _bounds(low, high, percentiles, self.name)
        self.percentiles = bool(percentiles)

    def transform(self, volume: np.ndarray, image: Image) -> np.ndarray:
        low, high = _resolve_bounds(volume, self.low, self.high, self.percentiles)
        return np.clip(volume, low, high)

    def __repr__(self) -> str:
        return f"Clip(low={self.low}, high={self.high}, percentiles={self.percentiles})"


class Threshold(IntensityStep):
    """Values below ``threshold`` (or above, with ``keep='below'``) become ``fill_value``; the rest are kept."""

    def __init__(
        self,
        threshold: float,
        keep: str = "above",
        fill_value: float = 0.0,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name)
        self.threshold = _number(threshold, "threshold", self.name)
        if keep not in ("above", "below"):
            raise InputError(f"{self.name}: keep='{keep}' is not 'above' or 'below'")
        self.keep = keep
        self.fill_value = _number(fill_value, "fill_value", self.name)

    def transform(self, volume: np.ndarray, image: Image) -> np.ndarray:
        kept = volume >= self.threshold if self.keep == "above" else volume <= self.threshold
        return np.where(kept, volume, self.fill_value)

    def __repr__(self) -> str:
        return f"Threshold({self.threshold:g}, keep={self.keep!r}, fill_value={self.fill_value:g})"


class Rescale(IntensityStep):
    """Map [in_low, in_high] linearly onto [out_min, out_max], clipping outside (TorchIO's RescaleIntensity).

    The input range defaults to the volume's min and max; ``percentiles=True`` reads ``in_low`` and
    ``in_high`` as percentiles (0-100) of the volume, e.g. (0.5, 99.5) for robust scaling.
    """

    def __init__(
        self,
        out_min: float = 0.0,
        out_max: float = 1.0,
        in_low: float | None = None,
        in_high: float | None = None,
        percentiles: bool = False,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name)
        self.out_min = _number(out_min, "out_min", self.name)
        self.out_max = _number(out_max, "out_max", self.name)
        if self.out_max <= self.out_min:
            raise InputError(f"{self.name}: out_max {self.out_max:g} must exceed out_min {self.out_min:g}")
        self.in_low, self.in_high = _bounds(in_low, in_high, percentiles, self.name)
        self.percentiles = bool(percentiles)

    def transform(self, volume: np.ndarray, image: Image) -> np.ndarray:
        low, high = _resolve_bounds(volume, self.in_low, self.in_high, self.percentiles)
        low = float(volume.min()) if low is None else low
        high = float(volume.max()) if high is None else high
        return _linear_map(volume, low, high, self.out_min, self.out_max, self.name)

    def __repr__(self) -> str:
        return f"Rescale(out=({self.out_min:g}, {self.out_max:g}), in=({self.in_low}, {self.in_high}), percentiles={self.percentiles})"


class CTWindow(IntensityStep):
    """CT window: HU in [level - width/2, level + width/2] mapped onto [out_min, out_max], clipped outside.

    ``level`` may be a preset name instead ('brain', 'bone', 'lung', ...; see CT_WINDOWS); then
    ``width`` is taken from the preset unless given.
    """

    def __init__(
        self,
        level: float | str,
        width: float | None = None,
        out_min: float = 0.0,
        out_max: float = 1.0,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name or "ct_window")
        if isinstance(level, str) and level.lower() in CT_WINDOWS:
            preset_level, preset_width = CT_WINDOWS[level.lower()]
            level, width = preset_level, preset_width if width is None else width
        elif isinstance(level, str) and not _is_number(level):
            raise InputError(f"{self.name}: unknown window preset '{level}'; use one of {', '.join(CT_WINDOWS)} or a level in HU")
        self.level = _number(level, "level", self.name)
        if width is None:
            raise InputError(f"{self.name}: give width= (HU) with level {self.level:g}, or a preset name")
        self.width = _number(width, "width", self.name)
        if self.width <= 0:
            raise InputError(f"{self.name}: width {self.width:g} HU must be positive")
        self.out_min = _number(out_min, "out_min", self.name)
        self.out_max = _number(out_max, "out_max", self.name)
        if self.out_max <= self.out_min:
            raise InputError(f"{self.name}: out_max {self.out_max:g} must exceed out_min {self.out_min:g}")

    def transform(self, volume: np.ndarray, image: Image) -> np.ndarray:
        low, high = self.level - self.width / 2, self.level + self.width / 2
        return _linear_map(volume, low, high, self.out_min, self.out_max, self.name)

    def __repr__(self) -> str:
        return f"CTWindow(level={self.level:g}, width={self.width:g})"


# --- histogram standardisation (Nyúl & Udupa) ----------------------------------------------------
# Hand-written with numpy rather than calling torchio.HistogramStandardization: torchio is only a
# benchmark extra (it pulls in torch tensors and its own Subject type); the algorithm is ~30 lines.
# With the default cutoff it reproduces TorchIO's landmarks and mapping (tests compare the two).
STANDARD_RANGE = (0.0, 100.0)
DEFAULT_CUTOFF = (0.01, 0.99)
_FORMAT = "medpipes-histogram-landmarks"


def landmark_percentiles(cutoff: tuple[float, float] = DEFAULT_CUTOFF) -> np.ndarray:
    """The percentiles (0-100) used as landmarks: the two cutoffs and the deciles between them."""
    low, high = 100.0 * cutoff[0], 100.0 * cutoff[1]
    deciles = [p for p in range(10, 100, 10) if low < p < high]
    return np.array([low, *deciles, high], dtype=np.float64)


@dataclass(frozen=True)
class HistogramLandmarks:
    """Trained standard landmarks: intensity values at ``percentiles`` on the standard scale."""

    percentiles: tuple[float, ...]
    values: tuple[float, ...]
    n_images: int = 0

    def __post_init__(self) -> None:
        if len(self.percentiles) != len(self.values) or len(self.values) < 2:
            raise InputError("histogram landmarks: need as many values as percentiles, at least two")
        if np.any(np.diff(self.values) < 0) or np.any(np.diff(self.percentiles) <= 0):
            raise InputError("histogram landmarks: percentiles must increase and values must not decrease; retrain them")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the landmarks as JSON (atomically)."""
        data = {"format": _FORMAT, "version": 1, "percentiles": list(self.percentiles), "values": list(self.values), "n_images": self.n_images}
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HistogramLandmarks:
        """Read landmarks written by ``save``."""
        path = Path(path)
        data = read_json_file(
            path,
            "landmarks file not found; train them with train_histogram_landmarks",
            "not a readable JSON landmarks file ({exc}); retrain and save them",
        )
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise InputError(f"{path}: not a medpipes landmarks file (format '{_FORMAT}' expected); retrain and save them")
        try:
            return cls(tuple(float(p) for p in data["percentiles"]), tuple(float(v) for v in data["values"]), int(data.get("n_images", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: landmarks file lacks or garbles {exc}; retrain and save them") from None


def train_histogram_landmarks(
    images: Iterable[Image | str | os.PathLike[str]],
    masks: Iterable[Image | str | os.PathLike[str] | None] | None = None,
    cutoff: tuple[float, float] = DEFAULT_CUTOFF,
    standard_range: tuple[float, float] = STANDARD_RANGE,
) -> HistogramLandmarks:
    """Average landmarks of training images (Nyúl & Udupa 2000, as TorchIO trains them).

    Each image's percentiles are mapped linearly so its cutoffs land on ``standard_range``; the
    standard landmarks are the mean over images. ``masks`` (one per image, voxels > 0 count)
    restrict the voxels used.
    """
    from medpipes.core.io import read_image

    if not 0.0 <= cutoff[0] < cutoff[1] <= 1.0:
        raise InputError(f"histogram training: cutoff {cutoff} must be two quantiles 0 <= low < high <= 1, e.g. (0.01, 0.99)")
    percentiles = landmark_percentiles(cutoff)
    image_list = list(images)
    mask_list = list(masks) if masks is not None else [None] * len(image_list)
    if not image_list:
        raise InputError("histogram training: no images given; pass at least one")
    if len(mask_list) != len(image_list):
        raise InputError(f"histogram training: {len(image_list)} images but {len(mask_list)} masks; give one mask per image")
    rows = []
    for item, mask in zip(image_list, mask_list):
        image = item if isinstance(item, Image) else read_image(item)
        step = "histogram training"
        if image.is_label:
            raise InputError(f"{step}: got a LabelMap among the training images; train on intensity images")
        check_finite(image, step)
        region: Any = "image" if mask is None else _region(mask, step)
        values = _float(image.array)[_selection(_float(image.array), image, region, step)]
        if values.size == 0:
            raise InputError(f"{step}: an image has no voxel in its mask; check the masks")
        rows.append(np.percentile(values, percentiles))
    table = np.vstack(rows)
    s1, s2 = standard_range
    spread = table[:, -1] - table[:, 0]
    slopes = np.divide(s2 - s1, spread, out=np.zeros_like(spread), where=spread > 0)
    intercept = float(np.mean(s1 - slopes * table[:, 0]))
    values = slopes @ table / len(table) + intercept
    return HistogramLandmarks(tuple(float(p) for p in percentiles), tuple(float(v) for v in values), len(table))


class HistogramStandardisation(IntensityStep):
    """Map an image's landmark percentiles piecewise-linearly onto trained landmarks (Nyúl & Udupa).

    ``landmarks`` is a HistogramLandmarks or the path of its JSON file. The percentiles are taken
    over ``region`` ('image', 'nonzero' or a mask, as for ZScore); every voxel is mapped, values
    beyond the outer landmarks by extending the first and last segments.
    """

    def __init__(
        self,
        landmarks: HistogramLandmarks | str | os.PathLike[str],
        region: str | os.PathLike[str] | Image = "image",
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name)
        self.landmarks = landmarks if isinstance(landmarks, HistogramLandmarks) else HistogramLandmarks.load(landmarks)
        self.region = _region(region, self.name)

    def transform(self, volume: np.ndarray, image: Image) -> np.ndarray:
        values = volume[_selection(volume, image, self.region, self.name)]
        if values.size == 0:
            raise ProcessingError(f"{self.name}: no voxel in region {_region_name(self.region)}; choose another region")
        source = np.percentile(values, self.landmarks.percentiles)
        target = np.array(self.landmarks.values)
        # Landmarks that coincide (e.g. a background-filled image) get slope 0, as TorchIO does.
        span = np.diff(source)
        slopes = np.divide(np.diff(target), span, out=np.zeros_like(span), where=span >= 1e-5)
        intercepts = target[:-1] - slopes * source[:-1]
        segment = np.digitize(volume, source[1:-1], right=False)
        return slopes[segment] * volume + intercepts[segment]

    def __repr__(self) -> str:
        return f"HistogramStandardisation({len(self.landmarks.values)} landmarks, region={_region_name(self.region)})"


# --- helpers ---------------------------------------------------------------------------------
def _float(array: np.ndarray) -> np.ndarray:
    """float64 stays float64; anything else becomes float32."""
    return array if array.dtype == np.float64 else array.astype(np.float32)


def _region(region: Any, step: str) -> str | Image:
    """'image', 'nonzero' or a mask Image (a path is read now, so a bad path fails early)."""
    if isinstance(region, Image):
        check_finite(region, f"{step} mask")
        return region
    if isinstance(region, str) and region in REGIONS:
        return region
    if isinstance(region, (str, os.PathLike)):
        path = Path(region)
        if not path.exists():
            raise InputError(
                f"{step}: region '{region}' is neither {' nor '.join(repr(r) for r in REGIONS)} nor an existing mask file; "
                "fix the name or the path"
            )
        from medpipes.core.io import read_image

        mask = read_image(path)
        check_finite(mask, f"{step} mask")
        return mask
    raise InputError(f"{step}: region must be 'image', 'nonzero' or a mask image, got {type(region).__name__}")


def _region_name(region: str | Image) -> str:
    if isinstance(region, str):
        return repr(region)
    source = region.meta.source_paths[0] if region.meta.source_paths else "given"
    return f"mask ({source})"


def _selection(volume: np.ndarray, image: Image, region: str | Image, step: str) -> np.ndarray:
    """Boolean mask of the voxels a statistic is taken over."""
    if isinstance(region, str):
        return np.ones(volume.shape, dtype=bool) if region == "image" else volume != 0
    require_one_grid({"image": image, "mask": region}, step)
    mask = region.array if region.array.ndim == 3 else region.array[..., 0]
    return mask > 0


def _number(value: Any, key: str, step: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{step}: {key}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise InputError(f"{step}: {key}={value!r} must be finite")
    return number


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bounds(low: Any, high: Any, percentiles: bool, step: str) -> tuple[float | None, float | None]:
    lo = None if low is None else _number(low, "low", step)
    hi = None if high is None else _number(high, "high", step)
    if lo is not None and hi is not None and hi <= lo:
        raise InputError(f"{step}: high {hi:g} must exceed low {lo:g}")
    if percentiles and any(v is not None and not 0.0 <= v <= 100.0 for v in (lo, hi)):
        raise InputError(f"{step}: percentiles must lie in 0..100, got low={lo}, high={hi}")
    return lo, hi


def _resolve_bounds(volume: np.ndarray, low: float | None, high: float | None, percentiles: bool) -> tuple[float | None, float | None]:
    if not percentiles:
        return low, high
    wanted = [p for p in (low, high) if p is not None]
    values = iter(np.percentile(volume, wanted).tolist()) if wanted else iter(())
    return (next(values) if low is not None else None), (next(values) if high is not None else None)


def _linear_map(volume: np.ndarray, low: float, high: float, out_min: float, out_max: float, step: str) -> np.ndarray:
    if high <= low:
        raise ProcessingError(f"{step}: the input range [{low:g}, {high:g}] is empty (a constant image?); give in_low/in_high")
    scaled = (np.clip(volume, low, high) - low) / (high - low)
    return scaled * (out_max - out_min) + out_min


__all__ = [
    "CT_WINDOWS",
    "CTWindow",
    "Clip",
    "HistogramLandmarks",
    "HistogramStandardisation",
    "IntensityStep",
    "Rescale",
    "Threshold",
    "ZScore",
    "landmark_percentiles",
    "train_histogram_landmarks",
]

