"""Building blocks for 2D and 3D networks: conv units in any norm/conv/activation order and five block types.

Block types (all map ``in_channels`` to ``out_channels`` at the same spatial size):
``plain`` (a stack of conv units), ``residual`` (the stack plus a projected shortcut), ``dense``
(DenseNet-style: each unit sees all earlier features, a 1x1 conv fuses them), ``inception``
(parallel 1x1, kxk, two kxk and pooling branches, concatenated) and ``se`` (plain, then
squeeze-and-excitation channel gating).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from medpipes.core.errors import InputError

BLOCK_TYPES = ("plain", "residual", "dense", "inception", "se")
NORMS = ("batch", "instance", "group", "none")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "prelu", "gelu", "silu", "none")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@dataclass(frozen=True)
class ConvSpec:
    """How every conv unit of a network is built."""

    spatial_dims: int = 3
    kernel_size: tuple[int, ...] = (3, 3, 3)
    norm: str = "instance"
    norm_groups: int = 8
    activation: str = "leaky_relu"
    order: str = "CNA"
    padding_mode: str = "zeros"
    dropout: float = 0.0
    convs_per_block: int = 2
    se_reduction: int = 4


def as_tuple(value: int | Sequence[int], spatial_dims: int, name: str) -> tuple[int, ...]:
    """``value`` repeated per spatial axis (an int) or checked to have one entry per axis."""
    if isinstance(value, int):
        return (value,) * spatial_dims
    values = tuple(int(v) for v in value)
    if len(values) != spatial_dims:
        raise InputError(f"{name} = {list(values)} needs {spatial_dims} values (one per spatial axis) or one int")
    return values


def conv_spec_from(config: Any, **overrides: Any) -> ConvSpec:
    """The ConvSpec a network config describes (its fields of ConvSpec's names, kernel_size per axis), checked."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(ConvSpec) if hasattr(config, f.name)}
    values["kernel_size"] = as_tuple(config.kernel_size, config.spatial_dims, "kernel_size")
    spec = ConvSpec(**{**values, **overrides})
    check_spec(spec)
    return spec


def level_widths(base_filters: int, growth: float, max_filters: int, levels: int) -> list[int]:
    """Feature maps per level: base * growth**level, capped at max_filters."""
    return [min(int(round(base_filters * growth**level)), max_filters) for level in range(levels)]


def check_spec(spec: ConvSpec) -> None:
    """Refuse a ConvSpec that cannot build: naming the key and the valid options."""
    if spec.spatial_dims not in (2, 3):
        raise InputError(f"spatial_dims = {spec.spatial_dims} is not supported; choose 2 or 3")
    for key, value, options in (
        ("norm", spec.norm, NORMS),
        ("activation", spec.activation, ACTIVATIONS),
        ("padding_mode", spec.padding_mode, PADDING_MODES),
    ):
        if value not in options:
            raise InputError(f"{key} = {value!r} is not valid; choose one of {', '.join(options)}")
    if sorted(spec.order) != ["A", "C", "N"]:
        raise InputError(
            f"order = {spec.order!r} is not valid; give the letters C (conv), N (norm), A (activation) "
            "once each, e.g. CNA or NAC"
        )
    if any(k % 2 == 0 for k in spec.kernel_size):
        raise InputError(f"kernel_size = {list(spec.kernel_size)} must be odd so outputs keep the input size")
    if not 0.0 <= spec.dropout < 1.0:
        raise InputError(f"dropout = {spec.dropout} must be in [0, 1)")
    if spec.convs_per_block < 1:
        raise InputError(f"convs_per_block = {spec.convs_per_block} must be at least 1")


def conv_layer(spatial_dims: int) -> type[nn.Module]:
    """nn.Conv2d or nn.Conv3d."""
    return nn.Conv3d if spatial_dims == 3 else nn.Conv2d


def conv_transpose_layer(spatial_dims: int) -> type[nn.Module]:
    """nn.ConvTranspose2d or nn.ConvTranspose3d."""
    return nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d


def pool_layer(spatial_dims: int, kind: str) -> type[nn.Module]:
    """Max or average pooling in 2D or 3D."""
    if kind == "max":
        return nn.MaxPool3d if spatial_dims == 3 else nn.MaxPool2d
    return nn.AvgPool3d if spatial_dims == 3 else nn.AvgPool2d


def dropout_layer(spatial_dims: int, p: float) -> nn.Module:
    """Channel dropout (whole feature maps), or identity when ``p`` is 0."""
    if p <= 0:
        return nn.Identity()
    return nn.Dropout3d(p) if spatial_dims == 3 else nn.Dropout2d(p)


def norm_layer(spec: ConvSpec, channels: int) -> nn.Module:
    """The normalisation named by ``spec.norm`` for ``channels`` feature maps."""
    if spec.norm == "batch":
        return (nn.BatchNorm3d if spec.spatial_dims == 3 else nn.BatchNorm2d)(channels)
    if spec.norm == "instance":
        return (nn.InstanceNorm3d if spec.spatial_dims == 3 else nn.InstanceNorm2d)(channels, affine=True)
    if spec.norm == "group":
        return nn.GroupNorm(math.gcd(spec.norm_groups, channels), channels)
    return nn.Identity()


def activation_layer(name: str, channels: int) -> nn.Module:
    """The activation named ``name`` (prelu learns one slope per channel)."""
    layers = {
        "relu": lambda: nn.ReLU(inplace=True),
        "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
        "elu": lambda: nn.ELU(inplace=True),
        "prelu": lambda: nn.PReLU(channels),
        "gelu": nn.GELU,
        "silu": lambda: nn.SiLU(inplace=True),
        "none": nn.Identity,
    }
    return layers[name]()


class ConvUnit(nn.Sequential):
    """One convolution with its norm and activation, in the order ``spec.order`` (e.g. CNA, NAC)."""

    def __init__(
        self,
        spec: ConvSpec,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, ...] | None = None,
        activation: bool = True,
    ) -> None:
        kernel = kernel_size or spec.kernel_size
        layers: list[nn.Module] = []
        channels = in_channels
        for letter in spec.order:
            if letter == "C":
                layers.append(
                    conv_layer(spec.spatial_dims)(
                        in_channels,
                        out_channels,
                        kernel,
                        padding=tuple(k // 2 for k in kernel),
                        padding_mode=spec.padding_mode,
                        bias=spec.norm == "none" or spec.order.index("N") < spec.order.index("C"),
                    )
                )
                channels = out_channels
            elif letter == "N":
                layers.append(norm_layer(spec, channels))
            elif letter == "A" and activation:
                layers.append(activation_layer(spec.activation, channels))
        super().__init__(*layers)


class PlainBlock(nn.Module):
    """``convs_per_block`` conv units, then dropout."""

    def __init__(self, spec: ConvSpec, in_channels: int, out_channels: int) -> None:
        super().__init__()
        units = [
            ConvUnit(spec, in_channels if i == 0 else out_channels, out_channels) for i in range(spec.convs_per_block)
        ]
        self.units = nn.Sequential(*units)
        self.dropout = dropout_layer(spec.spatial_dims, spec.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.units(x))


class ResidualBlock(nn.Module):
    """Conv units plus a shortcut (1x1 conv when channels change); post-activation orders activate the sum."""

    def __init__(self, spec: ConvSpec, in_channels: int, out_channels: int) -> None:
        super().__init__()
        post_activation = spec.order.endswith("A")
        units = [
            ConvUnit(
                spec,
                in_channels if i == 0 else out_channels,
                out_channels,
                activation=not (post_activation and i == spec.convs_per_block - 1),
            )
            for i in range(spec.convs_per_block)
        ]
        self.units = nn.Sequential(*units)
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else conv_layer(spec.spatial_dims)(in_channels, out_channels, 1, bias=False)
        )
        self.activation = activation_layer(spec.activation, out_channels) if post_activation else nn.Identity()
        self.dropout = dropout_layer(spec.spatial_dims, spec.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.units(x) + self.shortcut(x)))


