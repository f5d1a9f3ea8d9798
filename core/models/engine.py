"""The training engine: ``Model.fit`` on train/validation DataCollections, single process or DDP under torchrun.

Per epoch: shuffled batches (whole volumes or a patch queue), gradient accumulation, AMP on CUDA, an
optimiser step per accumulated batch, validation through ``medpipes.core.inference``, the LR schedule,
early stopping; rank 0 writes ``metrics.csv``, ``curves.png`` and ``checkpoints/{best,last}``.
The last checkpoint also holds the optimiser, scheduler, scaler and RNG states (safetensors + JSON,
never pickle), so a resumed run continues the epoch count and ends with the same weights.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from medpipes.core.data import CaseDataset, DataCollection, PatchQueue, PatchSampler
from medpipes.core.errors import InputError
from medpipes.core.io.atomic import atomic_path, atomic_write_text
from medpipes.core.models.base import Network
from medpipes.core.models.checkpoint import (
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from medpipes.core.models.device import resolve_device
from medpipes.core.models.metrics import dice_per_label
from medpipes.core.models.tables import write_csv_rows
from medpipes.core.models.train_config import (
    OptimizerConfig,
    SchedulerConfig,
    TrainingConfig,
    ValidationConfig,
)
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds")
STATE_FORMAT = "medpipes-training-state"
SEGMENTATION_ARCHITECTURES = ("unet", "fcn")


# --- seeding and distribution --------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker seeding: python and numpy follow the worker's torch seed (set from the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes files."""
        return self.rank == 0


def init_distributed(device_spec: str) -> tuple[Distributed, torch.device]:
    """Join the torchrun job named by the environment (env://; nccl on CUDA, gloo on CPU) and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), resolve_device(device_spec)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return Distributed(rank, world, local_rank), device


# --- optimiser and schedule ---------------------------------------------------------------------
def build_optimizer(params: Any, config: OptimizerConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD from the config."""
    if config.name == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay
        )
    cls = torch.optim.Adam if config.name == "adam" else torch.optim.AdamW
    return cls(params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: SchedulerConfig, epochs: int, monitor_mode: str) -> Any:
    """The per-epoch LR scheduler (None for ``none``)."""
    if config.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1), eta_min=config.min_lr)
    if config.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    if config.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=monitor_mode, factor=config.factor, patience=config.patience, min_lr=config.min_lr
        )
    return None


