"""Co-registration of sequences to a reference with ANTs (antspy) rigid or affine; transforms kept and reusable.

A found transform is held as one 4x4 matrix in RAS millimetres that carries points of the moving
image's world onto the reference's world. Applying it to an image (or a label map drawn on the
moving image) composes it with the image's affine, which is exact; resampling onto the reference
grid is then one interpolation (nearest neighbour for labels). ANTs works in LPS like ITK; the
conversions here are exact (tested to round-trip).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medpipes.core.errors import GeometryError, InputError, ProcessingError
from medpipes.core.image import LPS_TO_RAS, Image
from medpipes.core.io.atomic import atomic_write_text
from medpipes.core.processing.base import Preprocessor, Record, check_finite, named_input, read_json_file
from medpipes.core.processing.grid import Grid
from medpipes.core.processing.spatial import INTERPOLATORS, resample_onto

TRANSFORMS = {"rigid": "Rigid", "affine": "Affine"}
_FORMAT = "medpipes-transform"


# --- Image <-> ANTsImage -------------------------------------------------------------------------
def to_ants(image: Image) -> Any:
    """An ``ants.ANTsImage`` with the same voxels and geometry (LPS); dtypes ANTs lacks are converted.

    antspy's from_numpy keeps uint8, uint32 and float32 pixels: other unsigned integers become
    uint32; signed integers, float16 and float64 become float32 (signed ones would wrap otherwise).
    """
    import ants

    if image.array.ndim != 3:
        raise InputError(f"ANTs conversion: needs a 3D image, got shape {image.shape}; convert each volume separately")
    array = _ants_dtype(np.asarray(image.array))
    lps = LPS_TO_RAS @ image.affine
    spacing = np.array(image.spacing)
    return ants.from_numpy(
        np.ascontiguousarray(array),
        origin=lps[:3, 3].tolist(),
        spacing=spacing.tolist(),
        direction=lps[:3, :3] / spacing,
    )


def from_ants(ants_image: Any, like: Image | None = None) -> Image:
    """An Image from an ``ants.ANTsImage`` (LPS -> RAS); ``like`` gives the kind (Image/LabelMap) and metadata."""
    if ants_image.dimension != 3 or ants_image.has_components:
        raise InputError(f"ANTs conversion: needs a 3D scalar image, got {ants_image.dimension}D")
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(ants_image.direction, dtype=np.float64) * np.asarray(ants_image.spacing, dtype=np.float64)
    lps[:3, 3] = np.asarray(ants_image.origin, dtype=np.float64)
    kind = type(like) if like is not None else Image
    return kind(np.ascontiguousarray(ants_image.numpy()), LPS_TO_RAS @ lps, like.meta if like is not None else None)


def _ants_dtype(array: np.ndarray) -> np.ndarray:
    if array.dtype in (np.uint8, np.uint32, np.float32):
        return array
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind == "u":
        return array.astype(np.uint32)
    return array.astype(np.float32)


# --- transforms ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class WorldTransform:
    """A rigid or affine map of RAS points (mm) from a moving image's world onto a reference's world."""

    matrix: np.ndarray
    kind: str = "affine"

    def __post_init__(self) -> None:
        matrix = np.array(self.matrix, dtype=np.float64)
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)) or not np.allclose(matrix[3], [0, 0, 0, 1]):
            raise GeometryError("transform: needs a finite 4x4 matrix with last row [0, 0, 0, 1]")
        if abs(np.linalg.det(matrix[:3, :3])) < 1e-9:
            raise GeometryError("transform: the 3x3 part is singular; it cannot be a registration result")
        matrix.flags.writeable = False
        object.__setattr__(self, "matrix", matrix)

    @classmethod
    def identity(cls) -> WorldTransform:
        """The transform that moves nothing."""
        return cls(np.eye(4), "rigid")

    def inverse(self) -> WorldTransform:
        """The map from the reference's world back onto the moving image's."""
        return WorldTransform(np.linalg.inv(self.matrix), self.kind)

    def apply_to_points(self, points_ras: Any) -> np.ndarray:
        """Moving-world RAS points (N x 3 or 3) -> reference-world RAS points."""
        points = np.asarray(points_ras, dtype=np.float64)
        return points @ self.matrix[:3, :3].T + self.matrix[:3, 3]

    def apply(self, image: Image, onto: Grid | Image | None = None, interpolation: str = "linear") -> Image:
        """``image`` (lying in the moving image's world) moved into the reference's world.

        Without ``onto`` only the affine changes (exact, no interpolation); with a grid (or an
        image whose grid to use) the result is resampled onto it (labels: nearest neighbour).
        """
        moved = type(image)(image.array, self.matrix @ image.affine, image.meta)
        if onto is None:
            return moved
        grid = onto if isinstance(onto, Grid) else Grid.of(onto)
        return resample_onto(moved, grid, interpolation)

    @property
    def rotation_degrees(self) -> float:
        """The angle of the rotation part (after removing any scale and shear by polar decomposition)."""
        u, _, vt = np.linalg.svd(self.matrix[:3, :3])
        rotation = u @ vt
        return float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0))))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"format": _FORMAT, "version": 1, "kind": self.kind, "matrix_ras": self.matrix.tolist(), "maps": "moving world -> reference world (RAS mm)"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorldTransform:
        """Inverse of ``to_dict``."""
        if data.get("format") != _FORMAT:
            raise InputError(f"transform: not a medpipes transform (format '{_FORMAT}' expected)")
        return cls(np.array(data["matrix_ras"], dtype=np.float64), str(data.get("kind", "affine")))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the transform as JSON (atomically)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WorldTransform:
        """Read a transform written by ``save``."""
        path = Path(path)
        data = read_json_file(path, "transform file not found; check the path", "not a readable JSON transform ({exc})")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: transform file lacks or garbles {exc}; save it again") from None
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None

    @classmethod
    def from_ants_file(cls, path: str | os.PathLike[str], kind: str = "affine") -> WorldTransform:
        """Read an ANTs/ITK affine transform file (.mat, fixed -> moving in LPS) as moving -> reference in RAS."""
        import ants

        tx = ants.read_transform(str(path))
        params = np.asarray(tx.parameters, dtype=np.float64)
        centre = np.asarray(tx.fixed_parameters, dtype=np.float64)
        if params.size != 12 or centre.size != 3:
            raise ProcessingError(f"{path}: not a 3D affine transform ({params.size} parameters); use a rigid or affine one")
        linear = params[:9].reshape(3, 3)
        fixed_to_moving_lps = np.eye(4)
        fixed_to_moving_lps[:3, :3] = linear
        fixed_to_moving_lps[:3, 3] = params[9:] + centre - linear @ centre
        fixed_to_moving_ras = LPS_TO_RAS @ fixed_to_moving_lps @ LPS_TO_RAS
        return cls(np.linalg.inv(fixed_to_moving_ras), kind)


def register(
    reference: Image,
    moving: Image,
    transform: str = "rigid",
    random_seed: int | None = 1,
    metric: str = "mattes",
) -> WorldTransform:
    """Register ``moving`` to ``reference`` with ``ants.registration`` (rigid or affine); return the transform.

    ``random_seed`` fixes ANTs' metric sampling; runs are then repeatable when ITK also runs on one
    thread (ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 set before the first ANTs call of the process).
    """
    import ants

    if transform not in TRANSFORMS:
        raise InputError(f"registration: unknown transform '{transform}'; use one of {', '.join(TRANSFORMS)}")
    for role, image in (("reference", reference), ("moving", moving)):
        if image.is_label:
            raise InputError(f"registration: the {role} image is a LabelMap; register intensity images and apply the transform to labels")
        if image.array.ndim != 3:
            raise InputError(f"registration: the {role} image has shape {image.shape}; register 3D volumes")
        check_finite(image, f"registration ({role})")
    fixed = to_ants(Image(np.asarray(reference.array, dtype=np.float32), reference.affine))
    mov = to_ants(Image(np.asarray(moving.array, dtype=np.float32), moving.affine))
    with tempfile.TemporaryDirectory(prefix="medpipes-reg-") as folder, _ants_seed(random_seed):
        try:
            result = ants.registration(
                fixed, mov, type_of_transform=TRANSFORMS[transform], aff_metric=metric, outprefix=os.path.join(folder, "reg_")
            )
        except (RuntimeError, ValueError) as exc:
            raise ProcessingError(f"registration: ANTs failed ({str(exc).strip().splitlines()[-1] if str(exc).strip() else exc})") from None
        files = [f for f in result["fwdtransforms"] if f.endswith(".mat")]
        if len(files) != 1:
            raise ProcessingError(f"registration: ANTs returned transforms {result['fwdtransforms']}, expected one affine .mat")
        return WorldTransform.from_ants_file(files[0], transform)


@contextlib.contextmanager
def _ants_seed(seed: int | None) -> Iterator[None]:
    """Set antspy's registration seed for one call, then restore it.

    antspy reads the seed from ``ants.config._random_seed`` only (its public set_ants_deterministic
    also forbids non-'Repro' transforms), so it is set here and put back afterwards.
    """
    import ants.config

    before = ants.config._random_seed
    ants.config._random_seed = seed
    try:
        yield
    finally:
        ants.config._random_seed = before


# --- the step -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class RegistrationRecord(Record):
    """A Record that also holds the transform (moving world -> reference world) it applied.

    The transform is also kept in ``extra["transform"]``, so a plain ``Record.from_dict`` (as in
    ``ChainRecord.from_dict``) keeps it and ``Coregister`` can still invert from what was read back.
    """

    transform: WorldTransform = field(default_factory=WorldTransform.identity)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", {**self.extra, "transform": self.transform.to_dict()})
        super().__post_init__()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegistrationRecord:
        """Inverse of ``to_dict`` (also reads the earlier form with ``transform`` beside ``step``)."""
        record = Record.from_dict(data)
        if "transform" not in record.extra and isinstance(data.get("transform"), Mapping):
            return cls(record.step, record.input_grid, record.output_grid, record.box, record.extra, WorldTransform.from_dict(data["transform"]))
        return cls.of(record)

    @classmethod
    def of(cls, record: Record) -> RegistrationRecord:
        """The registration record held by ``record`` (one read back as a plain Record, say)."""
        if isinstance(record, RegistrationRecord):
            return record
        data = record.extra.get("transform")
        if not isinstance(data, Mapping):
            raise InputError(
                f"{record.step}: the record holds no transform (no extra['transform']); "
                "pass the record co-registration returned, or its to_dict() read back"
            )
        return cls(record.step, record.input_grid, record.output_grid, record.box, record.extra, WorldTransform.from_dict(data))


class Coregister(Preprocessor):
    """Register every input to the input named ``reference`` (ANTs rigid or affine) and move it there.

    With ``resample=True`` (default) each moved image is resampled onto the reference's grid, so
    all outputs share one grid; with ``resample=False`` only affines change (no interpolation).
    ``follow`` maps inputs that move with another one, e.g. a label map drawn on the FLAIR:
    ``{"flair_seg": "flair"}``; they get that input's transform (nearest neighbour for labels). A
    Chain hands a step label maps only when they are named in its ``on=[...]`` (or ``only=``).
    The transforms found are kept in ``transforms`` (by input name) and in each record, so
    ``invert`` brings an image on the reference grid back onto the input's own grid.
    """

    spatial = True
    accepts_labels = False

    def __init__(
        self,
        reference: str,
        transform: str = "rigid",
        resample: bool = True,
        interpolation: str = "linear",
        follow: Mapping[str, str] | None = None,
        random_seed: int | None = 1,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name or "coregister")
        if transform not in TRANSFORMS:
            raise InputError(f"{self.name}: unknown transform '{transform}'; use one of {', '.join(TRANSFORMS)}")
        if interpolation not in INTERPOLATORS:
            raise InputError(f"{self.name}: unknown interpolation '{interpolation}'; use one of {', '.join(INTERPOLATORS)}")
        self.reference = str(reference)
        self.transform = transform
        self.resample = bool(resample)
        self.interpolation = interpolation
        self.follow = dict(follow or {})
        if self.reference in self.follow:
            raise InputError(f"{self.name}: the reference '{self.reference}' cannot follow another input; drop it from follow=")
        self.random_seed = random_seed
        self.transforms: dict[str, WorldTransform] = {}

    def apply_all(self, images: Mapping[str, Image]) -> dict[str, tuple[Image, Record]]:
        """Register each input (but the reference and followers) to the reference; move followers alike."""
        if self.reference not in images:
            raise InputError(
                f"{self.name}: reference '{self.reference}' is not among its inputs {sorted(images)}; name one of them or add it to on=[...]"
            )
        for name, leader in self.follow.items():
            if name in images and leader not in images:
                raise InputError(f"{self.name}: '{name}' follows '{leader}', which is not among its inputs {sorted(images)}")
        reference = images[self.reference]
        with named_input(self.reference):
            self.check_input(reference)
        found: dict[str, WorldTransform] = {self.reference: WorldTransform.identity()}
        for name, image in images.items():
            if name in found or name in self.follow:
                continue
            with named_input(name):
                if image.is_label:
                    raise InputError(
                        f"{self.name}: a LabelMap cannot be registered; name the image it was drawn on with follow={{'{name}': ...}}"
                    )
                self.check_input(image)
                found[name] = register(reference, image, self.transform, self.random_seed)
        for name in images:
            if name in self.follow:
                with named_input(name):
                    check_finite(images[name], self.name)
                found[name] = found[self.follow[name]]
        self.transforms = {name: found[name] for name in images}
        return {name: self._move(images[name], reference, found[name]) for name in images}

    def _apply(self, image: Image) -> tuple[Image, Record]:
        raise InputError(f"{self.name}: co-registration needs the reference too; run it on named images (apply_all or a Chain)")

    def _move(self, image: Image, reference: Image, transform: WorldTransform) -> tuple[Image, Record]:
        if np.array_equal(transform.matrix, np.eye(4)) and (not self.resample or image.same_grid(reference)):
            moved = type(image)(image.array.copy(), image.affine, image.meta)  # the reference itself: untouched
        else:
            moved = transform.apply(image, onto=reference if self.resample else None, interpolation=self.interpolation)
        record = RegistrationRecord(self.name, Grid.of(image), Grid.of(moved), transform=transform)
        return moved, record

    def _invert(self, image: Image, record: Record) -> Image:
        record = RegistrationRecord.of(record)
        assert record.input_grid is not None
        if record.input_grid.matches(record.output_grid):  # type: ignore[arg-type]
            return type(image)(image.array, record.input_grid.affine, image.meta)
        return resample_onto(record.transform.inverse().apply(image), record.input_grid, self.interpolation)

    def __repr__(self) -> str:
        return f"Coregister(reference={self.reference!r}, transform={self.transform!r}, resample={self.resample})"


__all__ = ["TRANSFORMS", "Coregister", "RegistrationRecord", "WorldTransform", "from_ants", "register", "to_ants"]
