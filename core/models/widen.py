"""Start a wider U-Net from a trained narrower one without changing what it computes (Net2Net-style).

Written here because no maintained library widens a trained U-Net in place: torch and MONAI load weights
only into a network of the same shape. The wide network keeps its fresh initialisation for every new
channel; each old channel keeps its trained weights and reads zeros from the new channels, and the head
reads only the old channels. So the wide network's output equals the narrow one's at the start of training,
and training can put the extra capacity to use (the zeros receive gradients, since the new channels are
not zero). Used by ``training.init_weights`` when the checkpoint is a narrower U-Net of the same design.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from medpipes.core.errors import InputError
from medpipes.core.models.unet import UNet

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def widening_problem(narrow: nn.Module, wide: nn.Module) -> str | None:
    """Why ``wide`` cannot start from ``narrow`` by widening, or None when it can."""
    if not isinstance(narrow, UNet) or not isinstance(wide, UNet):
        return "only a U-Net can be widened"
    a, b = asdict(narrow.config), asdict(wide.config)
    others = sorted(k for k in a if k not in ("base_filters", "max_filters") and a[k] != b[k])
    if others:
        return f"they differ in {', '.join(others)}, not only in width"
    if a["block"] != "plain" or a["norm"] == "group":
        return "widening keeps the function only for plain blocks without group norm"
    if any(w < n for n, w in zip(narrow.config.filters(), wide.config.filters(), strict=True)):
        return "the config's model is narrower than the checkpoint's at some level"
    return None


def widen_into(narrow: UNet, wide: UNet) -> None:
    """Copy ``narrow``'s weights into the wider ``wide`` in place so both compute the same function."""
    problem = widening_problem(narrow, wide)
    if problem is not None:
        raise InputError(f"cannot widen {narrow.network_config()} into {wide.network_config()}: {problem}")
    old = dict(narrow.named_modules())
    copied = 0
    with torch.no_grad():
        for name, module in wide.named_modules():
            source = old[name]
            if isinstance(module, _TRANSPOSED):  # weight: (in, out, *kernel)
                ci, co = source.weight.shape[:2]
                module.weight[:, :co] = 0
                module.weight[:ci, :co] = source.weight
            elif isinstance(module, _CONVS):  # weight: (out, in, *kernel)
                co, ci = source.weight.shape[:2]
                inputs = _input_channels(name, source, module)
                module.weight[:co] = 0
                module.weight[:co, inputs] = source.weight
            elif isinstance(module, _NORMS):
                for key in ("weight", "bias", "running_mean", "running_var"):
                    value = getattr(source, key, None)
                    if value is not None:
                        getattr(module, key)[: value.shape[0]] = value
                if getattr(source, "num_batches_tracked", None) is not None:
                    module.num_batches_tracked.copy_(source.num_batches_tracked)
            else:
                continue
            bias = getattr(source, "bias", None)
            if bias is not None and not isinstance(module, _NORMS):
                module.bias[: bias.shape[0]] = bias
            copied += 1
    expected = sum(isinstance(m, (*_CONVS, *_TRANSPOSED, *_NORMS)) for m in narrow.modules())
    assert copied == expected, f"widened {copied} of {expected} layers"


def _input_channels(name: str, narrow: nn.Module, wide: nn.Module) -> list[int]:
    """Where the narrow conv's input channels sit in the wide conv's input.

    A decoder block's first conv reads ``cat(upsampled, skip)``: the old channels of each half move to the
    start of that half. Every other conv reads the old channels first.
    """
    if name.startswith("decoder.") and narrow.in_channels == 2 * narrow.out_channels:
        half, wide_half = narrow.in_channels // 2, wide.in_channels // 2
        return list(range(half)) + list(range(wide_half, wide_half + half))
    return list(range(narrow.in_channels))
