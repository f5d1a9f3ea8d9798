"""Networks (U-Net, FCN, VGG), losses, metrics, checkpoints and devices."""

from medpipes.core.models.base import Network
from medpipes.core.models.checkpoint import (
    TorchScriptNetwork,
    export_onnx,
    export_torchscript,
    import_torchscript,
    load_checkpoint,
    save_checkpoint,
)
from medpipes.core.models.device import resolve_device
from medpipes.core.models.fcn import FCN, FCNConfig
from medpipes.core.models.heads import VGGConfig, VGGNet
from medpipes.core.models.losses import build_loss
from medpipes.core.models.networks import build_network
from medpipes.core.models.unet import UNet, UNetConfig

__all__ = [
    "FCN",
    "FCNConfig",
    "Network",
    "TorchScriptNetwork",
    "UNet",
    "UNetConfig",
    "VGGConfig",
    "VGGNet",
    "build_loss",
    "build_network",
    "export_onnx",
    "export_torchscript",
    "import_torchscript",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
]
