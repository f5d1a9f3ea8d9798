"""Postprocessors: steps on model outputs (probabilities -> labels -> cleaned labels), chainable like any step.

Component and hole operations use scipy.ndimage; sizes are in mm3 from the grid's voxel volume.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import ndimage

from medpipes.core.errors import InputError
from medpipes.core.image import Image, LabelMap
from medpipes.core.processing.base import Preprocessor, Record
from medpipes.core.processing.chain import Chain, ChainRecord


class Postprocessor(Preprocessor):
    """A non-spatial step on a model output; returns the new image and a record naming the step."""

    def _apply(self, image: Image) -> tuple[Image, Record]:
        return self.process(image), Record(self.name)

    def process(self, image: Image) -> Image:
        """The processed image (inputs already checked)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement process")


class Binarise(Postprocessor):
    """Probabilities (or any intensities) above ``threshold`` become label 1, the rest 0."""

    accepts_labels = False

    def __init__(self, threshold: float = 0.5, *, on: str | Sequence[str] | None = None, name: str | None = None) -> None:
        super().__init__(on=on, name=name)
        self.threshold = float(threshold)

    def process(self, image: Image) -> Image:
        return LabelMap((image.array > self.threshold).astype(np.uint8), image.affine, image.meta)


class Argmax(Postprocessor):
    """A 4D image of per-class scores (classes on the last axis) -> a 3D label map of the best class.

    ``labels`` gives the label value of each class (default: the class index).
    """

    accepts_labels = False

    def __init__(
        self, labels: Sequence[int] | None = None, *, on: str | Sequence[str] | None = None, name: str | None = None
    ) -> None:
        super().__init__(on=on, name=name)
        self.labels = tuple(int(v) for v in labels) if labels is not None else None

    def process(self, image: Image) -> Image:
        if image.array.ndim != 4:
            raise InputError(
                f"{self.name}: needs a 4D image of class scores (classes on the last axis), got shape "
                f"{image.shape}; use Binarise for a single probability map"
            )
        n_classes = image.array.shape[3]
        index = np.argmax(image.array, axis=3)
        if self.labels is None:
            return LabelMap(index.astype(_label_dtype(n_classes - 1)), image.affine, image.meta)
        if len(self.labels) != n_classes:
            raise InputError(
                f"{self.name}: labels= gives {len(self.labels)} values for {n_classes} classes; give one label per class"
            )
        values = np.array(self.labels)
        return LabelMap(values[index].astype(_label_dtype(int(values.max()), int(values.min()))), image.affine, image.meta)


class OneHot(Postprocessor):
    """A 3D label map -> a 4D uint8 label map with one 0/1 volume per class 0..num_classes-1."""

    accepts_images = False

    def __init__(
        self, num_classes: int | None = None, *, on: str | Sequence[str] | None = None, name: str | None = None
    ) -> None:
        super().__init__(on=on, name=name)
        if num_classes is not None and int(num_classes) < 1:
            raise InputError(f"one_hot: num_classes={num_classes} must be at least 1")
        self.num_classes = int(num_classes) if num_classes is not None else None

    def process(self, image: Image) -> Image:
        array = _labels_3d(image, self.name)
        if array.size and array.min() < 0:
            raise InputError(f"{self.name}: label map has negative labels; one-hot needs labels 0..N-1")
        top = int(array.max()) if array.size else 0
        n_classes = self.num_classes if self.num_classes is not None else top + 1
        if top >= n_classes:
            raise InputError(f"{self.name}: label {top} does not fit num_classes={n_classes}; raise num_classes")
        onehot = (array[..., np.newaxis] == np.arange(n_classes)).astype(np.uint8)
        return LabelMap(onehot, image.affine, image.meta)


class KeepLargestComponent(Postprocessor):
    """Keep only the largest connected component of each label (or of the whole foreground)."""

    accepts_images = False

    def __init__(
        self,
        per_label: bool = True,
        fully_connected: bool = False,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name)
        self.per_label = per_label
        self.fully_connected = fully_connected

    def process(self, image: Image) -> Image:
        array = _labels_3d(image, self.name)
        out = array.copy()
        masks = [array == v for v in _label_values(array)] if self.per_label else [array != 0]
        for mask in masks:
            components, count = ndimage.label(mask, structure=_structure(self.fully_connected))
            if count > 1:
                sizes = np.bincount(components.ravel())
                sizes[0] = 0
                out[mask & (components != int(np.argmax(sizes)))] = 0
        return image.with_array(out)


