"""`medpipes train` refuses bad configs, mismatched data and pickle checkpoints with one line and exit code 2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from medpipes.core.cli.main import main

_spec = importlib.util.spec_from_file_location("medpipes_tests_train_cases", Path(__file__).parent / "train_cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


@pytest.fixture(scope="module")
def sphere_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spheres")
    cases.write_sphere_cases(root, 4, size=16, channels=1)
    return root


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def write(tmp_path: Path, sphere_root: Path, **sections: object) -> Path:
    config = cases.sphere_config(sphere_root, tmp_path / "run", ["case03"], **sections)
    return cases.write_config(tmp_path / "train.yaml", config)


def test_unknown_top_level_key_is_named_with_the_valid_keys(tmp_path, sphere_root, capsys):
    path = write(tmp_path, sphere_root, epochs=3)
    code, err = run_cli(["train", str(path)], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "unknown key 'epochs'" in err and "valid keys are augmentation, data, loss, model" in err
    assert not (tmp_path / "run").exists()


def test_unknown_key_in_a_section_names_the_section_and_its_keys(tmp_path, sphere_root, capsys):
    path = write(tmp_path, sphere_root, training={"epoch": 3})
    code, err = run_cli(["train", str(path)], capsys)
    assert code == 2
    assert "training: unknown key 'epoch'" in err and "epochs" in err and "batch_size" in err


def test_wrong_type_names_the_key_and_the_expected_type(tmp_path, sphere_root, capsys):
    path = write(tmp_path, sphere_root, training={"epochs": "ten"})
    code, err = run_cli(["train", str(path)], capsys)
    assert code == 2
    assert "epochs = 'ten' has the wrong type; expected int" in err


def test_unknown_optimizer_lists_the_valid_ones(tmp_path, sphere_root, capsys):
    path = write(tmp_path, sphere_root, optimizer={"name": "lion"})
    code, err = run_cli(["train", str(path)], capsys)
    assert code == 2
    assert "name = 'lion' is not valid; choose one of adam, adamw, sgd" in err


def test_unknown_model_parameter_is_named(tmp_path, sphere_root, capsys):
    path = write(tmp_path, sphere_root, model={"archtecture_depth": 3})
    code, err = run_cli(["train", str(path)], capsys)
    assert code == 2
    assert "unknown key 'archtecture_depth'" in err and "base_filters" in err


def test_channel_count_mismatch_names_both_numbers(tmp_path, sphere_root, capsys):
    path = write(tmp_path, sphere_root, model={"in_channels": 2})
    code, err = run_cli(["train", str(path)], capsys)
    assert code == 2
    assert "the data has 1 input channel(s) (T1)" in err and "model.in_channels is 2" in err


def test_label_values_beyond_the_output_classes_are_refused(tmp_path, sphere_root, capsys):
    import nibabel as nib

    root = tmp_path / "three_labels"
    cases.write_sphere_cases(root, 3, size=16)
    seg = nib.load(str(root / "seg" / "case01.nii.gz"))
    labels = seg.get_fdata().astype("uint8") * 2
    nib.save(nib.Nifti1Image(labels, seg.affine), str(root / "seg" / "case01.nii.gz"))
    config = cases.sphere_config(root, tmp_path / "run", ["case02"])
    code, err = run_cli(["train", str(cases.write_config(tmp_path / "train.yaml", config))], capsys)
    assert code == 2
    assert "case 'case01' has label values up to 2 but model.out_channels is 2" in err
    assert "data.binarise_labels: true" in err


def test_pickle_checkpoint_given_to_resume_is_refused(tmp_path, sphere_root, capsys):
    path = write(tmp_path, sphere_root)
    pickle = tmp_path / "model.pth"
    torch.save({"weight": torch.zeros(2)}, pickle)
    code, err = run_cli(["train", str(path), "--resume", str(pickle)], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "is a pickle file" in err and "refused" in err
    assert not (tmp_path / "run").exists()


def test_resume_checkpoint_that_does_not_exist_is_named(tmp_path, sphere_root, capsys):
    path = write(tmp_path, sphere_root)
    code, err = run_cli(["train", str(path), "--resume", str(tmp_path / "nope.safetensors")], capsys)
    assert code == 2
    assert "nope.safetensors" in err and "not found" in err


def test_patch_size_the_network_cannot_take_is_refused(tmp_path, sphere_root, capsys):
    path = write(tmp_path, sphere_root, training={"patch_size": [7, 8, 8]})
    code, err = run_cli(["train", str(path)], capsys)
    assert code == 2
    assert "training.patch_size = [7, 8, 8] must be a multiple of [2, 2, 2]" in err
