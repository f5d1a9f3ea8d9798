"""One parameterised U-Net for 2D and 3D: depth, filters, kernels, pooling, norm, order and block type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from medpipes.core.errors import InputError
from medpipes.core.models.base import Network
from medpipes.core.models.blocks import (
    ACTIVATIONS,
    BLOCK_TYPES,
    NORMS,
    PADDING_MODES,
    ConvSpec,
    as_tuple,
    conv_layer,
    conv_spec_from,
    conv_transpose_layer,
    level_widths,
    make_block,
    pool_layer,
)


@dataclass(frozen=True)
class UNetConfig:
    """Every choice that shapes a U-Net; ``depth`` counts resolution levels (depth 1 = no pooling)."""

    spatial_dims: int = 3
    in_channels: int = 1
    out_channels: int = 2
    depth: int = 4
    base_filters: int = 16
    max_filters: int = 320
    growth: float = 2.0
    kernel_size: int | tuple[int, ...] = 3
    pool_size: int | tuple[int, ...] = 2
    block: str = "plain"
    convs_per_block: int = 2
    norm: str = "instance"
    norm_groups: int = 8
    activation: str = "leaky_relu"
    order: str = "CNA"
    padding_mode: str = "zeros"
    dropout: float = 0.0
    pooling: str = "max"
    upsample: str = "transpose"
    se_reduction: int = 4

    CHOICES: ClassVar[dict[str, tuple]] = {
        "spatial_dims": (2, 3),
        "block": BLOCK_TYPES,
        "norm": NORMS,
        "activation": ACTIVATIONS,
        "padding_mode": PADDING_MODES,
        "pooling": ("max", "avg", "conv"),
        "upsample": ("transpose", "nearest", "linear"),
    }

    def filters(self) -> list[int]:
        """Feature maps per level: base * growth**level, capped at max_filters."""
        return level_widths(self.base_filters, self.growth, self.max_filters, self.depth)

    def conv_spec(self) -> ConvSpec:
        """The conv-unit recipe shared by every block (checked)."""
        return conv_spec_from(self)


class UNet(Network):
    """Encoder-decoder with skip connections (Ronneberger et al. 2015), outputs logits at the input size."""

    architecture = "unet"

    def __init__(self, config: UNetConfig | None = None, **params: object) -> None:
        config = config or UNetConfig(**params)  # type: ignore[arg-type]
        super().__init__(config)
        if config.depth < 1 or config.base_filters < 1 or config.in_channels < 1 or config.out_channels < 1:
            raise InputError("depth, base_filters, in_channels and out_channels must all be at least 1")
        spec = config.conv_spec()
        dims = config.spatial_dims
        pool = as_tuple(config.pool_size, dims, "pool_size")
        self.size_divisor = tuple(p ** (config.depth - 1) for p in pool)
        filters = config.filters()

        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        channels = config.in_channels
        for level, width in enumerate(filters):
            if level > 0:
                self.down.append(self._downsample(config, pool, channels))
            self.encoder.append(make_block(config.block, spec, channels, width))
            channels = width

        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(config.depth - 1)):
            self.up.append(self._upsample(config, pool, filters[level + 1], filters[level]))
            self.decoder.append(make_block(config.block, spec, 2 * filters[level], filters[level]))
        self.head = conv_layer(dims)(filters[0], config.out_channels, 1)

    @staticmethod
    def _downsample(config: UNetConfig, pool: tuple[int, ...], channels: int) -> nn.Module:
        if config.pooling == "conv":
            return conv_layer(config.spatial_dims)(channels, channels, pool, stride=pool)
        return pool_layer(config.spatial_dims, config.pooling)(pool, stride=pool)

    @staticmethod
    def _upsample(config: UNetConfig, pool: tuple[int, ...], in_channels: int, out_channels: int) -> nn.Module:
        dims = config.spatial_dims
        if config.upsample == "transpose":
            return conv_transpose_layer(dims)(in_channels, out_channels, pool, stride=pool)
        mode = "nearest" if config.upsample == "nearest" else ("trilinear" if dims == 3 else "bilinear")
        return nn.Sequential(
            nn.Upsample(scale_factor=tuple(float(p) for p in pool), mode=mode),
            conv_layer(dims)(in_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                x = self.down[level - 1](x)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, block in zip(self.up, self.decoder):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)
