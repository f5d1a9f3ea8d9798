"""Preprocessor: one step on Images that says what it may touch and records what undoes it.

Intensity steps set ``accepts_labels = False`` and are skipped for LabelMaps (like TorchIO); steps
that only make sense on labels set ``accepts_images = False``. A spatial step's Record holds the
input grid (and any box), which is all its inverse needs; its output grid is kept to check that
what is inverted lies where the step left it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np

from medpipes.core.errors import GeometryError, InputError, MedpipesError, ProcessingError
from medpipes.core.image import Image
from medpipes.core.processing.grid import Grid

ImageSource = Image | str | os.PathLike
"""An Image in memory, or the path of a file (or DICOM folder) to read one from."""

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
"""Per axis (start, stop) voxel indices of the input grid; may reach outside it (padding)."""


@dataclass(frozen=True, eq=False)
class Record:
    """What one step did to one image: enough to undo it when the step is spatial.

    ``extra`` holds step-specific data (e.g. a registration's transform) as JSON values (str
    keys; numbers, strings, booleans, None, lists, dicts): it is kept through ``to_dict`` and
    ``from_dict``, so a record written to JSON and read back still undoes its step.
    """

    step: str
    input_grid: Grid | None = None
    output_grid: Grid | None = None
    box: Box | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:  # a JSON round trip both checks the values and makes a private deep copy
            extra = json.loads(json.dumps(dict(self.extra), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ProcessingError(
                f"{self.step}: record extra is not JSON data ({exc}); store plain numbers, strings, lists and dicts "
                "(e.g. array.tolist())"
            ) from None
        object.__setattr__(self, "extra", extra)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "step": self.step,
            "input_grid": self.input_grid.to_dict() if self.input_grid else None,
            "output_grid": self.output_grid.to_dict() if self.output_grid else None,
            "box": [list(b) for b in self.box] if self.box else None,
            "extra": json.loads(json.dumps(dict(self.extra))),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Record":
        """Inverse of ``to_dict``."""
        box = data.get("box")
        return cls(
            step=str(data["step"]),
            input_grid=Grid.from_dict(data["input_grid"]) if data.get("input_grid") else None,
            output_grid=Grid.from_dict(data["output_grid"]) if data.get("output_grid") else None,
            box=tuple((int(a), int(b)) for a, b in box) if box else None,  # type: ignore[arg-type]
            extra=data.get("extra") or {},
        )


class Preprocessor:
    """Base of every processing step: ``step(image) -> (image, record)``; spatial steps also invert."""

    spatial: ClassVar[bool] = False
    accepts_labels: ClassVar[bool] = True
    accepts_images: ClassVar[bool] = True

    def __init__(self, *, on: str | Sequence[str] | None = None, name: str | None = None) -> None:
        self.on: tuple[str, ...] | None = (on,) if isinstance(on, str) else (tuple(on) if on is not None else None)
        self.name: str = name or _snake_case(type(self).__name__)

    # --- what it touches ------------------------------------------------------------------
    def applies_to(self, image: Image) -> bool:
        """Whether this step processes ``image`` (intensity steps skip label maps)."""
        return self.accepts_labels if image.is_label else self.accepts_images

    def check_input(self, image: Image) -> None:
        """Refuse a kind of image this step never touches, and NaN or infinite voxels."""
        if not self.applies_to(image):
            if image.is_label:
                raise InputError(
                    f"{self.name}: got a LabelMap, but this step changes intensities and never applies to "
                    "labels; leave the label map out of its on=[...]"
                )
            raise InputError(
                f"{self.name}: needs a LabelMap, got an intensity Image; make labels first "
                "(Binarise or Argmax) or read the input as a label map"
            )
        check_finite(image, self.name)

    # --- forward --------------------------------------------------------------------------
    def __call__(self, image: ImageSource) -> tuple[Image, Record]:
        """Apply to one image (or the file at a path); return the new image and the record of what was done."""
        image = load_image(image, label=not self.accepts_images)
        self.check_input(image)
        return self._apply(image)

    def apply(self, image: ImageSource) -> Image:
        """Apply to one image (or the file at a path), dropping the record."""
        return self(image)[0]

    def apply_all(self, images: Mapping[str, Image]) -> dict[str, tuple[Image, Record]]:
        """Apply to several named images; steps whose outputs must stay aligned override this."""
        results = {}
        for name, image in images.items():
            with named_input(name):
                results[name] = self(image)
        return results

    def _apply(self, image: Image) -> tuple[Image, Record]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _apply")

    # --- inverse --------------------------------------------------------------------------
    def invert(self, image: Image, record: Record) -> Image:
        """Undo this spatial step: bring ``image`` (on the step's output grid) back onto its input grid."""
        if not self.spatial:
            raise ProcessingError(f"{self.name}: not a spatial step, so there is nothing to invert; skip it")
        if record.step != self.name or record.input_grid is None or record.output_grid is None:
            raise InputError(
                f"{self.name}: the record given was made by step '{record.step}'; "
                "pass the record this step returned"
            )
        here = Grid.of(image)
        if not here.matches(record.output_grid):
            raise GeometryError(
                f"{self.name}: cannot invert an image on {here.describe()}; the step produced "
                f"{record.output_grid.describe()}; invert images on the step's output grid"
            )
        return self._invert(image, record)

    def _invert(self, image: Image, record: Record) -> Image:
        raise NotImplementedError(f"{type(self).__name__} does not implement _invert")

    def spatial_record(self, before: Image, after: Image, box: Box | None = None) -> Record:
        """The record of a spatial step: input grid, output grid and any box."""
        return Record(self.name, Grid.of(before), Grid.of(after), box)

    def __repr__(self) -> str:
        on = f", on={list(self.on)}" if self.on is not None else ""
        return f"{type(self).__name__}(name={self.name!r}{on})"


def load_image(source: ImageSource, label: bool = False) -> Image:
    """``source`` itself when it is an Image, else the image read from that path (a LabelMap when ``label``)."""
    if isinstance(source, Image):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"expected an Image or a path to an image file, got a {type(source).__name__}; wrap arrays as Image(array, affine)")
    from medpipes.core.io import read_image  # imported here: the io stack is not needed for in-memory work

    image = read_image(source)
    return image.as_label_map() if label else image


def read_json_file(path: Path, missing: str, unreadable: str) -> Any:
    """The JSON in ``path``; InputError ``"{path}: {missing}"`` when absent, ``"{path}: {unreadable}"`` (``{exc}`` filled) when not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: {missing}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: {unreadable.format(exc=exc)}") from None


def check_finite(image: Image, step: str) -> None:
    """InputError when a floating-point image holds NaN or infinity."""
    if image.array.dtype.kind not in "fc":
        return
    bad = int(np.count_nonzero(~np.isfinite(image.array)))
    if bad:
        source = f" ({image.meta.source_paths[0]})" if image.meta.source_paths else ""
        raise InputError(
            f"{step}: input{source} has {bad} NaN or infinite voxel(s); "
            "replace them first (e.g. numpy.nan_to_num) or fix the file that produced them"
        )


@contextlib.contextmanager
def named_input(name: str) -> Iterator[None]:
    """Prefix any MedpipesError raised inside with the input's name (same exception type)."""
    try:
        yield
    except MedpipesError as exc:
        if str(exc).startswith(f"input '{name}'"):
            raise
        raise type(exc)(f"input '{name}': {exc}") from None


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
