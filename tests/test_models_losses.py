"""Losses against hand-computed values and, where the definitions agree, against MONAI."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medpipes.core.errors import InputError
from medpipes.core.models import build_loss
from medpipes.core.models.losses import (
    CrossEntropyLoss,
    DiceCELoss,
    FocalLoss,
    JaccardLoss,
    SoftDiceLoss,
    TverskyLoss,
)


@pytest.fixture
def monai_losses():
    """MONAI (the bench and test extras) for comparisons; these tests skip where it is not installed."""
    return pytest.importorskip("monai.losses")


def _logits_for(probabilities: list[list[float]]) -> torch.Tensor:
    """(1, classes, voxels) logits whose softmax is exactly ``probabilities`` (classes x voxels)."""
    return torch.tensor(probabilities, dtype=torch.float64).log().unsqueeze(0)


def _random_case(classes=3, shape=(2, 6, 5, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], classes, *shape[1:], generator=g, dtype=torch.float64)
    target = torch.randint(0, classes, shape, generator=g)
    return logits, target


def test_soft_dice_matches_a_hand_computed_value():
    # 2 classes, 4 voxels; target = [0, 0, 1, 1]
    probs = [[0.9, 0.6, 0.2, 0.1], [0.1, 0.4, 0.8, 0.9]]
    target = torch.tensor([[0, 0, 1, 1]])
    tp0, fp0, fn0 = 0.9 + 0.6, 0.2 + 0.1, 0.1 + 0.4
    tp1, fp1, fn1 = 0.8 + 0.9, 0.1 + 0.4, 0.2 + 0.1
    expected = 1 - ((2 * tp0) / (2 * tp0 + fp0 + fn0) + (2 * tp1) / (2 * tp1 + fp1 + fn1)) / 2
    loss = SoftDiceLoss(smooth=0.0)(_logits_for(probs), target)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_jaccard_and_tversky_match_hand_computed_values():
    probs = [[0.7, 0.2], [0.3, 0.8]]
    target = torch.tensor([[0, 1]])
    tp0, fp0, fn0 = 0.7, 0.2, 0.3
    tp1, fp1, fn1 = 0.8, 0.3, 0.2
    jaccard = 1 - (tp0 / (tp0 + fp0 + fn0) + tp1 / (tp1 + fp1 + fn1)) / 2
    tversky = 1 - (tp0 / (tp0 + 0.3 * fp0 + 0.7 * fn0) + tp1 / (tp1 + 0.3 * fp1 + 0.7 * fn1)) / 2
    assert JaccardLoss(smooth=0.0)(_logits_for(probs), target).item() == pytest.approx(jaccard, abs=1e-12)
    assert TverskyLoss(alpha=0.3, beta=0.7, smooth=0.0)(_logits_for(probs), target).item() == pytest.approx(
        tversky, abs=1e-12
    )


def test_focal_loss_matches_a_hand_computed_value_and_is_cross_entropy_at_gamma_0():
    probs = [[0.9, 0.4], [0.1, 0.6]]
    target = torch.tensor([[0, 0]])
    expected = (-(0.1**2) * math.log(0.9) - (0.6**2) * math.log(0.4)) / 2
    assert FocalLoss(gamma=2.0)(_logits_for(probs), target).item() == pytest.approx(expected, abs=1e-12)
    logits, labels = _random_case()
    assert FocalLoss(gamma=0.0)(logits, labels).item() == pytest.approx(
        F.cross_entropy(logits, labels).item(), abs=1e-12
    )


def test_bce_matches_a_hand_computed_value():
    logits = torch.tensor([[[0.0, 2.0]]], dtype=torch.float64)  # one sigmoid channel, two voxels
    target = torch.tensor([[1, 0]])
    expected = (math.log(2) + math.log(1 + math.exp(2.0))) / 2
    assert build_loss("bce")(logits, target).item() == pytest.approx(expected, abs=1e-12)


def test_mse_and_mae_match_hand_computed_values():
    pred, truth = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 0.0, 1.0])
    assert build_loss("mse")(pred, truth).item() == pytest.approx((0 + 4 + 9) / 3)
    assert build_loss("mae")(pred, truth).item() == pytest.approx((0 + 2 + 3) / 3)


@pytest.mark.parametrize("include_background", [True, False])
def test_soft_dice_equals_monai_dice_loss(include_background, monai_losses):
    logits, target = _random_case()
    ours = SoftDiceLoss(include_background=include_background)(logits, target)
    theirs = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, include_background=include_background)(
        logits, target.unsqueeze(1)
    )
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-10)


def test_soft_dice_with_sigmoid_equals_monai(monai_losses):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 6, 5, 4, generator=g, dtype=torch.float64)
    target = torch.randint(0, 2, (2, 6, 5, 4), generator=g)
    ours = SoftDiceLoss(activation="sigmoid")(logits, target)
    theirs = monai_losses.DiceLoss(sigmoid=True)(logits, target.unsqueeze(1).double())
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-10)


def test_tversky_equals_monai_tversky_loss(monai_losses):
    logits, target = _random_case()
    ours = TverskyLoss(alpha=0.3, beta=0.7)(logits, target)
    theirs = monai_losses.TverskyLoss(softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7)(logits, target.unsqueeze(1))
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-10)


def test_sigmoid_focal_equals_monai_focal_loss(monai_losses):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 2, logits.shape, generator=g).double()
    ours = FocalLoss(activation="sigmoid", gamma=2.0)(logits, target)
    theirs = monai_losses.FocalLoss(gamma=2.0)(logits, target)  # MONAI computes in float32
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def test_dice_ce_is_the_weighted_sum_of_its_parts_and_ce_is_torch_cross_entropy():
    logits, target = _random_case()
    dice = SoftDiceLoss()(logits, target)
    ce = CrossEntropyLoss()(logits, target)
    assert ce.item() == pytest.approx(F.cross_entropy(logits, target).item(), abs=1e-12)
    assert DiceCELoss(dice_weight=0.7, ce_weight=2.0)(logits, target).item() == pytest.approx(
        0.7 * dice.item() + 2.0 * ce.item(), abs=1e-12
    )


def test_targets_with_a_channel_axis_or_one_hot_give_the_same_loss():
    logits, target = _random_case()
    one_hot = F.one_hot(target, 3).movedim(-1, 1).double()
    base = SoftDiceLoss()(logits, target).item()
    assert SoftDiceLoss()(logits, target.unsqueeze(1)).item() == pytest.approx(base)
    assert SoftDiceLoss()(logits, one_hot).item() == pytest.approx(base)


def test_perfect_prediction_gives_zero_dice_loss():
    target = torch.tensor([[0, 1, 1, 0]])
    logits = F.one_hot(target, 2).movedim(-1, 1).double() * 50
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_gradients_reach_the_logits():
    logits, target = _random_case()
    logits.requires_grad_(True)
    build_loss("dice_ce")(logits, target).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_unknown_loss_lists_the_valid_names():
    with pytest.raises(InputError, match=r"loss = 'hinge' is not valid; choose one of dice, ce, bce, dice_ce"):
        build_loss("hinge")
    with pytest.raises(InputError, match=r"loss 'dice'.*unexpected keyword"):
        build_loss("dice", gamma=2)


def test_target_that_does_not_fit_the_logits_is_refused():
    logits, _ = _random_case()
    with pytest.raises(InputError, match=r"target shape \[2, 6, 5\] does not fit logits"):
        SoftDiceLoss()(logits, torch.zeros(2, 6, 5, dtype=torch.long))
