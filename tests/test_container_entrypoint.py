"""The image's entrypoint and selftest, run here as plain Python (the docker tests run them in the image)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medpipes.core.containers import entrypoint
from medpipes.core.containers.selftest import compare_with_golden, run_selftest
from medpipes.core.errors import InputError, ProcessingError

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "brain_extraction"


@pytest.fixture
def image_env(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("MEDPIPES_PIPELINE", "brain_extraction")
    monkeypatch.setenv("MEDPIPES_INPUT_DIR", str(tmp_path / "input"))
    monkeypatch.setenv("MEDPIPES_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("MEDPIPES_HOME", str(tmp_path / "cache"))
    (tmp_path / "input").mkdir()
    return tmp_path


def test_help_needs_no_weights_and_shows_the_pipeline_options(image_env: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MEDPIPES_OFFLINE", "1")
    monkeypatch.setenv("MEDPIPES_MANIFEST", str(image_env / "absent.yaml"))  # help must not read it
    assert entrypoint.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "selftest" in out and '--user "$(id -u):$(id -g)"' in out and "--device" in out


def test_leading_names_are_inputs_under_input_and_the_rest_options() -> None:
    inputs, options = entrypoint.split_inputs(["t1.nii.gz", "flair.nii.gz", "--n4", "--device", "cpu"], Path("/input"))
    assert inputs == [Path("/input/t1.nii.gz"), Path("/input/flair.nii.gz")]
    assert options == ["--n4", "--device", "cpu"]
    assert entrypoint.split_inputs(["--n4"], Path("/input")) == ([Path("/input")], ["--n4"])


def test_empty_input_folder_is_a_one_line_error_naming_the_mount(image_env: Path, capsys) -> None:
    assert entrypoint.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "the folder is empty" in err and "-v PATH:" in err


def test_unwritable_output_names_the_user_option(image_env: Path, monkeypatch) -> None:
    monkeypatch.setattr(entrypoint.os, "access", lambda *a: False)
    with pytest.raises(InputError, match=r'--user "\$\(id -u\):\$\(id -g\)"'):
        entrypoint.check_output_dir(image_env / "output")


def test_missing_pipeline_setting_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("MEDPIPES_PIPELINE", raising=False)
    with pytest.raises(InputError, match="MEDPIPES_PIPELINE is not set"):
        entrypoint.pipeline_name()


def test_weights_are_downloaded_once_then_found_in_the_cache(image_env: Path, monkeypatch, capsys) -> None:
    # An image built with WEIGHTS=fetch has no shipped copy: emulate it with a manifest naming only a URL.
    import yaml

    from medpipes.core.store import load_manifest
    from medpipes.core.store.resolve import shipped_resource

    entry = load_manifest().get("brain-extraction-unet")
    data = yaml.safe_load((REPO / "models_manifest.yaml").read_text())
    model = next(m for m in data["models"] if m["id"] == entry.id)
    calls: list[str] = []

    def fake_download(urls, target, **kwargs):
        calls.append(urls[0])
        with shipped_resource(entry.file()).open("rb") as src:
            target.write_bytes(src.read())
        return urls[0]

    model["files"][0].pop("shipped")
    model["files"][0]["urls"] = ["http://127.0.0.1:9/model.safetensors"]
    (image_env / "m.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MEDPIPES_MANIFEST", str(image_env / "m.yaml"))
    monkeypatch.setattr("medpipes.core.store.resolve.download_verified", fake_download)
    entrypoint.ensure_weights(entry.id)
    entrypoint.ensure_weights(entry.id)
    err = capsys.readouterr().err.splitlines()
    assert len(calls) == 1
    assert "downloaded, sha256 verified" in err[0] and "found in the cache, sha256 verified" in err[1]


def test_golden_comparison_needs_dice_and_the_same_weights() -> None:
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[2:8, 2:8, 2:8] = 1
    shrunk = mask.copy()
    shrunk[2:4] = 0
    facts = {"model_sha256": "a" * 64}
    assert compare_with_golden(mask, mask, "a" * 64, facts).passed
    low = compare_with_golden(shrunk, mask, "a" * 64, facts)
    assert not low.passed and "below 0.99" in low.problems[0]
    other = compare_with_golden(mask, mask, "b" * 64, facts)
    assert not other.passed and "not the ones that made the golden mask" in other.problems[0]
    assert not compare_with_golden(mask[:5], mask, "a" * 64, facts).passed


def test_selftest_without_its_case_says_how_the_image_gets_one(image_env: Path) -> None:
    with pytest.raises(InputError, match="built without its selftest case"):
        run_selftest("brain_extraction", image_env / "no-selftest")


@pytest.mark.realdata
def test_selftest_on_the_golden_case_passes_and_fails_on_a_tampered_golden(image_env: Path, capsys) -> None:
    spec = json.loads((REPO / "containers" / "brain_extraction" / "selftest.json").read_text())
    folder = image_env / "selftest"
    folder.mkdir()
    for key in ("golden_mask", "golden_facts"):
        shutil.copyfile(REPO / spec[key], folder / Path(spec[key]).name)
        spec[key] = Path(spec[key]).name
    for name in spec["inputs"]:
        shutil.copyfile(REPO / name, folder / Path(name).name)
    spec["inputs"] = [Path(n).name for n in spec["inputs"]]
    (folder / "selftest.json").write_text(json.dumps(spec))
    assert run_selftest("brain_extraction", folder, ["--device", "cpu", "--threads", "1"]) == 0
    assert "PASS" in capsys.readouterr().err
    facts = json.loads((folder / spec["golden_facts"]).read_text())
    facts["model_sha256"] = "0" * 64
    (folder / spec["golden_facts"]).write_text(json.dumps(facts))
    with pytest.raises(ProcessingError, match="selftest of brain_extraction failed"):
        run_selftest("brain_extraction", folder, ["--device", "cpu", "--threads", "1"])
