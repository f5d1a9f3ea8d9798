"""Evaluation metrics on label maps (Dice, IoU, sensitivity, specificity, HD95 in mm) and on scores/values.

Label inputs are integer numpy arrays or ``LabelMap``s on the same grid (then the spacing comes from
the reference's affine). Per-label functions return ``{label: value}``; a value that is undefined
(e.g. Dice where a label is absent from both) is NaN, never a silent 0 or 1.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
from scipy import ndimage, stats

from medpipes.core.errors import InputError
from medpipes.core.image import Image


def _labels_and_spacing(
    pred: np.ndarray | Image, ref: np.ndarray | Image, spacing_mm: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    if isinstance(pred, Image) and isinstance(ref, Image) and not pred.same_grid(ref):
        raise InputError(
            f"prediction {pred.spatial_shape} and reference {ref.spatial_shape} are not on the same grid; "
            "resample the prediction onto the reference first"
        )
    if spacing_mm is None and isinstance(ref, Image):
        spacing_mm = ref.spacing
    p = np.asarray(pred.array if isinstance(pred, Image) else pred)
    r = np.asarray(ref.array if isinstance(ref, Image) else ref)
    if p.shape != r.shape:
        raise InputError(f"prediction shape {p.shape} differs from reference shape {r.shape}; they must match")
    spacing = tuple(float(s) for s in (spacing_mm if spacing_mm is not None else (1.0,) * r.ndim))
    if len(spacing) != r.ndim:
        raise InputError(f"spacing_mm {list(spacing)} needs {r.ndim} values, one per array axis")
    return p, r, spacing


def _label_list(p: np.ndarray, r: np.ndarray, labels: Iterable[int] | None) -> list[int]:
    if labels is not None:
        return [int(v) for v in labels]
    return [int(v) for v in np.union1d(np.unique(p), np.unique(r)) if v != 0]


def _counts(p: np.ndarray, r: np.ndarray, label: int) -> tuple[int, int, int, int]:
    pm, rm = p == label, r == label
    tp = int(np.count_nonzero(pm & rm))
    fp = int(np.count_nonzero(pm & ~rm))
    fn = int(np.count_nonzero(~pm & rm))
    return tp, fp, fn, pm.size - tp - fp - fn


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def _overlap_per_label(
    pred: np.ndarray | Image,
    ref: np.ndarray | Image,
    labels: Iterable[int] | None,
    score: Callable[[int, int, int, int], float],
) -> dict[int, float]:
    """``score(tp, fp, fn, tn)`` for each label."""
    p, r, _ = _labels_and_spacing(pred, ref)
    return {label: score(*_counts(p, r, label)) for label in _label_list(p, r, labels)}


def dice_per_label(
    pred: np.ndarray | Image, ref: np.ndarray | Image, labels: Iterable[int] | None = None
) -> dict[int, float]:
    """2|P&R| / (|P| + |R|) per label (default: every non-zero label in either); NaN when absent from both."""
    return _overlap_per_label(pred, ref, labels, lambda tp, fp, fn, tn: _ratio(2 * tp, 2 * tp + fp + fn))


def iou_per_label(
    pred: np.ndarray | Image, ref: np.ndarray | Image, labels: Iterable[int] | None = None
) -> dict[int, float]:
    """|P&R| / |P|R| (Jaccard index) per label; NaN when absent from both."""
    return _overlap_per_label(pred, ref, labels, lambda tp, fp, fn, tn: _ratio(tp, tp + fp + fn))


def sensitivity_per_label(
    pred: np.ndarray | Image, ref: np.ndarray | Image, labels: Iterable[int] | None = None
) -> dict[int, float]:
    """TP / (TP + FN) (recall) per label; NaN when the label is absent from the reference."""
    return _overlap_per_label(pred, ref, labels, lambda tp, fp, fn, tn: _ratio(tp, tp + fn))


def specificity_per_label(
    pred: np.ndarray | Image, ref: np.ndarray | Image, labels: Iterable[int] | None = None
) -> dict[int, float]:
    """TN / (TN + FP) per label; NaN when the reference is that label everywhere."""
    return _overlap_per_label(pred, ref, labels, lambda tp, fp, fn, tn: _ratio(tn, tn + fp))


def _surface(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with a face-neighbour outside the mask (or on the array border)."""
    return mask & ~ndimage.binary_erosion(mask)