# --- batches ------------------------------------------------------------------------------------
def amp_dtype(amp: bool | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of mixed-precision training on ``device``, or None for float32.

    ``amp`` None (the default) turns it on for CUDA only. CUDA trains in float16 with loss scaling; a CPU
    in bfloat16, and only where it runs bfloat16 natively (AVX512-BF16/AMX), about twice as fast there.
    A CPU without native bfloat16 would be slower, so it trains in float32 with a warning.
    """
    if device.type == "cuda":
        return torch.float16 if amp is None or amp else None
    if not amp or device.type != "cpu":
        return None
    from medpipes.core.inference.common import bfloat16_native

    if bfloat16_native(device):
        return torch.bfloat16
    warnings.warn("training.amp: this CPU has no native bfloat16; training in float32", stacklevel=2)
    return None


def pad_batch(tensors: Sequence[torch.Tensor], divisor: Sequence[int], value: float) -> torch.Tensor:
    """(C, *spatial) tensors padded at the end to one shape, a multiple of ``divisor``, and stacked."""
    dims = len(divisor)
    shape = [max(t.shape[1 + a] for t in tensors) for a in range(dims)]
    shape = [s + (-s) % d for s, d in zip(shape, divisor)]
    out = []
    for t in tensors:
        pads = []
        for a in reversed(range(dims)):
            pads += [0, shape[a] - t.shape[1 + a]]
        out.append(F.pad(t, pads, value=value) if any(pads) else t)
    return torch.stack(out)


@dataclass
class FitResult:
    """What a run produced: per-epoch rows, the best epoch and its metric, where the files are."""

    history: list[dict[str, float]]
    best_epoch: int
    best_metric: float
    output_dir: Path
    stopped_early: bool = False
    checkpoints: dict[str, Path] = field(default_factory=dict)


class Model:
    """A medpipes network with its loss and training settings; ``fit`` trains it on DataCollections."""

    def __init__(
        self,
        network: Network,
        loss: nn.Module,
        optimizer: OptimizerConfig,
        scheduler: SchedulerConfig,
        training: TrainingConfig,
        validation: ValidationConfig,
        *,
        input_group: str = "inputs",
        label_group: str = "ground_truth",
    ) -> None:
        if not isinstance(network, Network):
            raise InputError(f"Model needs a medpipes network (UNet, FCN, VGGNet), got {type(network).__name__}")
        if network.architecture not in SEGMENTATION_ARCHITECTURES:
            raise InputError(
                f"the training engine trains segmentation networks ({', '.join(SEGMENTATION_ARCHITECTURES)}); "
                f"model.architecture is {network.architecture!r}: choose one of those"
            )
        if network.spatial_dims != 3:
            raise InputError(
                f"the training engine trains 3D segmentation networks; model.spatial_dims is {network.spatial_dims}: "
                "use spatial_dims: 3"
            )
        self.network = network
        self.loss = loss
        self.optimizer_config = optimizer
        self.scheduler_config = scheduler
        self.training = training
        self.validation = validation
        self.input_group = input_group
        self.label_group = label_group
        divisor = tuple(network.size_divisor)
        for name, size in (("training.patch_size", training.patch_size), ("validation.patch_size", validation.patch_size)):
            if size is not None and any(s % d for s, d in zip(size, divisor)):
                raise InputError(f"{name} = {list(size)} must be a multiple of {list(divisor)} for this network; change it")

    # --- public -----------------------------------------------------------------------------------
    def fit(
        self,
        train: DataCollection,
        val: DataCollection,
        output_dir: str | os.PathLike[str],
        *,
        resume: str | os.PathLike[str] | None = None,
        stop_after_epoch: int | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> FitResult:
        """Train for ``training.epochs`` epochs (or until early stopping); ``resume`` continues from a last checkpoint.

        ``stop_after_epoch`` ends this call after that epoch (1-based) as an interruption would; ``extra``
        goes into every checkpoint's JSON.
        """
        t = self.training
        output_dir = Path(output_dir)
        joined_here = not (dist.is_available() and dist.is_initialized())
        ctx, device = init_distributed(t.device)
        amp = amp_dtype(t.amp, device)
        seed_everything(t.seed)
        network = self.network.to(device)
        module: nn.Module = network
        if ctx.active:
            ids = [device.index] if device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(network, device_ids=ids)
        optimizer = build_optimizer(network.parameters(), self.optimizer_config)
        mode = "max" if t.monitor == "val_dice" else "min"
        scheduler = build_scheduler(optimizer, self.scheduler_config, t.epochs, mode)
        # Loss scaling guards float16 gradients against underflow; bfloat16 has float32's range and needs none.
        scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
        history: list[dict[str, float]] = []
        best_metric, best_epoch, stale, start = -math.inf if mode == "max" else math.inf, 0, 0, 0
        if resume is not None:
            state = load_training_state(resume, network, optimizer, scheduler, scaler, device)
            history, start = state["history"], int(state["epoch"])
            best_metric, best_epoch, stale = float(state["best_metric"]), int(state["best_epoch"]), int(state["stale"])
            set_rng_state(state["rng"], resume)
        loader = self._train_loader(train, ctx)
        checkpoints = output_dir / "checkpoints"
        stopped_early = False
        for epoch in range(start + 1, t.epochs + 1):
            began = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_loss = self._train_epoch(module, loader, optimizer, scaler, device, amp, epoch, ctx)
            val_loss, val_dice = self._validate(network, val, device, amp, ctx)
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_dice": val_dice,
                "lr": lr,
                "seconds": time.perf_counter() - began,
            }
            history.append(row)
            value = row[t.monitor]
            improved = value > best_metric if mode == "max" else value < best_metric
            if improved:
                best_metric, best_epoch, stale = value, epoch, 0
            else:
                stale += 1
            if scheduler is not None:
                scheduler.step(value) if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) else scheduler.step()
            info = {**dict(extra or {}), "epoch": epoch, "metrics": row, "best_epoch": best_epoch}
            if ctx.is_main:
                checkpoints.mkdir(parents=True, exist_ok=True)
                if improved:
                    save_checkpoint(network, checkpoints / "best.safetensors", info)
                save_checkpoint(network, checkpoints / "last.safetensors", info)
                save_training_state(
                    checkpoints / "last.safetensors",
                    optimizer,
                    scheduler,
                    scaler,
                    {"epoch": epoch, "history": history, "best_metric": best_metric, "best_epoch": best_epoch, "stale": stale},
                )
                write_metrics_csv(history, output_dir / "metrics.csv")
                write_curves(history, output_dir / "curves.png")
            if on_epoch_end is not None and ctx.is_main:
                on_epoch_end(row)
            if t.early_stopping_patience is not None and stale >= t.early_stopping_patience:
                stopped_early = True
                break
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                break
        if isinstance(loader, DataLoader) and isinstance(loader.dataset, PatchQueue):
            loader.dataset.close()
        if ctx.active:
            dist.barrier()
            if joined_here:
                dist.destroy_process_group()
        network.eval()
        return FitResult(
            history,
            best_epoch,
            best_metric,
            output_dir,
            stopped_early,
            {"best": checkpoints / "best.safetensors", "last": checkpoints / "last.safetensors"},
        )

    # --- internals --------------------------------------------------------------------------------
    def _train_loader(self, train: DataCollection, ctx: Distributed) -> DataLoader:
        t = self.training
        groups = [self.input_group, self.label_group]
        if t.patch_size is None:
            dataset = CaseDataset(train, groups=groups, seed=t.seed)
            # DistributedSampler even with one process: the same seeded order, so a 2-process run with
            # batch B sees exactly the cases a 1-process run with batch 2B sees.
            sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=t.seed)
            return DataLoader(
                _EpochCases(dataset),
                batch_size=t.batch_size,
                sampler=_WithEpoch(sampler),
                num_workers=t.num_workers,
                collate_fn=list,
                worker_init_fn=seed_worker,
                generator=torch.Generator().manual_seed(t.seed),
                persistent_workers=t.num_workers > 0,
            )
        ids = train.case_ids
        per_rank = len(ids) // ctx.world_size
        if per_rank == 0:
            raise InputError(f"{len(ids)} training case(s) cannot be shared among {ctx.world_size} processes; add cases")
        shard = _case_subset(train, ids[ctx.rank : per_rank * ctx.world_size : ctx.world_size])  # equal shards
        sampler = PatchSampler(t.patch_size, label_group=self.label_group, label_fraction=t.label_fraction)
        queue = PatchQueue(
            shard,
            sampler,
            samples_per_volume=t.samples_per_volume,
            max_length=max(t.queue_length, t.samples_per_volume),
            groups=groups,
            num_workers=t.num_workers,
            seed=t.seed + 7919 * ctx.rank,
        )
        return DataLoader(queue, batch_size=t.batch_size, num_workers=0, collate_fn=list)

    def _batch(self, items: list[dict[str, Any]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        divisor = tuple(self.network.size_divisor)
        images = pad_batch([item[self.input_group] for item in items], divisor, 0.0)
        labels = pad_batch([item[self.label_group].long() for item in items], divisor, 0)
        images.requires_grad_(False)
        return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    def _train_epoch(
        self,
        module: nn.Module,
        loader: DataLoader,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        device: torch.device,
        amp: torch.dtype | None,
        epoch: int,
        ctx: Distributed,
    ) -> float:
        t = self.training
        if isinstance(loader.sampler, _WithEpoch):
            loader.sampler.set_epoch(epoch)
            loader.generator.manual_seed(t.seed * 1_000_003 + epoch)  # worker seeds depend on the epoch only
        else:
            loader.dataset.epoch = epoch
        module.train()
        optimizer.zero_grad(set_to_none=True)
        total, count, pending = 0.0, 0, 0
        n_batches = len(loader)  # known for both loaders, so a short last accumulation group is recognised
        for step, items in enumerate(loader, start=1):
            images, labels = self._batch(items, device)
            last_of_group = t.accumulate == 1 or step % t.accumulate == 0 or step == n_batches
            sync = last_of_group or not isinstance(module, nn.parallel.DistributedDataParallel)
            with module.no_sync() if not sync else contextlib.nullcontext():
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    loss = self.loss(module(images).float(), labels)  # the loss in float32 under any autocast
                scaler.scale(loss / t.accumulate).backward()
            pending += 1
            total += float(loss.detach())
            count += 1
            if last_of_group:
                if pending != t.accumulate:  # a short last group: scale its gradients as a full one
                    for p in module.parameters():
                        if p.grad is not None:
                            p.grad.mul_(t.accumulate / pending)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                pending = 0
        if count == 0:
            raise InputError("the training set gave no batch; add cases or lower training.batch_size")
        return _mean_over_ranks(total, count, device, ctx)

    def _validate(
        self, network: Network, val: DataCollection, device: torch.device, amp: torch.dtype | None, ctx: Distributed
    ) -> tuple[float, float]:
        from medpipes.core.data.torch_bridge import image_to_tensor
        from medpipes.core.inference import infer_patches, infer_whole

        v = self.validation
        network.eval()
        ids = val.case_ids[ctx.rank :: ctx.world_size]
        loss_sum, dice_sum, n = 0.0, 0.0, 0
        classes = list(range(1, max(network.out_channels, 2)))
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            for case_id in ids:
                loaded = val[case_id].load([self.input_group, self.label_group])
                image = image_to_tensor(loaded[self.input_group])[None]
                label = image_to_tensor(loaded[self.label_group])[None].long()
                if v.mode == "whole":
                    logits = infer_whole(network, image, batch_size=1, device=device)
                else:
                    patch = v.patch_size or self.training.patch_size
                    logits = infer_patches(
                        network, image, patch, overlap=v.overlap, blend=v.blend, batch_size=v.batch_size, device=device
                    )
                with torch.no_grad():
                    loss_sum += float(self.loss(logits.float(), label))
                if network.out_channels == 1:
                    prediction = (logits[0, 0] > 0).numpy().astype(np.uint8)
                else:
                    prediction = logits[0].argmax(0).numpy().astype(np.uint8)
                scores = dice_per_label(prediction, label[0, 0].numpy(), classes)
                values = [s for s in scores.values() if not math.isnan(s)]
                dice_sum += float(np.mean(values)) if values else 0.0
                n += 1
        network.train()
        totals = torch.tensor([loss_sum, dice_sum, float(n)], dtype=torch.float64)
        if ctx.active:
            totals = totals.to(device)
            dist.all_reduce(totals)
            totals = totals.cpu()
        if totals[2] == 0:
            raise InputError("the validation set is empty; give the split at least one validation subject")
        return float(totals[0] / totals[2]), float(totals[1] / totals[2])


class _WithEpoch(Sampler):
    """A DistributedSampler whose indices travel with the epoch, so persistent workers augment for the right epoch."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Shuffle and augment for epoch ``epoch``."""
        self.epoch = int(epoch)
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(index, self.epoch) for index in self.sampler])


