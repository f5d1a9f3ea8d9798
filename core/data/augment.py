"""Seeded, composable augmentations on a case's groups; spatial ones move labels with their images.

A sample is ``{group: Image}`` with every group stacked as (i, j, k, channel) on one grid (``Case.load``).
``Compose([...])(sample, rng)`` returns the augmented sample; ``Compose.lazy`` returns a LazySample whose
spatial steps are not yet applied, so a patch sampler can resample only the voxels it keeps.

Geometry: flips and 90-degree rotations re-index the array and update the affine so every voxel keeps
its world position (``affine_out = affine_in @ M``); a random affine or elastic deformation moves the
anatomy on the unchanged grid (the affine stays). Label groups are resampled with nearest neighbour;
intensity augmentations never touch label groups. Every augmentation draws from its own generator,
seeded from the sample's, so results are reproducible whatever path computes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from medpipes.core.data.resample import (
    AffineStep,
    Box,
    ElasticStep,
    Step,
    resample,
    total_matrix,
)
from medpipes.core.errors import GeometryError, InputError
from medpipes.core.image import Image, LabelMap
from scipy import ndimage

Range = tuple[float, float]


# ---------------------------------------------------------------------------------------------
# base classes
# ---------------------------------------------------------------------------------------------
class Augmentation:
    """One random transformation; ``on`` picks the groups it applies to (default: all it accepts)."""

    kind: ClassVar[str] = "regional"  # "spatial", "pointwise" (commutes with cropping) or "regional"
    accepts_labels: ClassVar[bool] = True

    def __init__(self, *, p: float = 1.0, on: str | Sequence[str] | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise InputError(f"{type(self).__name__}: p={p} is not a probability; use a value in [0, 1]")
        self.p = float(p)
        self.on: tuple[str, ...] | None = (on,) if isinstance(on, str) else (tuple(on) if on is not None else None)

    def targets(self, is_label: Mapping[str, bool]) -> list[str]:
        """The groups of a sample this augmentation changes."""
        if self.on is not None:
            missing = [g for g in self.on if g not in is_label]
            if missing:
                raise InputError(
                    f"{type(self).__name__}: on={list(self.on)} names groups {missing} the sample lacks "
                    f"(it has {list(is_label)}); fix on=[...]"
                )
            chosen = list(self.on)
            if not self.accepts_labels and any(is_label[g] for g in chosen):
                raise InputError(
                    f"{type(self).__name__} changes intensities and never applies to label groups; "
                    f"leave {[g for g in chosen if is_label[g]]} out of on=[...]"
                )
            return chosen
        return [g for g, label in is_label.items() if self.accepts_labels or not label]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


@dataclass(frozen=True, eq=False)
class SpatialDraw:
    """A drawn spatial step and the grid it leaves (shape, affine)."""

    step: Step
    shape: tuple[int, int, int]
    affine: np.ndarray


class SpatialAugmentation(Augmentation):
    """Moves voxels; applied identically to every target group (images linear, labels nearest)."""

    kind = "spatial"

    def draw(self, rng: np.random.Generator, shape: tuple[int, int, int], affine: np.ndarray) -> SpatialDraw | None:
        """A random step for a grid of ``shape`` and ``affine`` (None: identity)."""
        raise NotImplementedError


class IntensityAugmentation(Augmentation):
    """Changes image intensities; never applied to label groups."""

    accepts_labels = False

    def draw(self, rng: np.random.Generator, stats: Callable[[], np.ndarray]) -> Any:
        """Parameters for one sample; ``stats()`` gives per-channel (min, max) rows of the group's source."""
        return None

    def apply(
        self,
        array: np.ndarray,
        params: Any,
        rng: np.random.Generator,
        origin: Sequence[int],
        full_shape: Sequence[int],
        spacing: Sequence[float],
    ) -> np.ndarray:
        """New float32 array (i, j, k, c); ``origin`` is where ``array`` starts in a grid of ``full_shape``."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# spatial augmentations
# ---------------------------------------------------------------------------------------------
class RandomFlip(SpatialAugmentation):
    """Flip along each of ``axes`` (array axes 0, 1, 2) with probability ``flip_probability``."""

    def __init__(self, axes: Sequence[int] = (0, 1, 2), flip_probability: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not axes or any(a not in (0, 1, 2) for a in axes):
            raise InputError(f"RandomFlip: axes={list(axes)}; use array axes among 0, 1, 2")
        self.axes = tuple(int(a) for a in axes)
        self.flip_probability = float(flip_probability)

    def draw(self, rng: np.random.Generator, shape: tuple[int, int, int], affine: np.ndarray) -> SpatialDraw | None:
        flips = [a for a in self.axes if rng.random() < self.flip_probability]
        if not flips:
            return None
        matrix = np.eye(4)
        for a in flips:
            matrix[a, a] = -1.0
            matrix[a, 3] = shape[a] - 1
        return SpatialDraw(AffineStep(matrix), shape, affine @ matrix)


class RandomRot90(SpatialAugmentation):
    """Rotate by a random multiple of 90 degrees in one of ``planes`` (pairs of array axes), like ``np.rot90``.

    The 2D case is a 3D image with a single slice and the plane (0, 1).
    """

    def __init__(self, planes: Sequence[tuple[int, int]] = ((0, 1), (0, 2), (1, 2)), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for plane in planes:
            if len(plane) != 2 or plane[0] == plane[1] or any(a not in (0, 1, 2) for a in plane):
                raise InputError(f"RandomRot90: plane {plane} is not two different axes among 0, 1, 2")
        if not planes:
            raise InputError("RandomRot90: planes is empty; give e.g. [(0, 1)]")
        self.planes = tuple((int(a), int(b)) for a, b in planes)

    def draw(self, rng: np.random.Generator, shape: tuple[int, int, int], affine: np.ndarray) -> SpatialDraw | None:
        plane = self.planes[int(rng.integers(len(self.planes)))]
        turns = int(rng.integers(4))
        if turns == 0:
            return None
        return rot90_draw(shape, affine, plane, turns)


def rot90_draw(shape: tuple[int, int, int], affine: np.ndarray, plane: tuple[int, int], turns: int) -> SpatialDraw:
    """The step that equals ``np.rot90(array, turns, axes=plane)``, affine updated to keep world positions."""
    a, b = plane
    matrix = np.eye(4)
    current = list(shape)
    for _ in range(turns % 4):
        # np.rot90 once: out[.., x@a, y@b] = in[.., y@a, n_b - 1 - x@b]
        one = np.eye(4)
        one[a, a], one[a, b] = 0.0, 1.0
        one[b, b], one[b, a], one[b, 3] = 0.0, -1.0, current[b] - 1
        matrix = matrix @ one
        current[a], current[b] = current[b], current[a]
    return SpatialDraw(AffineStep(matrix), tuple(current), affine @ matrix)  # type: ignore[arg-type]


class RandomAffine(SpatialAugmentation):
    """Random rotation (degrees), scaling and translation (mm) about the grid's centre, in world space.

    A scale above 1 enlarges the anatomy. One interpolation, on the unchanged grid.
    """

    def __init__(
        self,
        scales: float | Range = 0.1,
        degrees: float | Range = 10.0,
        translation_mm: float | Range = 0.0,
        isotropic: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scales = _range(scales, around=1.0, name="scales")
        self.degrees = _range(degrees, around=0.0, name="degrees")
        self.translation_mm = _range(translation_mm, around=0.0, name="translation_mm")
        if self.scales[0] <= 0:
            raise InputError(f"RandomAffine: scales {self.scales} must stay above 0")
        self.isotropic = bool(isotropic)

    def draw(self, rng: np.random.Generator, shape: tuple[int, int, int], affine: np.ndarray) -> SpatialDraw | None:
        scale = rng.uniform(*self.scales, size=1 if self.isotropic else 3) * np.ones(3)
        angles = np.deg2rad(rng.uniform(*self.degrees, size=3))
        shift = rng.uniform(*self.translation_mm, size=3)
        forward = _rotation(angles) @ np.diag(scale)  # how the anatomy moves about the centre
        centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2.0) + affine[:3, 3]
        world = np.eye(4)  # output world point -> input world point (the inverse motion)
        inverse = np.linalg.inv(forward)
        world[:3, :3] = inverse
        world[:3, 3] = centre - inverse @ (centre + shift)
        matrix = np.linalg.inv(affine) @ world @ affine
        return SpatialDraw(AffineStep(matrix), shape, affine)


class RandomElastic(SpatialAugmentation):
    """Smooth random deformation: cubic B-spline with ``control_points`` per axis, displacements up to ``max_displacement_mm``."""

    def __init__(self, control_points: int = 7, max_displacement_mm: float | Sequence[float] = 7.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if control_points < 4:
            raise InputError(f"RandomElastic: control_points={control_points}; a cubic B-spline needs at least 4")
        self.control_points = int(control_points)
        self.max_displacement_mm = np.broadcast_to(np.asarray(max_displacement_mm, dtype=float), (3,)).copy()

    def draw(self, rng: np.random.Generator, shape: tuple[int, int, int], affine: np.ndarray) -> SpatialDraw | None:
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        n = self.control_points
        coefficients = rng.uniform(-1.0, 1.0, size=(3, n, n, n)) * (self.max_displacement_mm / spacing)[:, None, None, None]
        coefficients[:, [0, -1], :, :] = 0.0  # borders stay put (as TorchIO's locked borders)
        coefficients[:, :, [0, -1], :] = 0.0
        coefficients[:, :, :, [0, -1]] = 0.0
        return SpatialDraw(ElasticStep(shape, coefficients), shape, affine)


# ---------------------------------------------------------------------------------------------
# intensity augmentations (images only)
# ---------------------------------------------------------------------------------------------
class RandomScaleShift(IntensityAugmentation):
    """``x * scale + shift`` per channel, ``scale`` and ``shift`` (intensity units) drawn uniformly."""

    kind = "pointwise"

    def __init__(self, scale: Range = (0.9, 1.1), shift: Range = (0.0, 0.0), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = _pair(scale, "scale")
        self.shift = _pair(shift, "shift")

    def draw(self, rng: np.random.Generator, stats: Callable[[], np.ndarray]) -> Any:
        n = stats().shape[0]
        return rng.uniform(*self.scale, size=n).astype(np.float32), rng.uniform(*self.shift, size=n).astype(np.float32)

    def apply(self, array, params, rng, origin, full_shape, spacing):  # type: ignore[no-untyped-def]
        scale, shift = params
        return array * scale + shift


class RandomGamma(IntensityAugmentation):
    """Gamma ``exp(U(log_gamma))`` on each channel's intensities rescaled to [0, 1] over its source range, then back."""

    kind = "pointwise"

    def __init__(self, log_gamma: float | Range = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_gamma = _range(log_gamma, around=0.0, name="log_gamma")

    def draw(self, rng: np.random.Generator, stats: Callable[[], np.ndarray]) -> Any:
        ranges = stats()
        gamma = np.exp(rng.uniform(*self.log_gamma, size=ranges.shape[0]))
        low = np.minimum(ranges[:, 0], 0.0)  # resampling fills with 0, which must stay in range
        return low.astype(np.float32), ranges[:, 1].astype(np.float32), gamma.astype(np.float32)

    def apply(self, array, params, rng, origin, full_shape, spacing):  # type: ignore[no-untyped-def]
        low, high, gamma = params
        width = np.maximum(high - low, np.float32(1e-12))
        unit = np.clip((array - low) / width, 0.0, 1.0)
        return (unit**gamma * width + low).astype(np.float32)


class RandomNoise(IntensityAugmentation):
    """Additive Gaussian noise, mean 0, standard deviation drawn from ``std`` (intensity units)."""

    kind = "pointwise"

    def __init__(self, std: float | Range = (0.0, 0.25), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.std = _range(std, around=0.0, name="std", lower=0.0)

    def draw(self, rng: np.random.Generator, stats: Callable[[], np.ndarray]) -> Any:
        return float(rng.uniform(*self.std))

    def apply(self, array, params, rng, origin, full_shape, spacing):  # type: ignore[no-untyped-def]
        # torch's normal generator is ~3x faster than numpy's; it is seeded from ``rng``, so still reproducible.
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        noise = torch.randn(array.shape, generator=generator, dtype=torch.float32).numpy()
        noise *= np.float32(params)
        noise += array
        return noise


class RandomBiasField(IntensityAugmentation):
    """MRI bias field: multiply by ``exp(polynomial)`` of degree ``order`` in normalised coordinates."""

    kind = "pointwise"  # a function of position: evaluated on any box given its origin

    def __init__(self, coefficients: float | Range = 0.5, order: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.coefficients = _range(coefficients, around=0.0, name="coefficients")
        self.order = int(order)
        self.terms = [(i, j, k) for i in range(order + 1) for j in range(order + 1 - i) for k in range(order + 1 - i - j)]

    def draw(self, rng: np.random.Generator, stats: Callable[[], np.ndarray]) -> Any:
        return rng.uniform(*self.coefficients, size=len(self.terms))

    def apply(self, array, params, rng, origin, full_shape, spacing):  # type: ignore[no-untyped-def]
        axes = [
            (np.arange(origin[a], origin[a] + array.shape[a]) - (full_shape[a] - 1) / 2.0) / max((full_shape[a] - 1) / 2.0, 1.0)
            for a in range(3)
        ]
        powers = [[axis**p for p in range(self.order + 1)] for axis in axes]
        log_field = np.zeros(array.shape[:3], dtype=np.float64)
        for coefficient, (i, j, k) in zip(params, self.terms):
            log_field += coefficient * np.multiply.outer(np.multiply.outer(powers[0][i], powers[1][j]), powers[2][k])
        return (array * np.exp(log_field).astype(np.float32)[..., np.newaxis]).astype(np.float32)


class ChannelDropout(IntensityAugmentation):
    """Set each channel to ``fill`` with probability ``drop_probability``, always keeping at least one channel."""

    kind = "pointwise"

    def __init__(self, drop_probability: float = 0.2, fill: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drop_probability = float(drop_probability)
        self.fill = float(fill)

    def draw(self, rng: np.random.Generator, stats: Callable[[], np.ndarray]) -> Any:
        n = stats().shape[0]
        dropped = rng.random(n) < self.drop_probability
        if dropped.all():
            dropped[int(rng.integers(n))] = False
        return dropped

    def apply(self, array, params, rng, origin, full_shape, spacing):  # type: ignore[no-untyped-def]
        out = array.copy()
        out[..., params] = self.fill
        return out


class RandomBlur(IntensityAugmentation):
    """Gaussian blur with a standard deviation in mm drawn per axis from ``std_mm``."""

    kind = "regional"

    def __init__(self, std_mm: float | Range = (0.0, 2.0), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.std_mm = _range(std_mm, around=0.0, name="std_mm", lower=0.0)

    def draw(self, rng: np.random.Generator, stats: Callable[[], np.ndarray]) -> Any:
        return rng.uniform(*self.std_mm, size=3)

    def apply(self, array, params, rng, origin, full_shape, spacing):  # type: ignore[no-untyped-def]
        sigma = np.asarray(params) / np.asarray(spacing)
        return ndimage.gaussian_filter(array, sigma=tuple(sigma) + (0.0,), mode="nearest").astype(np.float32)


class NearestDownsample(IntensityAugmentation):
    """Simulate a coarser acquisition on the same grid: keep every ``f``-th voxel per axis and repeat it (nearest neighbour).

    ``factor`` is the range of whole factors drawn per axis (e.g. (1, 3)); ``axes`` limits the axes.
    """

    kind = "regional"

    def __init__(self, factor: tuple[int, int] = (1, 3), axes: Sequence[int] = (0, 1, 2), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if factor[0] < 1 or factor[1] < factor[0]:
            raise InputError(f"NearestDownsample: factor={factor}; give whole numbers 1 <= low <= high")
        self.factor = (int(factor[0]), int(factor[1]))
        self.axes = tuple(int(a) for a in axes)

    def draw(self, rng: np.random.Generator, stats: Callable[[], np.ndarray]) -> Any:
        return [int(rng.integers(self.factor[0], self.factor[1] + 1)) if a in self.axes else 1 for a in range(3)]

    def apply(self, array, params, rng, origin, full_shape, spacing):  # type: ignore[no-untyped-def]
        index = [np.arange(n) // f * f for n, f in zip(array.shape[:3], params)]
        return array[np.ix_(*index)].astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# lazy sample and composition
# ---------------------------------------------------------------------------------------------
@dataclass
class _Deferred:
    op: IntensityAugmentation
    params: Any
    seed: int


class LazySample:
    """Groups with spatial steps and pointwise intensity steps recorded but not applied yet."""

    def __init__(self, sample: Mapping[str, Image]) -> None:
        if not sample:
            raise InputError("an augmentation needs at least one group in the sample")
        self.three_d = {g for g, im in sample.items() if im.array.ndim == 3}
        self.sources: dict[str, Image] = {
            g: (type(im)(im.array[..., np.newaxis], im.affine, im.meta) if g in self.three_d else im) for g, im in sample.items()
        }
        self.steps: dict[str, list[Step]] = {g: [] for g in sample}
        self.shapes: dict[str, tuple[int, int, int]] = {g: im.spatial_shape for g, im in sample.items()}
        self.affines: dict[str, np.ndarray] = {g: im.affine for g, im in sample.items()}
        self.deferred: dict[str, list[_Deferred]] = {g: [] for g in sample}
        self._float: dict[str, np.ndarray] = {}
        self._calls = 0
        self.label_index: tuple[Image, np.ndarray] | None = None  # PatchSampler's cache: (label source, voxel indices)

    @property
    def is_label(self) -> dict[str, bool]:
        """Group -> whether it is a label group."""
        return {g: im.is_label for g, im in self.sources.items()}

    def channel_ranges(self, group: str) -> np.ndarray:
        """Per channel (min, max) of the group's current source voxels."""
        array = self.sources[group].array
        flat = array.reshape(-1, array.shape[3])
        return np.stack([flat.min(axis=0), flat.max(axis=0)], axis=1).astype(np.float64)

    def matrix(self, group: str) -> np.ndarray | None:
        """Output -> source voxel matrix when the group's pending steps are all affine."""
        return total_matrix(self.steps[group])

    def push(self, group: str, draw: SpatialDraw) -> None:
        """Record a spatial step (pending pointwise steps are applied first, to keep the order)."""
        if self.deferred[group]:
            self.settle(group)
        self.steps[group].append(draw.step)
        self.shapes[group] = draw.shape
        self.affines[group] = draw.affine

    def settle(self, group: str) -> None:
        """Apply everything pending to the group over its whole grid."""
        self.sources[group] = self._materialise(None, [group])[group]
        self.steps[group] = []
        self.deferred[group] = []
        self._float.pop(group, None)

    def materialise(self, box: Box | None = None, groups: Sequence[str] | None = None) -> dict[str, Image]:
        """The groups (default all) over ``box`` of their output grid (default the whole grid)."""
        out = self._materialise(box, list(groups) if groups is not None else list(self.sources))
        for g in self.three_d.intersection(out):
            out[g] = type(out[g])(out[g].array[..., 0], out[g].affine, out[g].meta)
        return out

    def _materialise(self, box: Box | None, names: list[str]) -> dict[str, Image]:
        self._calls += 1
        out = {}
        for index, group in enumerate(names):
            source = self.sources[group]
            shape = self.shapes[group]
            region: Box = box if box is not None else ((0, 0, 0), shape)
            steps, deferred = self.steps[group], self.deferred[group]
            whole = box is None or (tuple(region[0]) == (0, 0, 0) and tuple(region[1]) == shape)
            if not steps and not deferred and whole:
                out[group] = source
                continue
            if source.is_label:
                array = resample(source.array, steps, region, nearest=True)
            else:
                array = resample(self._float_source(group), steps, region, nearest=False)
                for item in deferred:
                    rng = np.random.default_rng([item.seed, self._calls, index])
                    spacing = np.linalg.norm(self.affines[group][:3, :3], axis=0)
                    array = item.op.apply(array, item.params, rng, region[0], shape, spacing)
            affine = self.affines[group].copy()
            affine[:3, 3] = affine[:3, :3] @ np.asarray(region[0], dtype=float) + affine[:3, 3]
            meta = source.meta
            if not whole:
                meta = meta.replace(extra={**dict(meta.extra), "patch_start": [int(v) for v in region[0]]})
            out[group] = (LabelMap if source.is_label else Image)(array, affine, meta)
        return out

    def _float_source(self, group: str) -> np.ndarray:
        if group not in self._float:
            self._float[group] = np.asarray(self.sources[group].array, dtype=np.float32)
        return self._float[group]


class Compose:
    """Augmentations applied in sequence; spatial runs are fused into one resampling per group."""

    def __init__(self, transforms: Sequence[Augmentation]) -> None:
        for t in transforms:
            if not isinstance(t, Augmentation):
                raise InputError(f"Compose: {t!r} is not an Augmentation")
        self.transforms = list(transforms)

    def lazy(self, sample: Mapping[str, Image], rng: np.random.Generator | int) -> LazySample:
        """Draw every parameter now; apply regional steps now, spatial and pointwise ones when materialised."""
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        state = LazySample(sample)
        seeds = rng.integers(0, 2**63 - 1, size=len(self.transforms))
        for op, seed in zip(self.transforms, seeds):
            op_rng = np.random.default_rng(int(seed))
            if op_rng.random() >= op.p:
                continue
            groups = op.targets(state.is_label)
            if not groups:
                continue
            if isinstance(op, SpatialAugmentation):
                first = groups[0]
                for g in groups[1:]:
                    if state.shapes[g] != state.shapes[first] or not np.allclose(state.affines[g], state.affines[first], atol=1e-3):
                        raise GeometryError(
                            f"{type(op).__name__}: groups '{first}' and '{g}' are on different grids; "
                            "spatial augmentation needs them on one grid (resample first)"
                        )
                drawn = op.draw(op_rng, state.shapes[first], state.affines[first])
                if drawn is not None:
                    for g in groups:
                        state.push(g, drawn)
                continue
            assert isinstance(op, IntensityAugmentation)
            for g in groups:
                params = op.draw(op_rng, lambda g=g: state.channel_ranges(g))
                if op.kind == "pointwise":
                    state.deferred[g].append(_Deferred(op, params, int(op_rng.integers(2**63 - 1))))
                else:
                    state.settle(g)
                    image = state.sources[g]
                    array = np.asarray(image.array, dtype=np.float32)
                    out = op.apply(array, params, op_rng, (0, 0, 0), image.spatial_shape, image.spacing)
                    state.sources[g] = image.with_array(out)
                    state._float.pop(g, None)
        return state

    def __call__(self, sample: Mapping[str, Image], rng: np.random.Generator | int) -> dict[str, Image]:
        """The augmented sample, every group on its whole output grid."""
        return self.lazy(sample, rng).materialise()

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


# ---------------------------------------------------------------------------------------------
def _rotation(angles: np.ndarray) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _range(value: float | Range, *, around: float, name: str, lower: float | None = None) -> Range:
    """A (low, high) pair; a single number v means (around - v, around + v) (or (lower, v) when lower is set)."""
    if isinstance(value, (int, float)):
        low, high = (lower, float(value)) if lower is not None else (around - float(value), around + float(value))
    else:
        low, high = _pair(value, name)
    if low > high:
        raise InputError(f"{name}=({low}, {high}): the low end is above the high end; swap them")
    return float(low), float(high)


def _pair(value: Any, name: str) -> Range:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{name}={value!r}: give two numbers (low, high)") from None
    return low, high
