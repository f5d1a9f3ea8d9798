"""Patch sampling: fixed-size patches whose centres are uniform or, for a fraction, on label voxels.

The sampler works on a LazySample, so spatial augmentations pending on it are evaluated only over the
patches kept: several patches of one volume are resampled once over the box that holds them all when
that is cheaper than one resampling each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from medpipes.core.data.augment import Compose, LazySample
from medpipes.core.data.resample import Box
from medpipes.core.errors import GeometryError, InputError
from medpipes.core.image import Image

CANDIDATES = 64
"""Label voxels tried per label-centred patch before falling back to a uniform centre."""


class PatchSampler:
    """Patches of ``patch_size`` voxels; ``label_fraction`` of them centred on a voxel of ``label_group``.

    A label voxel counts when its value is in ``label_values`` (default: any value above 0), read from
    channel ``label_channel``. A patch keeps its centre unless it would leave the volume, in which case it
    is shifted inward (so a label-centred patch always contains its label voxel); an axis shorter than
    the patch is padded with zeros on both sides.
    """

    def __init__(
        self,
        patch_size: int | Sequence[int],
        *,
        label_group: str | None = None,
        label_fraction: float = 0.0,
        label_values: Sequence[int] | None = None,
        label_channel: int = 0,
    ) -> None:
        size = (int(patch_size),) * 3 if isinstance(patch_size, (int, np.integer)) else tuple(int(n) for n in patch_size)
        if len(size) != 3 or min(size) < 1:
            raise InputError(f"PatchSampler: patch_size={patch_size}; give one or three positive sizes")
        if not 0.0 <= label_fraction <= 1.0:
            raise InputError(f"PatchSampler: label_fraction={label_fraction}; use a value in [0, 1]")
        if label_fraction > 0 and label_group is None:
            raise InputError("PatchSampler: label_fraction > 0 needs label_group, the group holding the labels")
        self.patch_size: tuple[int, int, int] = size  # type: ignore[assignment]
        self.label_group = label_group
        self.label_fraction = float(label_fraction)
        self.label_values = tuple(int(v) for v in label_values) if label_values is not None else None
        self.label_channel = int(label_channel)

    def boxes(self, state: LazySample, count: int, rng: np.random.Generator) -> list[Box]:
        """``count`` patch boxes (start, size) on the state's output grid."""
        first = next(iter(state.shapes))
        shape = state.shapes[first]
        for group in state.shapes:
            if state.shapes[group] != shape or not np.allclose(state.affines[group], state.affines[first], atol=1e-3):
                raise GeometryError(
                    f"PatchSampler: groups '{first}' and '{group}' are on different grids after augmentation; "
                    "apply spatial augmentations to all groups (leave on= unset) or resample first"
                )
        use_labels = self.label_group is not None and self.label_group in state.sources
        if self.label_fraction > 0 and self.label_group is not None and not use_labels:
            raise InputError(
                f"PatchSampler: label_group '{self.label_group}' is not in the sample (groups {list(state.sources)})"
            )
        boxes = []
        for _ in range(count):
            centre = None
            if use_labels and rng.random() < self.label_fraction:
                centre = self._label_centre(state, shape, rng)
            if centre is None:
                centre = np.array([rng.integers(n) for n in shape])
            boxes.append(self._box_around(centre, shape))
        return boxes

    def patches(self, state: LazySample, count: int, rng: np.random.Generator) -> list[dict[str, Image]]:
        """``count`` patches: one dict {group: Image} each, affine placing the patch on the augmented grid."""
        boxes = self.boxes(state, count, rng)
        size = np.array(self.patch_size)
        starts = np.array([b[0] for b in boxes])
        low, high = starts.min(axis=0), (starts + size).max(axis=0)
        if np.prod(high - low) < count * np.prod(size):
            union = state.materialise(((tuple(int(v) for v in low)), tuple(int(v) for v in high - low)))  # type: ignore[arg-type]
            return [_crop(union, tuple(int(v) for v in start - low), self.patch_size) for start in starts]
        return [state.materialise(box) for box in boxes]

    def __call__(
        self, sample: Mapping[str, Image], count: int, rng: np.random.Generator | int, augmentation: Compose | None = None
    ) -> list[dict[str, Image]]:
        """Augment ``sample`` (optional) and draw ``count`` patches from it."""
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        state = (augmentation or Compose([])).lazy(sample, rng)
        return self.patches(state, count, rng)

    # --- internals ------------------------------------------------------------------------------
    def _label_mask_indices(self, labels: np.ndarray) -> np.ndarray:
        volume = labels[..., self.label_channel] if labels.ndim == 4 else labels
        mask = np.isin(volume, self.label_values) if self.label_values is not None else volume > 0
        return np.flatnonzero(mask)

    def _label_centre(self, state: LazySample, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray | None:
        group = self.label_group
        assert group is not None
        matrix = state.matrix(group)
        if matrix is None or state.deferred[group]:
            state.settle(group)  # an elastic step: the labels' new positions are known only after resampling
            matrix = np.eye(4)
        cache = state.label_index
        if cache is None or cache[0] is not state.sources[group]:
            cache = (state.sources[group], self._label_mask_indices(state.sources[group].array))
            state.label_index = cache
        flat = cache[1]
        if flat.size == 0:
            return None
        source_shape = state.sources[group].spatial_shape
        picks = flat[rng.integers(flat.size, size=CANDIDATES)]
        source_ijk = np.stack(np.unravel_index(picks, source_shape), axis=1).astype(np.float64)
        inverse = np.linalg.inv(matrix)
        out_ijk = np.rint(source_ijk @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
        inside = np.all((out_ijk >= 0) & (out_ijk < np.array(shape)), axis=1)
        if not inside.any():
            return None
        return out_ijk[int(np.argmax(inside))]

    def _box_around(self, centre: np.ndarray, shape: tuple[int, ...]) -> Box:
        start = []
        for a in range(3):
            n, p = shape[a], self.patch_size[a]
            if n >= p:
                start.append(int(np.clip(centre[a] - p // 2, 0, n - p)))
            else:
                start.append(-((p - n) // 2))
        return tuple(start), self.patch_size  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"PatchSampler(patch_size={self.patch_size}, label_group={self.label_group!r}, "
            f"label_fraction={self.label_fraction}, label_values={self.label_values})"
        )


def _crop(images: Mapping[str, Image], start: tuple[int, ...], size: tuple[int, int, int]) -> dict[str, Image]:
    out = {}
    for group, image in images.items():
        sl = tuple(slice(s, s + n) for s, n in zip(start, size))
        affine = image.affine.copy()
        affine[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=float) + affine[:3, 3]
        origin = [int(v) for v in image.meta.extra.get("patch_start", (0, 0, 0))]
        meta = image.meta.replace(extra={**dict(image.meta.extra), "patch_start": [o + s for o, s in zip(origin, start)]})
        out[group] = type(image)(np.ascontiguousarray(image.array[sl]), affine, meta)
    return out
