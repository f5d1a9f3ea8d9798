"""Losses for segmentation (soft Dice, CE/BCE, Dice+CE, focal, Tversky, Jaccard) and regression (MSE, MAE).

Segmentation losses take logits (batch, classes, *spatial) and a target of either label indices
(batch, *spatial) or (batch, 1, *spatial), or one-hot / soft targets shaped like the logits.
``activation`` is ``softmax`` (mutually exclusive classes) or ``sigmoid`` (independent labels).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from medpipes.core.errors import InputError

ACTIVATIONS = ("softmax", "sigmoid")


def one_hot_target(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The target as float one-hot shaped like ``logits`` (label indices are expanded, soft targets kept)."""
    if target.shape == logits.shape and target.is_floating_point():
        return target
    if target.ndim == logits.ndim and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise InputError(
            f"target shape {list(target.shape)} does not fit logits {list(logits.shape)}; give label indices "
            "(batch, *spatial) or one-hot targets shaped like the logits"
        )
    classes = logits.shape[1]
    labels = target.long()
    if classes == 1:  # a single sigmoid channel: the target is the foreground mask itself
        return labels.unsqueeze(1).to(logits.dtype)
    return F.one_hot(labels, classes).movedim(-1, 1).to(logits.dtype)


def _probabilities(logits: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "softmax" and logits.shape[1] > 1:
        return logits.softmax(dim=1)
    return logits.sigmoid()


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise InputError(f"activation = {activation!r} is not valid; choose one of {', '.join(ACTIVATIONS)}")


class _OverlapLoss(nn.Module):
    """Shared machinery of Dice, Jaccard and Tversky: per (sample, class) overlap terms over space."""

    def __init__(self, activation: str = "softmax", include_background: bool = True, smooth: float = 1e-5) -> None:
        super().__init__()
        _check_activation(activation)
        self.activation = activation
        self.include_background = include_background
        self.smooth = smooth

    def terms(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(true positives, false positives, false negatives) as soft sums, each (batch, classes)."""
        prob = _probabilities(logits, self.activation)
        truth = one_hot_target(target, logits)
        if not self.include_background and prob.shape[1] > 1:
            prob, truth = prob[:, 1:], truth[:, 1:]
        axes = tuple(range(2, logits.ndim))
        tp = (prob * truth).sum(axes)
        fp = (prob * (1 - truth)).sum(axes)
        fn = ((1 - prob) * truth).sum(axes)
        return tp, fp, fn


class SoftDiceLoss(_OverlapLoss):
    """1 - (2 TP + s) / (2 TP + FP + FN + s), averaged over samples and classes (Milletari et al. 2016)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tp, fp, fn = self.terms(logits, target)
        return (1 - (2 * tp + self.smooth) / (2 * tp + fp + fn + self.smooth)).mean()


class JaccardLoss(_OverlapLoss):
    """Soft IoU loss: 1 - (TP + s) / (TP + FP + FN + s)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tp, fp, fn = self.terms(logits, target)
        return (1 - (tp + self.smooth) / (tp + fp + fn + self.smooth)).mean()


class TverskyLoss(_OverlapLoss):
    """1 - (TP + s) / (TP + alpha FP + beta FN + s) (Salehi et al. 2017); alpha = beta = 0.5 is Dice."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = alpha
        self.beta = beta

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tp, fp, fn = self.terms(logits, target)
        return (1 - (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)).mean()


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy on label indices, or BCE-with-logits per channel when ``activation='sigmoid'``."""

    def __init__(self, activation: str = "softmax", class_weights: list[float] | None = None) -> None:
        super().__init__()
        _check_activation(activation)
        self.activation = activation
        self.register_buffer("class_weights", torch.tensor(class_weights) if class_weights else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid" or logits.shape[1] == 1:
            truth = one_hot_target(target, logits)
            weight = None if self.class_weights is None else self.class_weights.view(1, -1, *([1] * (logits.ndim - 2)))
            return F.binary_cross_entropy_with_logits(logits, truth, pos_weight=weight)
        if target.shape == logits.shape and target.is_floating_point():
            return F.cross_entropy(logits, target, weight=self.class_weights)
        labels = target[:, 0] if target.ndim == logits.ndim else target
        return F.cross_entropy(logits, labels.long(), weight=self.class_weights)


class DiceCELoss(nn.Module):
    """dice_weight * soft Dice + ce_weight * cross-entropy (the nnU-Net default)."""

    def __init__(
        self,
        activation: str = "softmax",
        include_background: bool = True,
        smooth: float = 1e-5,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.dice = SoftDiceLoss(activation=activation, include_background=include_background, smooth=smooth)
        self.ce = CrossEntropyLoss(activation=activation)
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice_weight * self.dice(logits, target) + self.ce_weight * self.ce(logits, target)


class FocalLoss(nn.Module):
    """Mean of -alpha_t (1 - p_t)^gamma log p_t (Lin et al. 2017); softmax over classes or sigmoid per channel.

    ``alpha`` (sigmoid only) weighs positives by alpha and negatives by 1 - alpha; None weighs all alike.
    """

    def __init__(self, activation: str = "softmax", gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        _check_activation(activation)
        self.activation = activation
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        truth = one_hot_target(target, logits)
        if self.activation == "softmax" and logits.shape[1] > 1:
            log_p = logits.log_softmax(dim=1)
            log_pt = (log_p * truth).sum(dim=1)
            return (-((1 - log_pt.exp()) ** self.gamma) * log_pt).mean()
        bce = F.binary_cross_entropy_with_logits(logits, truth, reduction="none")
        pt = torch.exp(-bce)
        loss = (1 - pt) ** self.gamma * bce
        if self.alpha is not None:
            loss = loss * (self.alpha * truth + (1 - self.alpha) * (1 - truth))
        return loss.mean()


class MSELoss(nn.MSELoss):
    """Mean squared error (regression; the target is shaped like the output)."""


class MAELoss(nn.L1Loss):
    """Mean absolute error (regression; the target is shaped like the output)."""


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "dice": SoftDiceLoss,
    "ce": CrossEntropyLoss,
    "bce": lambda **kw: CrossEntropyLoss(activation="sigmoid", **kw),
    "dice_ce": DiceCELoss,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
    "jaccard": JaccardLoss,
    "mse": MSELoss,
    "mae": MAELoss,
}


def build_loss(name: str, **params: Any) -> nn.Module:
    """The loss called ``name`` (dice, ce, bce, dice_ce, focal, tversky, jaccard, mse, mae) with ``params``."""
    if name not in LOSSES:
        raise InputError(f"loss = {name!r} is not valid; choose one of {', '.join(LOSSES)}")
    try:
        return LOSSES[name](**params)
    except TypeError as exc:
        raise InputError(f"loss {name!r}: {exc}; check the loss parameters in the config") from None
