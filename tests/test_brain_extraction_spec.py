"""The brain-extraction plan: pipeline.yaml, the training config and the hold-out rule agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from medpipes.core.models.train_config import load_train_config
from medpipes.pipelines.brain_extraction import spec

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "pipelines" / "brain_extraction"
HELD_OUT = {"Subj16", "Subj17", "Subj18"}
STAGES = ("train.yaml", "finetune.yaml", "refine.yaml", "widen.yaml")  # scripts/train_brain_extraction.py runs them in order


def _train_script():
    path = ROOT / "scripts" / "train_brain_extraction.py"
    module_spec = importlib.util.spec_from_file_location("train_brain_extraction", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_shipped_spec_loads_from_package_resources() -> None:
    plan = spec()
    assert plan.name == "brain_extraction" and plan.model == "brain-extraction-unet"
    assert plan.output("mask") == "brain_mask" and plan.output("masked_image") == "brain"
    assert plan.plausibility["volume_ml"] == [800, 2200]


def test_inference_preprocessing_equals_training_preprocessing() -> None:
    for name in STAGES:
        train = yaml.safe_load((FOLDER / name).read_text())
        assert list(spec().preprocessing) == train["preprocessing"], name


def test_training_config_is_valid_and_its_model_takes_one_channel() -> None:
    config, _ = load_train_config(FOLDER / "train.yaml")
    assert config.model["in_channels"] == 1 and config.model["out_channels"] == 2


@pytest.mark.parametrize("previous, stage", list(zip(STAGES, STAGES[1:])))
def test_each_later_stage_starts_from_the_previous_stage_on_the_same_data(previous: str, stage: str) -> None:
    first, base = load_train_config(FOLDER / previous)
    second, _ = load_train_config(FOLDER / stage)
    assert second.data == first.data and second.splits == first.splits
    assert second.preprocessing == first.preprocessing and second.loss == first.loss
    if stage == "widen.yaml":  # the same U-Net, wider: started from the previous one widened
        assert second.model["base_filters"] > first.model["base_filters"]
        assert {**second.model, "base_filters": first.model["base_filters"]} == first.model
    else:
        assert second.model == first.model
    init = second.resolve(second.training.init_weights, base)
    assert init == first.resolve(first.output_dir, base) / "checkpoints" / "best.safetensors"
    assert second.resolve(second.output_dir, base) != first.resolve(first.output_dir, base)


def test_held_out_subjects_never_enter_training() -> None:
    for name in STAGES:
        config, _ = load_train_config(FOLDER / name)
        cases = config.splits.train + config.splits.val
        assert cases and all(case.split("_")[0] in {f"Subj{n}" for n in range(1, 16)} for case in cases), name
        assert not HELD_OUT & {case.split("_")[0] for case in cases}
    script = _train_script()
    assert not HELD_OUT & set(script.TRAINING_SUBJECTS)
    assert script.data_root_from_config() == (ROOT / "build" / "brain_extraction" / "data").resolve()
    assert script.FINETUNE == FOLDER / "finetune.yaml" and script.REFINE == FOLDER / "refine.yaml"
    assert script.WIDEN == FOLDER / "widen.yaml"