class RemoveIslands(Postprocessor):
    """Remove connected components smaller than ``min_volume_mm3`` (measured in mm3 from the spacing)."""

    accepts_images = False

    def __init__(
        self,
        min_volume_mm3: float,
        fully_connected: bool = False,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name)
        if not np.isfinite(min_volume_mm3) or min_volume_mm3 < 0:
            raise InputError(f"remove_islands: min_volume_mm3={min_volume_mm3} must be a number >= 0")
        self.min_volume_mm3 = float(min_volume_mm3)
        self.fully_connected = fully_connected

    def process(self, image: Image) -> Image:
        array = _labels_3d(image, self.name)
        voxel_mm3 = abs(float(np.linalg.det(image.affine[:3, :3])))
        out = array.copy()
        for value in _label_values(array):
            mask = array == value
            components, count = ndimage.label(mask, structure=_structure(self.fully_connected))
            volumes_mm3 = np.bincount(components.ravel()) * voxel_mm3
            small = np.flatnonzero(volumes_mm3 < self.min_volume_mm3)
            out[mask & np.isin(components, small[small > 0])] = 0
        return image.with_array(out)


class FillHoles(Postprocessor):
    """Fill background enclosed by a label, in 3D or slice by slice (only background voxels change).

    ``mode="slice"`` fills each 2D slice across ``axis`` (default: the axis with the coarsest
    spacing, the last one on ties), so a tube open at its ends is filled slice-wise but not in 3D.
    """

    accepts_images = False

    def __init__(
        self,
        mode: str = "3d",
        axis: int | None = None,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name)
        if mode not in ("3d", "slice"):
            raise InputError(f"fill_holes: unknown mode '{mode}'; use '3d' or 'slice'")
        if axis is not None and axis not in (0, 1, 2):
            raise InputError(f"fill_holes: axis={axis} is not 0, 1 or 2")
        self.mode = mode
        self.axis = axis

    def process(self, image: Image) -> Image:
        array = _labels_3d(image, self.name)
        out = array.copy()
        axis = self.axis if self.axis is not None else _coarsest_axis(image.spacing)
        for value in _label_values(array):
            mask = array == value
            if self.mode == "3d":
                filled = ndimage.binary_fill_holes(mask)
            else:
                filled = np.stack(
                    [ndimage.binary_fill_holes(plane) for plane in np.moveaxis(mask, axis, 0)], axis=0
                )
                filled = np.moveaxis(filled, 0, axis)
            out[filled & (out == 0)] = value
        return image.with_array(out)


class UndoSpatial(Postprocessor):
    """Bring a model output back onto an input's grid: undo, in reverse, the spatial steps ``chain`` ran on it.

    ``record`` is what ``chain.run`` returned, its ``to_dict()`` form, or the JSON file written by
    ``ChainRecord.save`` or ``medpipes preprocess --record`` (rebuild ``chain`` from the same steps).
    ``input_name`` is the input whose grid to return to (e.g. 't1'). Label maps come back with
    nearest neighbour, probabilities (3D or 4D) with linear interpolation. Not itself invertible.
    """

    def __init__(
        self,
        chain: Chain | Sequence[Preprocessor],
        record: ChainRecord | Mapping[str, Any] | str | os.PathLike[str],
        input_name: str,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name or "undo_spatial")
        self.chain = chain if isinstance(chain, Chain) else Chain(chain)
        if isinstance(record, ChainRecord):
            self.record = record
        elif isinstance(record, Mapping):
            try:
                self.record = ChainRecord.from_dict(record)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise InputError(f"{self.name}: record is not a chain record's to_dict() (missing or malformed {exc})") from None
        else:
            self.record = ChainRecord.load(record)
        if input_name not in self.record.inputs:
            raise InputError(f"{self.name}: no input named '{input_name}' in the record; use one of {list(self.record.inputs)}")
        made_by = [step for step, _ in self.record.steps]
        if made_by != [step.name for step in self.chain.steps]:
            raise InputError(
                f"{self.name}: the record's steps {made_by} are not the chain's {[s.name for s in self.chain.steps]}; "
                "pass the chain that made the record"
            )
        self.input_name = input_name

    def process(self, image: Image) -> Image:
        return self.chain.invert(image, self.record, self.input_name)

    def __repr__(self) -> str:
        return f"UndoSpatial(input_name={self.input_name!r}, steps={[s.name for s in self.chain.steps]})"


def _labels_3d(image: Image, step: str) -> np.ndarray:
    if image.array.ndim != 3:
        raise InputError(f"{step}: needs a 3D label map, got shape {image.shape}; use Argmax on class scores first")
    return image.array


def _label_values(array: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(array) if v != 0]


def _structure(fully_connected: bool) -> np.ndarray:
    return ndimage.generate_binary_structure(3, 3 if fully_connected else 1)


def _coarsest_axis(spacing: Sequence[float]) -> int:
    top = max(spacing)
    return max(axis for axis, s in enumerate(spacing) if np.isclose(s, top))


def _label_dtype(top: int, bottom: int = 0) -> type:
    if bottom < 0:
        return np.int32
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return dtype
    return np.int64