class _EpochCases(Dataset):
    """CaseDataset read by (index, epoch) keys (a worker's copy never misses an epoch change)."""

    def __init__(self, dataset: CaseDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, epoch = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def _case_subset(collection: DataCollection, case_ids: Sequence[str]) -> DataCollection:
    """The named cases of ``collection`` (augmentation kept)."""
    subset = DataCollection((collection[c] for c in case_ids), source=collection.source)
    subset.augmentation = collection.augmentation
    return subset


def _mean_over_ranks(total: float, count: int, device: torch.device, ctx: Distributed) -> float:
    if not ctx.active:
        return total / count
    values = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    return float(values[0] / values[1])


# --- files ---------------------------------------------------------------------------------------
def write_metrics_csv(history: Sequence[Mapping[str, float]], path: Path) -> Path:
    """One row per epoch (``METRIC_COLUMNS``), written atomically."""
    return write_csv_rows(history, METRIC_COLUMNS, path, ".10g")


def read_metrics_csv(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """The rows of a metrics CSV as numbers."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def write_curves(history: Sequence[Mapping[str, float]], path: Path) -> Path:
    """Training and validation loss (left axis) and validation Dice (right axis) per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(6, 4), dpi=100)
    ax = figure.add_subplot(1, 1, 1)
    ax.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    ax.plot(epochs, [row["val_loss"] for row in history], "s-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    right = ax.twinx()
    right.plot(epochs, [row["val_dice"] for row in history], "^-", color="tab:green", label="validation Dice")
    right.set_ylabel("Dice")
    right.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="center right")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(str(tmp), format="png")
    return path


# --- training state beside the last checkpoint (safetensors for tensors, JSON for the rest) ----------
def state_paths(checkpoint: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(optimiser tensors .safetensors, scalars .json) beside checkpoint ``NAME.safetensors``."""
    path = Path(checkpoint)
    return path.with_name(path.stem + ".state.safetensors"), path.with_name(path.stem + ".state.json")


def _split_tensors(value: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``value`` with every tensor moved into ``tensors`` under its dotted path and replaced by a marker."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach().to("cpu").contiguous()
        return {"__tensor__": prefix}
    if isinstance(value, Mapping):
        return {"__map__": [[k, _split_tensors(v, f"{prefix}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__list__": [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    return value


def _join_tensors(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__map__" in value:
            return {k: _join_tensors(v, tensors) for k, v in value["__map__"]}
        if "__list__" in value:
            return [_join_tensors(v, tensors) for v in value["__list__"]]
        if "__float__" in value:
            return float(value["__float__"])
    return value


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch (CPU, CUDA) random states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], where: Any) -> None:
    """Restore what ``rng_state`` gave."""
    try:
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
        torch.set_rng_state(state["torch"].to(torch.uint8))
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["cuda"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: the saved random state is unreadable ({exc}); resume from another checkpoint") from None


def save_training_state(
    checkpoint: Path, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler, loop: Mapping[str, Any]
) -> None:
    """Optimiser, scheduler, scaler, loop counters and RNG states beside ``checkpoint`` (no pickle)."""
    tensors: dict[str, torch.Tensor] = {}
    rng = rng_state()
    rng["numpy"] = [rng["numpy"][0], rng["numpy"][1].tolist(), *rng["numpy"][2:]]
    document = {
        "format": STATE_FORMAT,
        "optimizer": _split_tensors(optimizer.state_dict(), "optimizer", tensors),
        "scheduler": _split_tensors(scheduler.state_dict(), "scheduler", tensors) if scheduler is not None else None,
        "scaler": _split_tensors(scaler.state_dict(), "scaler", tensors),
        "rng": _split_tensors(rng, "rng", tensors),
        "loop": _split_tensors(dict(loop), "loop", tensors),
    }
    tensor_path, json_path = state_paths(checkpoint)
    with atomic_path(tensor_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": STATE_FORMAT})
    atomic_write_text(json_path, json.dumps(document) + "\n")


def load_training_state(
    checkpoint: str | os.PathLike[str],
    network: Network,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> dict[str, Any]:
    """Load a last checkpoint's weights and states into the objects given; returns loop counters and RNG state."""
    checkpoint = Path(checkpoint)
    saved = load_checkpoint(checkpoint)  # refuses pickles and mismatched configs with one line
    document = read_checkpoint_config(checkpoint)
    if document["network"] != network.network_config():
        raise InputError(
            f"{checkpoint}: was trained with model {document['network']}, not the config's {network.network_config()}; "
            "resume with the config that made it"
        )
    tensor_path, json_path = state_paths(checkpoint)
    if not tensor_path.is_file() or not json_path.is_file():
        raise InputError(
            f"{checkpoint}: no training state beside it ({tensor_path.name}, {json_path.name}); "
            "resume from a run's checkpoints/last.safetensors"
        )
    from medpipes.core.store.formats import detect_weights_format

    if detect_weights_format(tensor_path) != "safetensors":
        raise InputError(f"{tensor_path}: not a safetensors file; resume from a run's checkpoints/last.safetensors")
    try:
        state = json.loads(json_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{json_path}: not valid JSON ({exc.msg}); the run's state is damaged") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise InputError(f"{json_path}: not a medpipes training state (format {STATE_FORMAT})")
    tensors = load_file(str(tensor_path))
    network.load_state_dict(saved.state_dict())
    network.to(device)
    optimizer.load_state_dict(_restore_optimizer(_join_tensors(state["optimizer"], tensors)))
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(_join_tensors(state["scheduler"], tensors))
    scaler.load_state_dict(_join_tensors(state["scaler"], tensors))
    loop = _join_tensors(state["loop"], tensors)
    loop["rng"] = _join_tensors(state["rng"], tensors)
    return loop


def _restore_optimizer(state: dict[str, Any]) -> dict[str, Any]:
    """JSON turned integer parameter ids into strings; give them back as ints."""
    state["state"] = {int(k): v for k, v in state["state"].items()}
    return state