class DenseBlock(nn.Module):
    """Each conv unit sees the block input and all earlier units' outputs; a 1x1 unit fuses them all."""

    def __init__(self, spec: ConvSpec, in_channels: int, out_channels: int) -> None:
        super().__init__()
        growth = max(out_channels // 2, 1)
        self.layers = nn.ModuleList(
            ConvUnit(spec, in_channels + i * growth, growth) for i in range(spec.convs_per_block)
        )
        total = in_channels + spec.convs_per_block * growth
        self.fuse = ConvUnit(spec, total, out_channels, kernel_size=(1,) * spec.spatial_dims)
        self.dropout = dropout_layer(spec.spatial_dims, spec.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return self.dropout(self.fuse(torch.cat(features, dim=1)))


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1 then kxk; 1x1 then two kxk; 3-pool then 1x1), concatenated."""

    def __init__(self, spec: ConvSpec, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels < 4:
            raise InputError(
                f"an inception block needs at least 4 output channels, got {out_channels}; raise base_filters"
            )
        one = (1,) * spec.spatial_dims
        widths = [out_channels // 4] * 4
        widths[0] += out_channels - sum(widths)
        self.branch_1x1 = ConvUnit(spec, in_channels, widths[0], kernel_size=one)
        self.branch_k = nn.Sequential(
            ConvUnit(spec, in_channels, widths[1], kernel_size=one), ConvUnit(spec, widths[1], widths[1])
        )
        self.branch_2k = nn.Sequential(
            ConvUnit(spec, in_channels, widths[2], kernel_size=one),
            ConvUnit(spec, widths[2], widths[2]),
            ConvUnit(spec, widths[2], widths[2]),
        )
        self.branch_pool = nn.Sequential(
            pool_layer(spec.spatial_dims, "max")(3, stride=1, padding=1),
            ConvUnit(spec, in_channels, widths[3], kernel_size=one),
        )
        self.dropout = dropout_layer(spec.spatial_dims, spec.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch_1x1(x), self.branch_k(x), self.branch_2k(x), self.branch_pool(x))
        return self.dropout(torch.cat(branches, dim=1))


class SqueezeExcitation(nn.Module):
    """Channel gating: global average, bottleneck MLP, sigmoid, scale (Hu et al. 2018)."""

    def __init__(self, spatial_dims: int, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        conv = conv_layer(spatial_dims)
        self.spatial_axes = tuple(range(2, 2 + spatial_dims))
        self.gate = nn.Sequential(
            conv(channels, hidden, 1), nn.ReLU(inplace=True), conv(hidden, channels, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=self.spatial_axes, keepdim=True))


class SEBlock(nn.Module):
    """A plain block followed by squeeze-and-excitation."""

    def __init__(self, spec: ConvSpec, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = PlainBlock(spec, in_channels, out_channels)
        self.se = SqueezeExcitation(spec.spatial_dims, out_channels, spec.se_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.block(x))


_BLOCKS: dict[str, type[nn.Module]] = {
    "plain": PlainBlock,
    "residual": ResidualBlock,
    "dense": DenseBlock,
    "inception": InceptionBlock,
    "se": SEBlock,
}


def make_block(block_type: str, spec: ConvSpec, in_channels: int, out_channels: int) -> nn.Module:
    """A block of type ``block_type`` mapping ``in_channels`` to ``out_channels`` at the same size."""
    if block_type not in _BLOCKS:
        raise InputError(f"block = {block_type!r} is not valid; choose one of {', '.join(BLOCK_TYPES)}")
    return _BLOCKS[block_type](spec, in_channels, out_channels)
