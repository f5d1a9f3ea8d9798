"""Metrics against hand-computed values and MONAI (Dice, HD95 in mm with anisotropic spacing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medpipes.core.errors import InputError
from medpipes.core.image import LabelMap
from medpipes.core.models.metrics import (
    accuracy,
    auc,
    dice_per_label,
    hd95_per_label,
    iou_per_label,
    mse,
    segmentation_scores,
    sensitivity_per_label,
    specificity_per_label,
)


@pytest.fixture
def monai_metrics():
    """MONAI (the bench and test extras) for comparisons; these tests skip where it is not installed."""
    return pytest.importorskip("monai.metrics")


PRED = np.array([[1, 1, 0, 0, 2], [1, 0, 0, 2, 2]])
REF = np.array([[1, 1, 1, 0, 2], [0, 0, 0, 2, 0]])
# label 1: TP 2, FP 1, FN 1, TN 6; label 2: TP 2, FP 1, FN 0, TN 7


def test_overlap_metrics_match_hand_counts():
    assert dice_per_label(PRED, REF) == {1: pytest.approx(4 / 6), 2: pytest.approx(4 / 5)}
    assert iou_per_label(PRED, REF) == {1: pytest.approx(2 / 4), 2: pytest.approx(2 / 3)}
    assert sensitivity_per_label(PRED, REF) == {1: pytest.approx(2 / 3), 2: pytest.approx(1.0)}
    assert specificity_per_label(PRED, REF) == {1: pytest.approx(6 / 7), 2: pytest.approx(7 / 8)}


def test_a_label_absent_from_both_is_nan_not_a_silent_score():
    scores = dice_per_label(PRED, REF, labels=[1, 7])
    assert scores[1] == pytest.approx(4 / 6) and math.isnan(scores[7])


def _blobs(shape=(24, 20, 16), seed=0):
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    labels = []
    for _ in range(2):
        lab = np.zeros(shape, dtype=np.int64)
        for value, radius in ((1, 6.0), (2, 3.5)):
            centre = rng.uniform(5, np.array(shape) - 5)
            lab[((grid - centre[:, None, None, None]) ** 2).sum(0) < radius**2] = value
        labels.append(lab)
    return labels


def _one_hot(label: np.ndarray, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(label), classes).movedim(-1, 0).unsqueeze(0).float()


def test_dice_equals_monai_dice_metric(monai_metrics):
    pred, ref = _blobs()
    ours = dice_per_label(pred, ref, labels=[1, 2])
    theirs = monai_metrics.DiceMetric(include_background=False)(_one_hot(pred, 3), _one_hot(ref, 3))[0]
    assert [ours[1], ours[2]] == pytest.approx(theirs.tolist(), abs=1e-6)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # raised inside MONAI's own edge code
def test_hd95_in_mm_equals_monai_with_anisotropic_spacing(monai_metrics):
    pred, ref = _blobs(seed=3)
    spacing = (0.8, 1.0, 2.5)
    ours = hd95_per_label(pred, ref, labels=[1, 2], spacing_mm=spacing)
    theirs = monai_metrics.compute_hausdorff_distance(
        _one_hot(pred, 3), _one_hot(ref, 3), include_background=False, percentile=95, spacing=spacing
    )[0]
    assert [ours[1], ours[2]] == pytest.approx(theirs.tolist(), rel=1e-5)


def test_hd95_of_two_single_voxels_is_their_distance_in_mm():
    pred = np.zeros((5, 5, 9), dtype=np.uint8)
    ref = np.zeros_like(pred)
    pred[2, 2, 1] = 1
    ref[2, 2, 5] = 1
    assert hd95_per_label(pred, ref, spacing_mm=(1.0, 1.0, 2.5)) == {1: pytest.approx(10.0)}


def test_hd95_is_zero_for_identical_masks_inf_when_one_is_empty_nan_when_both_are():
    pred, _ = _blobs()
    assert hd95_per_label(pred, pred, labels=[1]) == {1: 0.0}
    assert hd95_per_label(pred, np.zeros_like(pred), labels=[1]) == {1: math.inf}
    assert math.isnan(hd95_per_label(np.zeros_like(pred), np.zeros_like(pred), labels=[1])[1])


def test_label_maps_bring_their_spacing_and_must_share_a_grid():
    pred = np.zeros((5, 5, 9), dtype=np.uint8)
    ref = np.zeros_like(pred)
    pred[2, 2, 1] = 1
    ref[2, 2, 5] = 1
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    assert hd95_per_label(LabelMap(pred, affine), LabelMap(ref, affine)) == {1: pytest.approx(12.0)}
    moved = affine.copy()
    moved[0, 3] = 5.0
    with pytest.raises(InputError, match="not on the same grid"):
        dice_per_label(LabelMap(pred, affine), LabelMap(ref, moved))


def test_segmentation_scores_give_one_row_per_label():
    rows = segmentation_scores(PRED[..., None], REF[..., None])
    assert [r["label"] for r in rows] == [1, 2]
    assert rows[0]["dice"] == pytest.approx(4 / 6) and rows[1]["specificity"] == pytest.approx(7 / 8)
    assert set(rows[0]) == {"label", "dice", "iou", "sensitivity", "specificity", "hd95_mm"}


def test_accuracy_auc_and_mse_match_hand_values():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx(0.75)
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: pairs won 3 of 4
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert mse([1.0, 3.0], [0.0, 1.0]) == pytest.approx(2.5)


def test_auc_refuses_non_binary_or_one_class_truth():
    with pytest.raises(InputError, match="binary truth"):
        auc([0.1, 0.2], [1, 1])
    with pytest.raises(InputError, match="binary truth"):
        auc([0.1, 0.2, 0.3], [0, 1, 2])


def test_shape_mismatch_is_refused_with_both_shapes():
    with pytest.raises(InputError, match=r"\(2, 5\) differs from reference shape \(2, 4\)"):
        dice_per_label(PRED, REF[:, :4])
