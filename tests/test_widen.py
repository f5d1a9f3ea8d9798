"""Widening a trained U-Net (more base filters) keeps its output exactly; other changes are refused."""

from __future__ import annotations

import pytest
import torch
from medpipes.core.errors import InputError
from medpipes.core.models import UNet
from medpipes.core.models.widen import widen_into, widening_problem


def _pair(**params: object) -> tuple[UNet, UNet]:
    torch.manual_seed(0)
    narrow = UNet(spatial_dims=3, in_channels=2, out_channels=3, depth=3, base_filters=4, **params)
    # trained-looking weights: random norm affines and running statistics, not the defaults
    for module in narrow.modules():
        for key in ("weight", "bias", "running_mean"):
            value = getattr(module, key, None)
            if isinstance(value, torch.Tensor) and value.ndim == 1:
                value.data.uniform_(0.5, 1.5)
    return narrow, UNet(spatial_dims=3, in_channels=2, out_channels=3, depth=3, base_filters=6, **params)


@pytest.mark.parametrize(
    "params",
    [{}, {"norm": "batch"}, {"upsample": "linear"}, {"pooling": "conv", "convs_per_block": 3}, {"max_filters": 12}],
    ids=["instance", "batch", "linear-upsample", "conv-pooling", "capped"],
)
def test_the_widened_network_computes_the_narrow_one(params):
    narrow, wide = _pair(**params)
    widen_into(narrow, wide)
    x = torch.randn(2, 2, 16, 16, 16)
    narrow.eval(), wide.eval()
    with torch.no_grad():
        assert torch.allclose(wide(x), narrow(x), atol=1e-4)
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in narrow.parameters())


def test_the_new_channels_learn():
    narrow, wide = _pair()
    widen_into(narrow, wide)
    wide.train()
    wide(torch.randn(1, 2, 16, 16, 16)).square().mean().backward()
    zeroed = wide.encoder[1].units[0][0].weight.grad[:8, 4:]  # old outputs reading new inputs: zero, not frozen
    assert zeroed.abs().sum() > 0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"depth": 4}, "differ in depth"),
        ({"base_filters": 2}, "narrower than the checkpoint's"),
        ({"block": "residual"}, "differ in block"),
    ],
)
def test_other_changes_are_refused_with_the_reason(change, message):
    narrow, _ = _pair()
    other = UNet(**{"spatial_dims": 3, "in_channels": 2, "out_channels": 3, "depth": 3, "base_filters": 6, **change})
    assert message in widening_problem(narrow, other)
    with pytest.raises(InputError, match=message):
        widen_into(narrow, other)


def test_group_norm_and_residual_designs_are_not_widened():
    narrow = UNet(depth=2, base_filters=8, norm="group", norm_groups=4)
    wide = UNet(depth=2, base_filters=16, norm="group", norm_groups=4)
    assert "plain blocks without group norm" in widening_problem(narrow, wide)
