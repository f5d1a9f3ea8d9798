"""A fully convolutional network (Long et al. 2015): encoder, per-level scores, coarse-to-fine fusion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medpipes.core.errors import InputError
from medpipes.core.models.base import Network
from medpipes.core.models.blocks import (
    ACTIVATIONS,
    BLOCK_TYPES,
    NORMS,
    conv_layer,
    conv_spec_from,
    level_widths,
    make_block,
    pool_layer,
)


@dataclass(frozen=True)
class FCNConfig:
    """An FCN: ``depth`` encoder levels, each scored by a 1x1 conv; scores are upsampled and summed."""

    spatial_dims: int = 3
    in_channels: int = 1
    out_channels: int = 2
    depth: int = 4
    base_filters: int = 16
    max_filters: int = 256
    growth: float = 2.0
    kernel_size: int | tuple[int, ...] = 3
    block: str = "plain"
    convs_per_block: int = 2
    norm: str = "instance"
    norm_groups: int = 8
    activation: str = "relu"
    order: str = "CNA"
    dropout: float = 0.0

    CHOICES: ClassVar[dict[str, tuple]] = {
        "spatial_dims": (2, 3),
        "block": BLOCK_TYPES,
        "norm": NORMS,
        "activation": ACTIVATIONS,
    }


class FCN(Network):
    """Takes any spatial size: each coarser score map is interpolated to the next finer one's exact size."""

    architecture = "fcn"

    def __init__(self, config: FCNConfig | None = None, **params: object) -> None:
        config = config or FCNConfig(**params)  # type: ignore[arg-type]
        super().__init__(config)
        if config.depth < 1:
            raise InputError(f"depth = {config.depth} must be at least 1")
        dims = config.spatial_dims
        spec = conv_spec_from(config)
        self.pool = pool_layer(dims, "max")(2, stride=2, ceil_mode=True)
        self.encoder = nn.ModuleList()
        self.scores = nn.ModuleList()
        channels = config.in_channels
        for width in level_widths(config.base_filters, config.growth, config.max_filters, config.depth):
            self.encoder.append(make_block(config.block, spec, channels, width))
            self.scores.append(conv_layer(dims)(width, config.out_channels, 1))
            channels = width
        self.mode = "trilinear" if dims == 3 else "bilinear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        scores = []
        for level, (block, score) in enumerate(zip(self.encoder, self.scores)):
            if level > 0:
                x = self.pool(x)
            x = block(x)
            scores.append(score(x))
        out = scores.pop()
        while scores:
            finer = scores.pop()
            out = finer + F.interpolate(out, size=finer.shape[2:], mode=self.mode, align_corners=False)
        return out
