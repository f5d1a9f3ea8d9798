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
