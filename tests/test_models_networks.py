"""U-Net, FCN and VGG: every block type and option builds in 2D and 3D and keeps the promised shapes."""

from __future__ import annotations

import pytest
import torch

from medpipes.core.errors import InputError
from medpipes.core.models import FCN, UNet, UNetConfig, VGGNet, build_network
from medpipes.core.models.blocks import BLOCK_TYPES


@pytest.mark.parametrize("block", BLOCK_TYPES)
@pytest.mark.parametrize("dims", [2, 3])
def test_every_unet_block_type_builds_in_2d_and_3d_with_input_sized_output(block, dims):
    net = UNet(spatial_dims=dims, in_channels=2, out_channels=3, depth=3, base_filters=8, block=block).eval()
    x = torch.randn(2, 2, *([16] * dims))
    with torch.no_grad():
        assert net(x).shape == (2, 3, *([16] * dims))


@pytest.mark.parametrize(
    "options",
    [
        {"norm": "batch", "order": "NAC", "activation": "relu"},
        {"norm": "group", "norm_groups": 4, "order": "CAN", "activation": "prelu"},
        {"norm": "none", "activation": "elu", "padding_mode": "replicate", "pooling": "avg", "upsample": "linear"},
        {"norm": "instance", "activation": "gelu", "pooling": "conv", "upsample": "nearest", "dropout": 0.2},
        {"block": "residual", "order": "NAC", "convs_per_block": 3, "activation": "silu"},
    ],
)
def test_unet_options_combine_and_keep_the_input_size(options):
    net = UNet(spatial_dims=3, in_channels=1, out_channels=2, depth=2, base_filters=4, **options).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 8, 12, 8)).shape == (1, 2, 8, 12, 8)


def test_filters_grow_by_the_factor_and_stop_at_max_filters():
    config = UNetConfig(depth=5, base_filters=16, growth=2.0, max_filters=48)
    assert config.filters() == [16, 32, 48, 48, 48]
    net = UNet(config)
    widths = [block.units[-1][0].out_channels for block in net.encoder]
    assert widths == [16, 32, 48, 48, 48]


def test_growth_factor_1_5_rounds_the_filter_counts():
    assert UNetConfig(depth=4, base_filters=8, growth=1.5).filters() == [8, 12, 18, 27]


def test_anisotropic_kernels_and_pooling_set_the_size_divisor():
    net = UNet(spatial_dims=3, depth=3, base_filters=4, kernel_size=(3, 3, 1), pool_size=(2, 2, 1)).eval()
    assert net.size_divisor == (4, 4, 1)
    with torch.no_grad():
        assert net(torch.randn(1, 1, 8, 12, 5)).shape == (1, 2, 8, 12, 5)


def test_unet_refuses_a_size_it_cannot_pool_naming_size_and_divisor():
    net = UNet(spatial_dims=2, depth=3, base_filters=4)
    with pytest.raises(InputError, match=r"\[10, 16\].*multiple of \[4, 4\]"):
        net(torch.randn(1, 1, 10, 16))


def test_channel_mismatch_names_the_data_and_network_channel_counts():
    net = UNet(spatial_dims=3, in_channels=2, depth=2, base_filters=4)
    with pytest.raises(InputError, match=r"data has 3 channel\(s\).*expects 2 input channel\(s\)"):
        net(torch.randn(1, 3, 8, 8, 8))


def test_fcn_takes_odd_sizes_and_returns_them():
    net = FCN(spatial_dims=3, in_channels=1, out_channels=4, depth=3, base_filters=4).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 17, 11, 9)).shape == (1, 4, 17, 11, 9)
    net2d = FCN(spatial_dims=2, in_channels=3, out_channels=2, depth=3, base_filters=4, block="se").eval()
    with torch.no_grad():
        assert net2d(torch.randn(2, 3, 15, 20)).shape == (2, 2, 15, 20)


@pytest.mark.parametrize("task,outputs", [("classification", 5), ("regression", 1)])
def test_vgg_head_gives_one_value_per_output_for_each_case(task, outputs):
    net = VGGNet(
        spatial_dims=3, in_channels=1, out_channels=outputs, task=task, stages=3, base_filters=4, hidden=8
    ).eval()
    with torch.no_grad():
        assert net(torch.randn(3, 1, 16, 14, 12)).shape == (3, outputs)


def test_build_network_rebuilds_the_same_architecture_from_its_config():
    net = UNet(
        spatial_dims=2, in_channels=3, out_channels=4, depth=3, base_filters=6, block="dense", kernel_size=(3, 5)
    )
    config = net.network_config()
    assert config["architecture"] == "unet" and config["kernel_size"] == [3, 5]
    rebuilt = build_network(config)
    assert rebuilt.config == net.config
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in net.parameters()]


def test_unknown_config_key_names_the_key_and_the_valid_keys():
    with pytest.raises(InputError, match=r"unknown key 'filters'; valid keys are .*base_filters"):
        build_network({"architecture": "unet", "filters": 16})


def test_wrong_config_type_names_the_key_and_the_expected_type():
    with pytest.raises(InputError, match=r"depth = '4' has the wrong type; expected int"):
        build_network({"architecture": "unet", "depth": "4"})


def test_invalid_choice_lists_the_valid_options():
    with pytest.raises(InputError, match=r"norm = 'layer' is not valid; choose one of batch, instance, group, none"):
        build_network({"architecture": "unet", "norm": "layer"})
    with pytest.raises(
        InputError, match=r"block = 'resnet' is not valid; choose one of plain, residual, dense, inception, se"
    ):
        build_network({"architecture": "fcn", "block": "resnet"})


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(InputError, match=r"architecture = 'vnet' is not valid; choose one of unet, fcn, vgg"):
        build_network({"architecture": "vnet"})


def test_bad_order_and_even_kernel_are_refused_with_the_fix():
    with pytest.raises(InputError, match=r"order = 'CCA'"):
        UNet(order="CCA")
    with pytest.raises(InputError, match=r"kernel_size = \[4, 4, 4\] must be odd"):
        UNet(kernel_size=4)
