"""The training engine on tiny synthetic spheres: outputs, resume, accumulation, early stopping, schedules."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest
import torch
from medpipes.core.cli.main import main
from medpipes.core.cli.train import run_training
from medpipes.core.models.engine import read_metrics_csv
from safetensors.torch import load_file

_spec = importlib.util.spec_from_file_location("medpipes_tests_train_cases", Path(__file__).parent / "train_cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


@pytest.fixture(scope="module")
def sphere_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spheres")
    cases.write_sphere_cases(root, 6, size=16)
    return root


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config_file(tmp_path: Path, root: Path, name: str = "train.yaml", **sections: object) -> Path:
    config = cases.sphere_config(root, tmp_path / "run", ["case04", "case05"], **sections)
    return cases.write_config(tmp_path / name, config)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def same_weights(a: Path, b: Path, atol: float = 0.0) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=atol, rtol=0) for k in wa)


def test_cli_run_writes_checkpoints_metrics_curves_config_and_model_card(tmp_path, sphere_root, capsys):
    path = config_file(tmp_path, sphere_root, training={"epochs": 2})
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    rows = read_metrics_csv(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0.0 <= r["val_dice"] <= 1.0 and r["train_loss"] > 0 for r in rows)
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "config.yaml").read_text() == path.read_text()
    for name in ("best", "last"):
        assert (run / "checkpoints" / f"{name}.safetensors").is_file()
        document = json.loads((run / "checkpoints" / f"{name}.json").read_text())
        assert document["network"]["architecture"] == "unet" and "config_sha256" in document["extra"]
    card = (run / "MODEL_CARD.md").read_text()
    assert "case04, case05" in card and "sha256" in card and "torch " in card
    assert "trained: best epoch" in capsys.readouterr().out


def test_resumed_run_ends_with_the_weights_and_metrics_of_an_uninterrupted_run(tmp_path, sphere_root):
    sections = {
        "training": {"epochs": 4, "patch_size": [8, 8, 8], "samples_per_volume": 2, "batch_size": 2, "queue_length": 4},
        "augmentation": [{"flip": {"axes": [0, 1]}}],
        "model": {"dropout": 0.1},
        "scheduler": {"name": "cosine"},
    }
    whole = run_training(config_file(tmp_path, sphere_root, "a.yaml", **sections), output_dir=tmp_path / "whole")
    part = tmp_path / "part"
    first = run_training(config_file(tmp_path, sphere_root, "b.yaml", **sections), output_dir=part, stop_after_epoch=2)
    assert [r["epoch"] for r in first.history] == [1, 2]
    resumed = run_training(
        config_file(tmp_path, sphere_root, "b.yaml", **sections),
        output_dir=part,
        resume=part / "checkpoints" / "last.safetensors",
    )
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    for key in ("train_loss", "val_loss", "val_dice", "lr"):
        assert [r[key] for r in resumed.history] == [r[key] for r in whole.history], key
    assert same_weights(tmp_path / "whole/checkpoints/last.safetensors", part / "checkpoints/last.safetensors")
    assert same_weights(tmp_path / "whole/checkpoints/best.safetensors", part / "checkpoints/best.safetensors")


def test_gradient_accumulation_of_two_batches_of_one_equals_one_batch_of_two(tmp_path, sphere_root):
    one = run_training(
        config_file(tmp_path, sphere_root, "a.yaml", training={"batch_size": 2, "epochs": 2}), output_dir=tmp_path / "b2"
    )
    two = run_training(
        config_file(tmp_path, sphere_root, "b.yaml", training={"batch_size": 1, "accumulate": 2, "epochs": 2}),
        output_dir=tmp_path / "b1x2",
    )
    assert [r["train_loss"] for r in two.history] == pytest.approx([r["train_loss"] for r in one.history], rel=1e-4)
    assert same_weights(tmp_path / "b2/checkpoints/last.safetensors", tmp_path / "b1x2/checkpoints/last.safetensors", 1e-5)


def test_early_stopping_ends_after_patience_epochs_without_improvement(tmp_path, sphere_root):
    # lr 0: the validation Dice never changes, so only epoch 1 counts as an improvement
    result = run_training(
        config_file(
            tmp_path, sphere_root, optimizer={"lr": 0.0}, training={"epochs": 10, "early_stopping_patience": 2}
        )
    )
    assert result.stopped_early
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.best_epoch == 1


@pytest.mark.parametrize(
    ("optimizer", "scheduler", "lr_epoch_2"),
    [
        ({"name": "sgd", "lr": 0.1}, {"name": "step", "step_size": 1, "gamma": 0.5}, 0.05),
        ({"name": "adamw", "lr": 0.01}, {"name": "cosine", "min_lr": 0.0}, 0.005),
    ],
)
def test_optimizers_and_schedules_follow_the_config(tmp_path, sphere_root, optimizer, scheduler, lr_epoch_2):
    result = run_training(
        config_file(tmp_path, sphere_root, optimizer=optimizer, scheduler=scheduler, training={"epochs": 2})
    )
    lrs = [r["lr"] for r in result.history]
    assert lrs == pytest.approx([optimizer["lr"], lr_epoch_2])


def test_plateau_schedule_lowers_the_rate_after_each_epoch_without_a_new_best(tmp_path, sphere_root):
    result = run_training(
        config_file(
            tmp_path,
            sphere_root,
            optimizer={"name": "adam", "lr": 0.02},
            scheduler={"name": "plateau", "patience": 0, "factor": 0.1},
            training={"epochs": 4, "monitor": "val_loss"},
        )
    )
    rows = result.history
    best = rows[0]["val_loss"]
    for before, after in itertools.pairwise(rows):
        improved = before["val_loss"] < best * (1 - 1e-4) or before is rows[0]
        best = min(best, before["val_loss"])
        expected = before["lr"] if improved else before["lr"] * 0.1
        assert after["lr"] == pytest.approx(expected)


def test_patch_validation_and_seeded_runs_repeat_exactly(tmp_path, sphere_root):
    sections = {
        "training": {"epochs": 2, "patch_size": [8, 8, 8], "samples_per_volume": 2},
        "validation": {"mode": "patches", "overlap": 0.5},
    }
    a = run_training(config_file(tmp_path, sphere_root, "a.yaml", **sections), output_dir=tmp_path / "a")
    b = run_training(config_file(tmp_path, sphere_root, "b.yaml", **sections), output_dir=tmp_path / "b")
    assert [r["val_dice"] for r in a.history] == [r["val_dice"] for r in b.history]
    assert same_weights(tmp_path / "a/checkpoints/last.safetensors", tmp_path / "b/checkpoints/last.safetensors")


def test_loader_workers_change_nothing_seeded_augmentation_included(tmp_path, sphere_root):
    sections = {
        "augmentation": [{"flip": {"axes": [0, 1, 2]}}, {"gamma": {"log_gamma": 0.2}}],
        "training": {"epochs": 2},
    }
    run_training(config_file(tmp_path, sphere_root, "a.yaml", **sections), output_dir=tmp_path / "w0")
    sections["training"] = {"epochs": 2, "num_workers": 2}
    run_training(config_file(tmp_path, sphere_root, "b.yaml", **sections), output_dir=tmp_path / "w2")
    assert same_weights(tmp_path / "w0/checkpoints/last.safetensors", tmp_path / "w2/checkpoints/last.safetensors")


def test_an_output_folder_holding_a_run_is_not_overwritten_without_resume(tmp_path, sphere_root, capsys):
    path = config_file(tmp_path, sphere_root, training={"epochs": 1})
    assert main(["train", str(path)]) == 0
    before = (tmp_path / "run" / "checkpoints" / "last.safetensors").read_bytes()
    assert main(["train", str(path)]) == 2
    assert "already holds a training run; continue it with --resume" in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").read_bytes() == before


def test_a_classifier_is_refused_by_the_segmentation_engine(tmp_path, sphere_root, capsys):
    model = {"architecture": "vgg", "in_channels": 1, "out_channels": 2}
    config = cases.sphere_config(sphere_root, tmp_path / "run", ["case05"])
    config["model"] = model
    assert main(["train", str(cases.write_config(tmp_path / "t.yaml", config))]) == 2
    assert "trains segmentation networks (unet, fcn); model.architecture is 'vgg'" in capsys.readouterr().err


def test_accumulation_with_a_short_last_group_equals_batches_with_a_short_last_batch(tmp_path, sphere_root):
    # 4 training cases: batches of 3 give a batch of 3 and one of 1; accumulating 3 batches of 1 must do the same
    three = run_training(
        config_file(tmp_path, sphere_root, "a.yaml", training={"batch_size": 3, "epochs": 2}), output_dir=tmp_path / "b3"
    )
    accumulated = run_training(
        config_file(tmp_path, sphere_root, "b.yaml", training={"batch_size": 1, "accumulate": 3, "epochs": 2}),
        output_dir=tmp_path / "b1x3",
    )
    assert same_weights(tmp_path / "b3/checkpoints/last.safetensors", tmp_path / "b1x3/checkpoints/last.safetensors", 1e-4)
    assert [r["val_loss"] for r in accumulated.history] == pytest.approx([r["val_loss"] for r in three.history], rel=1e-4)


def test_a_collection_csv_and_a_split_file_choose_the_cases(tmp_path, sphere_root):
    from medpipes.core.data import Split, write_splits

    table = tmp_path / "cases.csv"
    rows = [f"case{n:02d},{sphere_root}/img/case{n:02d}_c0.nii.gz,{sphere_root}/seg/case{n:02d}.nii.gz" for n in range(6)]
    table.write_text("case,inputs/T1,ground_truth/seg\n" + "\n".join(rows) + "\n")
    write_splits([Split(1, 0, ("case00", "case01", "case02"), ("case03",), ("case04", "case05"))], tmp_path / "splits.csv")
    config = cases.sphere_config(sphere_root, tmp_path / "run", [], training={"epochs": 1})
    config["data"] = {"csv": "cases.csv"}
    config["splits"] = {"file": "splits.csv", "outer": 1, "inner": 0}
    assert main(["train", str(cases.write_config(tmp_path / "t.yaml", config))]) == 0
    card = (tmp_path / "run" / "MODEL_CARD.md").read_text()
    assert "Training subjects (3): case00, case01, case02" in card
    assert "Validation subjects (1): case03" in card


def test_init_weights_starts_training_from_a_checkpoint(tmp_path, sphere_root):
    first = run_training(config_file(tmp_path, sphere_root, "a.yaml", training={"epochs": 2}), output_dir=tmp_path / "first")
    start = tmp_path / "first" / "checkpoints" / "last.safetensors"
    # lr 0: the fine-tuned network must still hold exactly the weights it started from
    frozen = {"epochs": 1, "init_weights": str(start)}
    run_training(
        config_file(tmp_path, sphere_root, "b.yaml", training=frozen, optimizer={"name": "sgd", "lr": 0.0}),
        output_dir=tmp_path / "tuned",
    )
    assert same_weights(start, tmp_path / "tuned" / "checkpoints" / "last.safetensors")
    fresh = tmp_path / "fresh"
    run_training(config_file(tmp_path, sphere_root, "c.yaml", training={"epochs": 1}, optimizer={"name": "sgd", "lr": 0.0}), output_dir=fresh)
    assert not same_weights(start, fresh / "checkpoints" / "last.safetensors", atol=1e-3)
    assert first.best_epoch >= 1


def test_init_weights_of_another_network_is_refused_in_one_line(tmp_path, sphere_root, capsys):
    run_training(config_file(tmp_path, sphere_root, "a.yaml", training={"epochs": 1}), output_dir=tmp_path / "first")
    start = tmp_path / "first" / "checkpoints" / "last.safetensors"
    path = config_file(tmp_path, sphere_root, "b.yaml", training={"epochs": 1, "init_weights": str(start)}, model={"depth": 3})
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "training.init_weights" in err and "different network" in err and len(err.strip().splitlines()) == 1
    missing = config_file(tmp_path, sphere_root, "c.yaml", training={"epochs": 1, "init_weights": "nowhere.safetensors"})
    assert main(["train", str(missing)]) == 2
    assert "nowhere.safetensors: checkpoint not found" in capsys.readouterr().err


def test_amp_dtype_is_float16_on_cuda_bfloat16_on_a_native_cpu_and_float32_elsewhere(monkeypatch):
    from medpipes.core.inference import common
    from medpipes.core.models.engine import amp_dtype

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert amp_dtype(None, cuda) is torch.float16 and amp_dtype(True, cuda) is torch.float16
    assert amp_dtype(False, cuda) is None
    assert amp_dtype(None, cpu) is None and amp_dtype(False, cpu) is None  # a CPU only when asked
    monkeypatch.setattr(common, "bfloat16_native", lambda device: True)
    assert amp_dtype(True, cpu) is torch.bfloat16
    monkeypatch.setattr(common, "bfloat16_native", lambda device: False)
    with pytest.warns(UserWarning, match="no native bfloat16; training in float32"):
        assert amp_dtype(True, cpu) is None


def test_cpu_bfloat16_training_learns_like_float32_and_keeps_float32_weights(tmp_path, sphere_root, monkeypatch):
    from medpipes.core.inference import common

    monkeypatch.setattr(common, "bfloat16_native", lambda device: True)  # autocast runs on any CPU, only slower
    sections = {"training": {"epochs": 6, "amp": True}, "optimizer": {"lr": 0.01}}
    bf16 = run_training(config_file(tmp_path, sphere_root, "a.yaml", **sections), output_dir=tmp_path / "bf16")
    sections["training"]["amp"] = False
    fp32 = run_training(config_file(tmp_path, sphere_root, "b.yaml", **sections), output_dir=tmp_path / "fp32")
    assert bf16.history[-1]["train_loss"] < bf16.history[0]["train_loss"]
    assert bf16.history[-1]["val_dice"] == pytest.approx(fp32.history[-1]["val_dice"], abs=0.1)
    assert [r["train_loss"] for r in bf16.history] != [r["train_loss"] for r in fp32.history]  # autocast was on
    assert all(w.dtype == torch.float32 for w in weights(tmp_path / "bf16/checkpoints/last.safetensors").values())


def test_init_weights_from_a_narrower_unet_widens_it_and_keeps_its_weights(tmp_path, sphere_root, capsys):
    run_training(config_file(tmp_path, sphere_root, "a.yaml", training={"epochs": 1}), output_dir=tmp_path / "narrow")
    start = tmp_path / "narrow" / "checkpoints" / "last.safetensors"
    frozen = {"epochs": 1, "init_weights": str(start)}
    path = config_file(tmp_path, sphere_root, "b.yaml", training=frozen, model={"base_filters": 6}, optimizer={"name": "sgd", "lr": 0.0})
    assert main(["train", str(path)]) == 0
    assert "widened last.safetensors from base_filters 4 to 6" in capsys.readouterr().out
    narrow, wide = weights(start), weights(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert wide["encoder.0.units.0.0.weight"].shape[0] == 6
    assert torch.equal(wide["encoder.0.units.0.0.weight"][:4], narrow["encoder.0.units.0.0.weight"])
    assert torch.equal(wide["head.weight"][:, :4], narrow["head.weight"]) and not wide["head.weight"][:, 4:].any()
