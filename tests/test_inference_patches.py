"""Overlapping-patch inference: equal to whole-volume where the receptive field allows, seamless, MONAI-equal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medpipes.core.errors import InputError
from medpipes.core.image import Image, ImageMeta
from medpipes.core.inference import importance_map, infer_patches, infer_whole, patch_starts
from medpipes.core.models import UNet


class Pointwise(nn.Module):
    """1x1x1 convolutions and a non-linearity: each output voxel sees only its own input voxel."""

    def __init__(self, in_channels: int = 2, out_channels: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, 3
        self.body = nn.Sequential(nn.Conv3d(in_channels, 8, 1), nn.Tanh(), nn.Conv3d(8, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x.mean(dim=1, keepdim=True) ** 2


class Constant(nn.Module):
    """Ignores its input: every voxel of every channel gets a fixed value."""

    spatial_dims = 3

    def __init__(self, values: tuple[float, ...] = (0.25, -3.5)) -> None:
        super().__init__()
        self.values = torch.tensor(values)
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return self.values.view(1, -1, 1, 1, 1).expand(x.shape[0], -1, *x.shape[2:]).clone()


ODD_SHAPE = (37, 29, 23)


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
@pytest.mark.parametrize("overlap,batch_size", [(0.5, 1), (0.3, 4), (0.0, 2)])
def test_patch_inference_equals_whole_volume_for_a_pointwise_network(blend, overlap, batch_size):
    net = Pointwise().eval()
    x = torch.randn(2, 2, *ODD_SHAPE)
    whole = infer_whole(net, x)
    patched = infer_patches(net, x, (16, 12, 10), overlap=overlap, blend=blend, batch_size=batch_size)
    assert patched.shape == (2, 3, *ODD_SHAPE)
    assert torch.allclose(patched, whole, atol=1e-5)


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_a_constant_network_gives_a_constant_output_without_seams(blend):
    net = Constant()
    x = torch.randn(1, 1, *ODD_SHAPE)
    out = infer_patches(net, x, (16, 16, 8), overlap=0.5, blend=blend, batch_size=3)
    assert torch.allclose(out[0, 0], torch.full(ODD_SHAPE, 0.25), atol=1e-6)
    assert torch.allclose(out[0, 1], torch.full(ODD_SHAPE, -3.5), atol=1e-6)


def test_an_image_smaller_than_the_patch_is_padded_and_cropped_back():
    net = Pointwise().eval()
    x = torch.randn(1, 2, 7, 30, 5)
    out = infer_patches(net, x, (16, 16, 16), overlap=0.5)
    assert out.shape == (1, 3, 7, 30, 5)
    assert torch.allclose(out, infer_whole(net, x), atol=1e-5)
    seen = Constant()
    infer_patches(seen, x[:, :1], (16, 16, 16), overlap=0.5)
    assert all(shape[2:] == (16, 16, 16) for shape in seen.calls)


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_a_unet_through_our_patches_equals_monai_sliding_window(blend):
    monai_inferers = pytest.importorskip("monai.inferers")
    torch.manual_seed(0)
    net = UNet(spatial_dims=3, depth=2, base_filters=4).eval()
    x = torch.randn(1, 1, 30, 21, 17)
    ours = infer_patches(net, x, (16, 16, 8), overlap=0.5, blend=blend, batch_size=2)
    with torch.no_grad():
        theirs = monai_inferers.sliding_window_inference(x, (16, 16, 8), 2, net, overlap=0.5, mode=blend)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_gaussian_weights_are_monais_importance_map():
    monai_utils = pytest.importorskip("monai.data.utils")
    ours = importance_map((9, 8, 5), "gaussian", 0.125)
    theirs = monai_utils.compute_importance_map((9, 8, 5), mode="gaussian", sigma_scale=0.125)
    assert torch.equal(ours, theirs)


def test_patches_cover_every_voxel_and_the_last_is_flush_with_the_edge():
    starts = patch_starts((37, 16), (16, 16), (0.5, 0.5))
    assert sorted({s[0] for s in starts}) == [0, 8, 16, 21]
    assert {s[1] for s in starts} == {0}


def test_each_forward_pass_gets_at_most_batch_size_patches():
    net = Constant((1.0,))
    infer_patches(net, torch.zeros(1, 1, 40, 40, 20), (16, 16, 16), overlap=0.5, batch_size=4)
    windows = len(patch_starts((40, 40, 20), (16, 16, 16), (0.5,) * 3))
    assert [c[0] for c in net.calls] == [4] * (windows // 4) + ([windows % 4] if windows % 4 else [])


def test_empty_patches_are_skipped_and_count_as_the_empty_output():
    net = Constant((5.0, 7.0))
    net.out_channels = 2
    x = torch.zeros(1, 1, 48, 16, 16)
    x[0, 0, :10] = 1.0  # only the first patch along axis 0 holds data
    out = infer_patches(net, x, (16, 16, 16), overlap=0.0, skip_empty=0.0, empty_output=(1.0, 0.0))
    assert len(net.calls) == 1
    assert torch.allclose(out[0, :, :16], torch.tensor([5.0, 7.0]).view(2, 1, 1, 1).expand(2, 16, 16, 16))
    assert torch.allclose(out[0, 0, 16:], torch.ones(32, 16, 16)) and torch.all(out[0, 1, 16:] == 0.0)


def test_flip_tta_of_a_pointwise_network_changes_nothing():
    net = Pointwise().eval()
    x = torch.randn(1, 2, 20, 18, 16)
    plain = infer_patches(net, x, (16, 16, 16))
    flipped = infer_patches(net, x, (16, 16, 16), tta_flip_axes=(0, 1, 2))
    assert torch.allclose(plain, flipped, atol=1e-5)


def test_flip_tta_averages_the_flipped_predictions():
    torch.manual_seed(3)
    net = nn.Conv3d(1, 1, 3, padding=1).eval()  # not mirror symmetric
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        expected = (net(x) + net(x.flip(2)).flip(2)) / 2
    assert torch.allclose(infer_patches(net, x, (8, 8, 8), tta_flip_axes=(0,)), expected, atol=1e-6)


def test_image_in_gives_probabilities_image_out_on_the_same_grid():
    affine = np.array([[0, 0, 1.5, -20], [-1.2, 0, 0, 30], [0, 1.0, 0, 5], [0, 0, 0, 1]])
    array = np.random.default_rng(0).normal(size=(21, 19, 17, 2)).astype(np.float32)
    array.flags.writeable = False  # like a memory-mapped NIfTI
    image = Image(array, affine, ImageMeta(modality="MR"))
    out = infer_patches(Pointwise().eval(), image, (16, 16, 16), activation="softmax")
    assert isinstance(out, Image) and out.shape == (21, 19, 17, 3)
    assert np.array_equal(out.affine, image.affine) and out.meta.modality == "MR"
    assert np.allclose(out.array.sum(axis=-1), 1.0, atol=1e-5)
    assert np.allclose(out.array, infer_whole(Pointwise().eval(), image, activation="softmax").array, atol=1e-5)


def test_channel_mismatch_names_the_data_and_network_channel_counts():
    with pytest.raises(InputError, match=r"data has 1 channel\(s\) but the network expects 2 input channel\(s\)"):
        infer_patches(Pointwise(), torch.zeros(1, 1, 16, 16, 16), (8, 8, 8))
    image = Image(np.zeros((8, 8, 8, 4), np.float32), np.eye(4))
    with pytest.raises(InputError, match=r"data has 4 channel\(s\) but the network expects 2"):
        infer_patches(Pointwise(), image, (8, 8, 8))


def test_bad_patch_settings_are_refused_with_the_fix():
    net = UNet(depth=3, base_filters=2)
    x = torch.zeros(1, 1, 16, 16, 16)
    with pytest.raises(InputError, match=r"patch_size = \[10, 16, 16\] must be a multiple of \[4, 4, 4\]"):
        infer_patches(net, x, (10, 16, 16))
    with pytest.raises(InputError, match=r"overlap = 1.0 must be"):
        infer_patches(net, x, 16, overlap=1.0)
    with pytest.raises(InputError, match=r"blend = 'hann' is not valid; choose one of constant, gaussian"):
        infer_patches(net, x, 16, blend="hann")
