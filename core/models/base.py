"""What every medpipes network declares: its config, channels, dimensionality and size divisor."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medpipes.core.errors import InputError
from medpipes.core.models.config import config_to_dict


class Network(nn.Module):
    """Base of medpipes networks: ``architecture`` + a dataclass ``config`` rebuild it exactly."""

    architecture: str = ""
    in_channels: int
    out_channels: int
    spatial_dims: int
    size_divisor: tuple[int, ...]

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.in_channels = config.in_channels
        self.out_channels = config.out_channels
        self.spatial_dims = config.spatial_dims
        self.size_divisor = (1,) * config.spatial_dims

    def network_config(self) -> dict[str, Any]:
        """The JSON-ready dict that ``build_network`` turns back into this network."""
        return {"architecture": self.architecture, **config_to_dict(self.config)}

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse a batch whose rank, channel count or spatial size this network cannot take."""
        check_input_shape(tuple(x.shape), self.in_channels, self.spatial_dims, self.size_divisor, self.architecture)


def check_input_shape(
    shape: tuple[int, ...], in_channels: int | None, spatial_dims: int, divisor: tuple[int, ...], name: str
) -> None:
    """Raise InputError naming the data's and the network's numbers when ``shape`` does not fit."""
    if len(shape) != spatial_dims + 2:
        raise InputError(
            f"the {name} network is {spatial_dims}D and takes (batch, channels, {spatial_dims} spatial axes) tensors, "
            f"got shape {list(shape)}; use a slice-wise inferer for 2D networks on volumes"
        )
    if in_channels is not None and shape[1] != in_channels:
        raise InputError(
            f"the data has {shape[1]} channel(s) but the {name} network expects {in_channels} input channel(s); "
            "give the model the channels it was trained on (or build it with in_channels="
            f"{shape[1]})"
        )
    bad = [s for s, d in zip(shape[2:], divisor) if s % d]
    if bad:
        raise InputError(
            f"spatial size {list(shape[2:])} is not a multiple of {list(divisor)} as the {name} network needs; "
            "pad the input (the medpipes inferers do this) or choose such a patch size"
        )
