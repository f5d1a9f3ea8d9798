"""A VGG-style network (Simonyan and Zisserman 2015) for classification or regression of whole images."""

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
    activation_layer,
    conv_spec_from,
    level_widths,
    make_block,
    pool_layer,
)


@dataclass(frozen=True)
class VGGConfig:
    """Conv stages with pooling, global average pooling, then an MLP to ``out_channels`` values.

    ``task`` is ``classification`` (outputs are logits, one per class) or ``regression`` (raw values).
    """

    spatial_dims: int = 3
    in_channels: int = 1
    out_channels: int = 2
    task: str = "classification"
    stages: int = 4
    base_filters: int = 16
    max_filters: int = 256
    growth: float = 2.0
    kernel_size: int | tuple[int, ...] = 3
    block: str = "plain"
    convs_per_block: int = 2
    norm: str = "batch"
    norm_groups: int = 8
    activation: str = "relu"
    order: str = "CNA"
    dropout: float = 0.0
    hidden: int = 128

    CHOICES: ClassVar[dict[str, tuple]] = {
        "spatial_dims": (2, 3),
        "task": ("classification", "regression"),
        "block": BLOCK_TYPES,
        "norm": NORMS,
        "activation": ACTIVATIONS,
    }


class VGGNet(Network):
    """Outputs (batch, out_channels): class logits or regression values; any spatial size >= 2**(stages-1)."""

    architecture = "vgg"

    def __init__(self, config: VGGConfig | None = None, **params: object) -> None:
        config = config or VGGConfig(**params)  # type: ignore[arg-type]
        super().__init__(config)
        if config.stages < 1 or config.hidden < 1:
            raise InputError("stages and hidden must be at least 1")
        dims = config.spatial_dims
        spec = conv_spec_from(config, dropout=0.0)
        layers: list[nn.Module] = []
        channels = config.in_channels
        for stage, width in enumerate(level_widths(config.base_filters, config.growth, config.max_filters, config.stages)):
            if stage > 0:
                layers.append(pool_layer(dims, "max")(2, stride=2, ceil_mode=True))
            layers.append(make_block(config.block, spec, channels, width))
            channels = width
        self.features = nn.Sequential(*layers)
        self.spatial_axes = tuple(range(2, 2 + dims))
        self.classifier = nn.Sequential(
            nn.Linear(channels, config.hidden),
            activation_layer(config.activation, config.hidden),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.classifier(self.features(x).mean(dim=self.spatial_axes))
