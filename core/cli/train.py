"""`medpipes train CONFIG.yaml` and `medpipes evaluate PRED LABELS --out scores.csv`.

Under ``torchrun --nproc-per-node N $(which medpipes) train CONFIG.yaml`` every process trains on its
share of the data with DistributedDataParallel; only rank 0 writes files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from medpipes.core.errors import InputError


def run_training(
    config_path: str | os.PathLike[str],
    *,
    resume: str | os.PathLike[str] | None = None,
    stop_after_epoch: int | None = None,
    output_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Read the config, prepare the data, train, and write config copy, metrics, curves, checkpoints and card."""
    from medpipes.core.io.atomic import atomic_write_text
    from medpipes.core.models import build_loss, build_network, load_checkpoint
    from medpipes.core.models.engine import Model, seed_everything
    from medpipes.core.models.model_card import write_model_card
    from medpipes.core.models.train_config import config_hash, load_train_config
    from medpipes.core.models.train_data import prepare_training_data
    from medpipes.core.models.widen import widen_into, widening_problem

    config_path = Path(config_path)
    config, base = load_train_config(config_path)
    where = str(config_path)
    out = Path(output_dir) if output_dir is not None else config.resolve(config.output_dir, base)
    assert out is not None
    seed_everything(config.training.seed)  # the initial weights depend on the seed only
    network = build_network(config.model, where=f"{where}: model")
    if config.training.init_weights is not None and resume is None:
        init_path = config.resolve(config.training.init_weights, base)
        assert init_path is not None
        start = load_checkpoint(init_path)  # refuses a missing, pickled or damaged checkpoint in one line
        if start.network_config() == network.network_config():
            network.load_state_dict(start.state_dict())
        elif widening_problem(start, network) is None:
            widen_into(start, network)  # a narrower U-Net of the same design: its function, more capacity
            print(f"training.init_weights: widened {init_path.name} from base_filters "
                  f"{start.config.base_filters} to {network.config.base_filters} (same output at the start)")
        else:
            raise InputError(
                f"{where}: training.init_weights {init_path} holds a different network ({start.network_config()}) "
                f"than the config's model ({network.network_config()}); start from a checkpoint of the same model "
                "(or of a narrower plain U-Net that differs only in base_filters)"
            )
    loss_params = dict(config.loss or {"name": "dice_ce"})
    loss = build_loss(loss_params.pop("name"), **loss_params)
    if resume is None and (out / "checkpoints" / "last.safetensors").exists():
        raise InputError(
            f"{out}: already holds a training run; continue it with --resume {out / 'checkpoints' / 'last.safetensors'} "
            "or choose another output_dir"
        )
    if resume is not None:
        if not Path(resume).is_file():
            raise InputError(f"{resume}: checkpoint to resume from not found; give a run's checkpoints/last.safetensors")
        load_checkpoint(resume)  # refuses a pickle or a damaged checkpoint before anything is written
    model = Model(
        network,
        loss,
        config.optimizer,
        config.scheduler,
        config.training,
        config.validation,
        input_group=config.data.input_group,
        label_group=config.data.label_group,
    )
    data = prepare_training_data(config, base, where)
    digest = config_hash(config)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if rank0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", config_path.read_text(encoding="utf-8"))
    result = model.fit(
        data.train,
        data.val,
        out,
        resume=resume,
        stop_after_epoch=stop_after_epoch,
        extra={"config_sha256": digest, "channels": data.channels},
    )
    if rank0:
        write_model_card(
            out / "MODEL_CARD.md",
            title=out.name,
            data_source=data.source,
            channels=data.channels,
            train_subjects=data.train_subjects,
            val_subjects=data.val_subjects,
            network=network.network_config(),
            history=result.history,
            best_epoch=result.best_epoch,
            monitor=config.training.monitor,
            config_hash=digest,
            config_name=config_path.name,
            stopped_early=result.stopped_early,
        )
    return result


def train(
    config: Annotated[Path, typer.Argument(help="Training config (YAML).")],
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue from a run's checkpoints/last.safetensors.")
    ] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Overrides output_dir.")] = None,
    stop_after_epoch: Annotated[
        int | None, typer.Option("--stop-after-epoch", help="End after this epoch (resume later with --resume).")
    ] = None,
) -> None:
    """Train a network from a YAML config; writes checkpoints, metrics.csv, curves.png, config.yaml and MODEL_CARD.md.

    Example: medpipes train brain.yaml   (multi-GPU: torchrun --nproc-per-node 4 $(which medpipes) train brain.yaml)
    """
    result = run_training(config, resume=resume, stop_after_epoch=stop_after_epoch, output_dir=output_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        last = result.history[-1] if result.history else None
        summary = f"best epoch {result.best_epoch}" + (f", last val_dice {last['val_dice']:.4f}" if last else "")
        typer.echo(f"trained: {summary}; outputs in {result.output_dir}")


def evaluate(
    predictions: Annotated[Path, typer.Argument(help="Folder of predicted label maps, or a CSV (case,prediction[,label]).")],
    labels: Annotated[Path, typer.Argument(help="Folder of reference label maps (matched by file name).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scores CSV to write.")] = Path("scores.csv"),
    label: Annotated[
        list[int] | None, typer.Option("--label", "-l", help="Label value to score (repeatable; default: all found).")
    ] = None,
    binarise: Annotated[bool, typer.Option("--binarise", help="Score every label > 0 as one foreground label.")] = False,
) -> None:
    """Score predictions against labels: Dice, IoU, sensitivity, specificity and HD95 (mm) per case and label.

    Example: medpipes evaluate preds/ labels/ --out scores.csv
    """
    from medpipes.core.models.evaluate import evaluate as run_evaluate

    rows = run_evaluate(predictions, labels, out, labels=label or None, binarise=binarise)
    for row in rows:
        if row["case"] == "mean":
            typer.echo(f"label {row['label']}: mean Dice {float(row['dice']):.4f}, HD95 {float(row['hd95_mm']):.2f} mm")
    typer.echo(f"wrote {out}")
