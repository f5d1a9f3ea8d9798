"""Whole-volume and slice-wise inference: padding to the network's divisor, slices along any axis, Images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medpipes.core.errors import InputError
from medpipes.core.image import Image
from medpipes.core.inference import infer_patches, infer_slices, infer_whole
from medpipes.core.models import UNet


def test_whole_volume_pads_an_odd_size_to_the_unet_divisor_and_crops_back():
    torch.manual_seed(0)
    net = UNet(spatial_dims=3, depth=3, base_filters=4).eval()
    x = torch.randn(2, 1, 13, 16, 10)
    out = infer_whole(net, x, batch_size=1)
    assert out.shape == (2, 2, 13, 16, 10)
    padded = F.pad(x, (1, 1, 0, 0, 1, 2))  # 13 -> 16 (1 before, 2 after), 10 -> 12
    with torch.no_grad():
        expected = net(padded)[:, :, 1:14, :, 1:11]
    assert torch.allclose(out, expected, atol=1e-5)  # one image per pass vs two: conv rounding differs


class InPlace(nn.Module):
    """A careless imported model that scales its input in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul_(2.0)


def test_a_model_that_works_in_place_never_changes_the_callers_data():
    x = torch.ones(1, 1, 4, 4, 4)
    assert torch.equal(infer_whole(InPlace(), x), torch.full((1, 1, 4, 4, 4), 2.0))
    assert torch.equal(infer_slices(InPlace(), x), torch.full((1, 1, 4, 4, 4), 2.0))
    assert torch.equal(infer_patches(InPlace(), x, (2, 2, 2), overlap=0.5), torch.full((1, 1, 4, 4, 4), 2.0))
    assert torch.equal(x, torch.ones(1, 1, 4, 4, 4))


def test_whole_volume_sigmoid_activation_and_input_left_untouched():
    torch.manual_seed(0)
    net = UNet(spatial_dims=3, depth=2, base_filters=4, out_channels=1).eval()
    x = torch.randn(1, 1, 8, 8, 8)
    before = x.clone()
    out = infer_whole(net, x, activation="sigmoid")
    with torch.no_grad():
        assert torch.allclose(out, torch.sigmoid(net(x)), atol=1e-6)
    assert torch.equal(x, before)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slicewise_applies_the_2d_network_to_every_slice_of_the_chosen_axis(axis):
    torch.manual_seed(1)
    net = UNet(spatial_dims=2, in_channels=2, out_channels=3, depth=2, base_filters=4).eval()
    x = torch.randn(1, 2, 9, 7, 6)
    out = infer_slices(net, x, axis=axis, batch_size=4)
    assert out.shape == (1, 3, 9, 7, 6)
    k = 3
    index = [slice(None)] * 5
    index[2 + axis] = k
    one_slice = x[tuple(index)]
    with torch.no_grad():
        expected = infer_whole(net, one_slice)
    assert torch.allclose(out[tuple(index)], expected, atol=1e-6)


def test_slicewise_on_an_image_returns_an_image_on_its_grid():
    net = UNet(spatial_dims=2, depth=2, base_filters=4).eval()
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    image = Image(np.random.default_rng(0).normal(size=(10, 12, 5)).astype(np.float32), affine)
    out = infer_slices(net, image, activation="softmax")
    assert isinstance(out, Image) and out.shape == (10, 12, 5, 2)
    assert np.array_equal(out.affine, affine)


def test_whole_volume_tta_averages_flips():
    torch.manual_seed(2)
    net = nn.Conv3d(1, 2, 3, padding=1).eval()
    x = torch.randn(1, 1, 6, 6, 6)
    with torch.no_grad():
        expected = (net(x) + net(x.flip(3)).flip(3) + net(x.flip(4)).flip(4) + net(x.flip(3, 4)).flip(3, 4)) / 4
    assert torch.allclose(infer_whole(net, x, tta_flip_axes=(1, 2)), expected, atol=1e-6)


def test_wrong_network_kind_and_channel_mismatch_are_clear_errors():
    net3d = UNet(spatial_dims=3, depth=1, base_filters=2)
    with pytest.raises(InputError, match="infer_slices needs a 2D network"):
        infer_slices(net3d, torch.zeros(1, 1, 4, 4, 4))
    net2d = UNet(spatial_dims=2, in_channels=3, depth=1, base_filters=2)
    with pytest.raises(InputError, match=r"data has 1 channel\(s\) but the network expects 3 input channel\(s\)"):
        infer_slices(net2d, torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(InputError, match=r"data has 2 channel\(s\) but the network expects 1"):
        infer_whole(net3d, torch.zeros(1, 2, 4, 4, 4))
    with pytest.raises(InputError, match="use infer_slices for 2D networks"):
        infer_whole(net2d, Image(np.zeros((4, 4, 4), np.float32), np.eye(4)))


class RecordsAutocast(nn.Module):
    """Returns its input as float32 plus a flag channel: 1 where it ran under CPU bfloat16 autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flag = float(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return torch.cat([x, torch.full_like(x, flag)], dim=1)


@pytest.mark.parametrize("infer", ["whole", "patches"])
def test_bfloat16_precision_runs_the_network_under_autocast_and_returns_float32(infer):
    x = torch.randn(1, 1, 8, 8, 8)
    run = (lambda **kw: infer_whole(RecordsAutocast(), x, **kw)) if infer == "whole" else (
        lambda **kw: infer_patches(RecordsAutocast(), x, (4, 4, 4), overlap=0.0, **kw)
    )
    full, half = run(precision="float32"), run(precision="bfloat16")
    assert full.dtype == half.dtype == torch.float32
    assert torch.all(full[:, 1] == 0) and torch.all(half[:, 1] == 1)
    assert torch.allclose(full[:, 0], x[:, 0], atol=1e-6)  # patch blending divides by the weight sum


def test_bfloat16_unet_output_is_close_to_float32():
    torch.manual_seed(0)
    net = UNet(spatial_dims=3, depth=3, base_filters=8, norm="instance").eval()
    x = torch.randn(1, 1, 24, 24, 24)
    full = infer_whole(net, x, activation="softmax")
    half = infer_whole(net, x, activation="softmax", precision="bfloat16")
    assert (full - half).abs().max() < 0.05  # bfloat16 keeps 8 bits of mantissa
    assert (full - half).abs().mean() < 0.005


def test_auto_precision_follows_the_devices_native_support_and_bad_names_are_refused():
    from medpipes.core.inference.common import bfloat16_native, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bfloat16" if bfloat16_native(cpu) else "float32")
    assert resolve_precision("float32", cpu) == "float32"
    with pytest.raises(InputError, match="precision = 'half'"):
        infer_whole(UNet(spatial_dims=3, depth=2, base_filters=4).eval(), torch.zeros(1, 1, 4, 4, 4), precision="half")