def hd95_per_label(
    pred: np.ndarray | Image,
    ref: np.ndarray | Image,
    labels: Iterable[int] | None = None,
    spacing_mm: Sequence[float] | None = None,
) -> dict[int, float]:
    """Symmetric 95th-percentile Hausdorff distance in mm between label surfaces (MONAI's definition).

    For each direction, the distances from one surface's voxels to the nearest voxel of the other
    surface (Euclidean, in mm using ``spacing_mm`` or the reference Image's spacing); the 95th
    percentile of each, then the larger. Inf when the label is in only one; NaN when in neither.
    """
    p, r, spacing = _labels_and_spacing(pred, ref, spacing_mm)
    out = {}
    for label in _label_list(p, r, labels):
        pm, rm = p == label, r == label
        if not pm.any() and not rm.any():
            out[label] = float("nan")
            continue
        if not pm.any() or not rm.any():
            out[label] = float("inf")
            continue
        box = _bounding_box(pm | rm)  # distances only need the union's bounding box plus a margin
        pm, rm = pm[box], rm[box]
        sp, sr = _surface(pm), _surface(rm)
        to_ref = ndimage.distance_transform_edt(~sr, sampling=spacing)[sp]
        to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)[sr]
        out[label] = float(max(np.percentile(to_ref, 95), np.percentile(to_pred, 95)))
    return out


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The mask's bounding box grown by one voxel on every side (clipped to the array)."""
    coords = np.argwhere(mask)
    lo = np.maximum(coords.min(axis=0) - 1, 0)
    hi = np.minimum(coords.max(axis=0) + 2, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def segmentation_scores(
    pred: np.ndarray | Image,
    ref: np.ndarray | Image,
    labels: Iterable[int] | None = None,
    spacing_mm: Sequence[float] | None = None,
) -> list[dict[str, float]]:
    """One row per label: label, dice, iou, sensitivity, specificity, hd95_mm (for a metrics CSV)."""
    p, r, spacing = _labels_and_spacing(pred, ref, spacing_mm)
    chosen = _label_list(p, r, labels)
    dice = dice_per_label(p, r, chosen)
    iou = iou_per_label(p, r, chosen)
    sens = sensitivity_per_label(p, r, chosen)
    spec = specificity_per_label(p, r, chosen)
    hd = hd95_per_label(p, r, chosen, spacing)
    return [
        {
            "label": lab,
            "dice": dice[lab],
            "iou": iou[lab],
            "sensitivity": sens[lab],
            "specificity": spec[lab],
            "hd95_mm": hd[lab],
        }
        for lab in chosen
    ]


def accuracy(pred: np.ndarray | Sequence[int], ref: np.ndarray | Sequence[int]) -> float:
    """Fraction of entries (cases or voxels) where prediction equals reference."""
    p, r = np.asarray(pred), np.asarray(ref)
    if p.shape != r.shape or p.size == 0:
        raise InputError(f"accuracy needs two non-empty arrays of one shape, got {p.shape} and {r.shape}")
    return float(np.mean(p == r))


def auc(scores: np.ndarray | Sequence[float], truth: np.ndarray | Sequence[int]) -> float:
    """Area under the ROC curve of binary ``truth`` (0/1) ranked by ``scores``; ties count one half."""
    s, t = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(truth).ravel()
    if s.shape != t.shape:
        raise InputError(f"auc needs one score per case: {s.size} scores, {t.size} labels")
    positives, negatives = s[t == 1], s[t == 0]
    if positives.size == 0 or negatives.size == 0 or positives.size + negatives.size != t.size:
        raise InputError("auc needs binary truth (0/1) with at least one case of each class")
    # AUC equals the Mann-Whitney U statistic over n_pos * n_neg (scipy computes U with tie handling)
    u = stats.mannwhitneyu(positives, negatives, alternative="two-sided").statistic
    return float(u / (positives.size * negatives.size))


def mse(pred: np.ndarray | Sequence[float], ref: np.ndarray | Sequence[float]) -> float:
    """Mean squared error between two arrays of one shape."""
    p, r = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if p.shape != r.shape or p.size == 0:
        raise InputError(f"mse needs two non-empty arrays of one shape, got {p.shape} and {r.shape}")
    return float(np.mean((p - r) ** 2))
