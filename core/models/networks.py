"""The architectures medpipes can rebuild from a config dict (the JSON beside a checkpoint)."""

from __future__ import annotations

from typing import Any, Mapping

from medpipes.core.errors import InputError
from medpipes.core.models.base import Network
from medpipes.core.models.config import config_from_dict
from medpipes.core.models.fcn import FCN, FCNConfig
from medpipes.core.models.heads import VGGConfig, VGGNet
from medpipes.core.models.unet import UNet, UNetConfig

ARCHITECTURES: dict[str, tuple[type[Network], type]] = {
    "unet": (UNet, UNetConfig),
    "fcn": (FCN, FCNConfig),
    "vgg": (VGGNet, VGGConfig),
}


def build_network(config: Mapping[str, Any], where: str = "network config") -> Network:
    """A fresh network from ``{"architecture": "unet", ...parameters}``; unknown keys and bad values refused."""
    if not isinstance(config, Mapping):
        raise InputError(f"{where}: expected a mapping with an 'architecture' key, got {type(config).__name__}")
    params = dict(config)
    name = params.pop("architecture", None)
    if name not in ARCHITECTURES:
        raise InputError(f"{where}: architecture = {name!r} is not valid; choose one of {', '.join(ARCHITECTURES)}")
    network_cls, config_cls = ARCHITECTURES[name]
    return network_cls(config_from_dict(config_cls, params, where))
