"""The training config (`medpipes train CONFIG.yaml`): typed sections, unknown keys and wrong types refused.

    data:          {root: /data, inputs: {T1: "t1/{case}_T1.nii.gz"}, labels: "seg/{case}_seg.nii.gz",
                    binarise_labels: false}          # or csv: cases.csv / hdf5: cases.h5
    splits:        {file: splits.csv, outer: 0, inner: 0}   # or train: [...] val: [...], or val_fraction: 0.25
    preprocessing: [reorient: RAS, resample: {spacing: 2}, zscore: nonzero]   # as `medpipes preprocess`
    augmentation:  [flip: {axes: [0]}, gamma: {log_gamma: 0.2}]
    model:         {architecture: unet, in_channels: 1, out_channels: 2, depth: 3, norm: instance}
    loss:          {name: dice_ce}
    optimizer:     {name: adamw, lr: 0.001, weight_decay: 0.0001}
    scheduler:     {name: cosine}                    # cosine, step, plateau, none
    training:      {epochs: 50, batch_size: 2, patch_size: [64, 64, 64], seed: 0, device: auto}
                                                     # init_weights: run1/checkpoints/best.safetensors (fine-tune)
                                                     # amp: true (CPU: bfloat16 where native, ~2x faster)
    validation:    {mode: whole}                     # or patches (patch_size, overlap)
    output_dir:    runs/brain

Relative paths are taken from the config file's folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from medpipes.core.errors import InputError
from medpipes.core.models.config import config_from_dict, config_to_dict

AUGMENTATION_NAMES = (
    "flip",
    "rot90",
    "affine",
    "elastic",
    "scale_shift",
    "gamma",
    "noise",
    "bias_field",
    "blur",
    "channel_dropout",
    "downsample",
)


@dataclass(frozen=True)
class DataConfig:
    """Where the cases are: folders with ``{case}`` patterns, a collection CSV, or an HDF5 file."""

    root: str | None = None
    inputs: Any = None
    labels: str | None = None
    csv: str | None = None
    hdf5: str | None = None
    input_group: str = "inputs"
    label_group: str = "ground_truth"
    binarise_labels: bool = False


@dataclass(frozen=True)
class SplitsConfig:
    """Train/validation subjects: a split file (outer, inner fold), explicit lists, or a seeded fraction."""

    file: str | None = None
    outer: int = 0
    inner: int | None = None
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    val_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser and its settings (``momentum``/``nesterov`` for sgd, ``betas`` for adam/adamw)."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)

    CHOICES: ClassVar[dict[str, tuple]] = {"name": ("adam", "adamw", "sgd")}


@dataclass(frozen=True)
class SchedulerConfig:
    """Learning-rate schedule per epoch: cosine to ``min_lr``, step (``step_size``, ``gamma``), plateau or none."""

    name: str = "none"
    min_lr: float = 0.0
    step_size: int = 10
    gamma: float = 0.1
    patience: int = 5
    factor: float = 0.5

    CHOICES: ClassVar[dict[str, tuple]] = {"name": ("cosine", "step", "plateau", "none")}


@dataclass(frozen=True)
class TrainingConfig:
    """The loop: epochs, batches, patches (null = whole volumes), seeding, device, AMP, early stopping."""

    epochs: int = 10
    batch_size: int = 2
    accumulate: int = 1
    patch_size: tuple[int, int, int] | None = None
    samples_per_volume: int = 4
    queue_length: int = 32
    label_fraction: float = 0.5
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None  # mixed precision: None = CUDA only (float16); true on a CPU = bfloat16 where native
    monitor: str = "val_dice"
    early_stopping_patience: int | None = None
    init_weights: str | None = None  # a checkpoint of the same network (fine-tuning) or of a narrower plain U-Net (widened)

    CHOICES: ClassVar[dict[str, tuple]] = {"monitor": ("val_dice", "val_loss")}


@dataclass(frozen=True)
class ValidationConfig:
    """How validation cases are run: the whole volume at once, or overlapping patches."""

    mode: str = "whole"
    patch_size: tuple[int, int, int] | None = None
    overlap: float = 0.5
    batch_size: int = 1
    blend: str = "gaussian"

    CHOICES: ClassVar[dict[str, tuple]] = {"mode": ("whole", "patches"), "blend": ("gaussian", "constant")}


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run; ``source`` is the file it was read from (paths are relative to its folder)."""

    data: DataConfig
    model: Any
    output_dir: str
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    preprocessing: tuple[Any, ...] = ()
    augmentation: tuple[Any, ...] = ()
    loss: Any = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def resolve(self, path: str | None, base: Path) -> Path | None:
        """``path`` taken from ``base`` (the config's folder) unless absolute."""
        if path is None:
            return None
        p = Path(path).expanduser()
        return p if p.is_absolute() else base / p


def parse_train_config(data: Any, where: str) -> TrainConfig:
    """A checked TrainConfig from a plain dict; every error names the key and the valid keys/values."""
    config = config_from_dict(TrainConfig, data, where)
    _check(config, where)
    return config


def load_train_config(path: str | Path) -> tuple[TrainConfig, Path]:
    """Read and check a YAML training config; returns it and the folder its relative paths start from."""
    from medpipes.core.yaml_file import read_yaml

    path = Path(path)
    data = read_yaml(path, "training config")
    return parse_train_config(data, str(path)), path.resolve().parent


def config_hash(config: TrainConfig) -> str:
    """sha256 of the config's canonical JSON (names the run in the model card)."""
    text = json.dumps(train_config_to_dict(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def train_config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict."""
    return config_to_dict(config)


def _check(config: TrainConfig, where: str) -> None:
    data = config.data
    sources = [name for name in ("root", "csv", "hdf5") if getattr(data, name) is not None]
    if len(sources) != 1:
        raise InputError(f"{where}: data: give exactly one of root (with inputs, labels), csv or hdf5; got {sources or 'none'}")
    if data.root is not None:
        if not isinstance(data.inputs, Mapping) or not data.inputs:
            raise InputError(
                f"{where}: data: inputs must map channel names to patterns, e.g. inputs: {{T1: \"t1/{{case}}_T1.nii.gz\"}}"
            )
        if data.labels is None:
            raise InputError(f"{where}: data: labels (a pattern such as \"seg/{{case}}_seg.nii.gz\") is missing; add it")
    elif data.inputs is not None or data.labels is not None:
        raise InputError(f"{where}: data: inputs and labels belong with root; a csv or hdf5 names its own columns")
    if not isinstance(config.model, Mapping):
        raise InputError(f"{where}: model: expected a mapping such as {{architecture: unet, in_channels: 1, out_channels: 2}}")
    if config.loss is not None and not (isinstance(config.loss, Mapping) and isinstance(config.loss.get("name"), str)):
        raise InputError(f"{where}: loss: expected a mapping with a name, e.g. {{name: dice_ce}}")
    t = config.training
    positive = {
        "training: epochs": t.epochs,
        "training: batch_size": t.batch_size,
        "training: accumulate": t.accumulate,
        "training: samples_per_volume": t.samples_per_volume,
        "validation: batch_size": config.validation.batch_size,
    }
    for key, value in positive.items():
        if value < 1:
            raise InputError(f"{where}: {key} = {value} must be at least 1")
    if t.num_workers < 0:
        raise InputError(f"{where}: training: num_workers = {t.num_workers} must be 0 or more")
    if not 0.0 <= t.label_fraction <= 1.0:
        raise InputError(f"{where}: training: label_fraction = {t.label_fraction} must be in [0, 1]")
    if t.early_stopping_patience is not None and t.early_stopping_patience < 1:
        raise InputError(f"{where}: training: early_stopping_patience must be at least 1 (or null to train every epoch)")
    if not 0.0 < config.splits.val_fraction < 1.0:
        raise InputError(f"{where}: splits: val_fraction = {config.splits.val_fraction} must be between 0 and 1")
    if config.optimizer.lr < 0:
        raise InputError(f"{where}: optimizer: lr = {config.optimizer.lr} must not be negative")
    v = config.validation
    if v.mode == "patches" and v.patch_size is None and t.patch_size is None:
        raise InputError(f"{where}: validation: mode patches needs validation.patch_size (or training.patch_size)")
    if not 0.0 <= v.overlap < 1.0:
        raise InputError(f"{where}: validation: overlap = {v.overlap} must be in [0, 1)")
    for index, item in enumerate(config.augmentation, start=1):
        name = item if isinstance(item, str) else (next(iter(item)) if isinstance(item, Mapping) and len(item) == 1 else None)
        if name not in AUGMENTATION_NAMES:
            raise InputError(
                f"{where}: augmentation {index} is {item!r}; write one of {', '.join(AUGMENTATION_NAMES)} "
                "(alone or as name: {parameters})"
            )
