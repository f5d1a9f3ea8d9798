"""The model manifest's schema, weights formats by content, and the manifest inside a built wheel."""

from __future__ import annotations

import copy
import importlib.util
import pickle
import shutil
import subprocess
import sys
import venv
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from medpipes.core.store import (
    ManifestError,
    OfflineError,
    StoreConfig,
    WeightsFormatError,
    check_file,
    detect_weights_format,
    fetch_model,
    load_manifest,
    load_state_dict,
    load_torchscript,
    parse_manifest,
)
from medpipes.core.store.errors import StoreConfigError

_spec = importlib.util.spec_from_file_location("medpipes_tests_store_server", Path(__file__).with_name("store_server.py"))
srv = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = srv
_spec.loader.exec_module(srv)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("MEDPIPES_HOME", str(home))
    for var in ("MEDPIPES_OFFLINE", "MEDPIPES_MODEL_MIRRORS", "MEDPIPES_MANIFEST", "HTTP_PROXY", "HTTPS_PROXY",
                "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    return home


def valid_entry(model_id: str = "brain-unet") -> dict:
    return srv.model_entry(model_id, b"x" * 10, ["https://example.invalid/model.safetensors"])


def text_of(models: list[dict], **top) -> str:
    return yaml.safe_dump({"schema_version": 1, **top, "models": models}, sort_keys=False)


def broken(change) -> str:
    entry = copy.deepcopy(valid_entry())
    change(entry)
    return text_of([entry])


# --- schema -------------------------------------------------------------------------------------------


def test_repository_manifest_is_read_through_the_package_and_validates():
    manifest = load_manifest()
    assert Path(manifest.source).name == "models_manifest.yaml"
    assert Path(manifest.source).read_text() == (ROOT / "models_manifest.yaml").read_text()
    assert all(f.sha256 for m in manifest.models for f in m.files)


def test_loading_the_manifest_does_not_import_torch():
    code = "import sys; from medpipes.core.store import load_manifest; load_manifest(); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_medpipes_manifest_env_var_selects_another_manifest(tmp_path, monkeypatch):
    path = tmp_path / "other.yaml"
    path.write_text(text_of([valid_entry()]))
    monkeypatch.setenv("MEDPIPES_MANIFEST", str(path))
    manifest = load_manifest()
    assert manifest.ids() == ["brain-unet"] and manifest.source == str(path)
    model = manifest.get("brain-unet")
    assert model.inputs[0].modality == "MR-T1w" and model.labels == {0: "background", 1: "brain"}
    assert model.files[0].format == "safetensors"


def test_url_pattern_gives_each_file_its_release_url():
    entry = valid_entry()
    del entry["files"][0]["urls"]
    manifest = parse_manifest(text_of([entry], url_pattern="https://example.invalid/releases/v{version}/{id}-{name}"))
    assert manifest.get("brain-unet").files[0].urls == ("https://example.invalid/releases/v1.0.0/brain-unet-model.safetensors",)


def drop(key):
    return lambda e: e.pop(key)


def drop_file_key(key):
    return lambda e: e["files"][0].pop(key)


def set_file(key, value):
    return lambda e: e["files"][0].__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (drop_file_key("sha256"), "files[0].sha256", "is missing"),
        (set_file("sha256", "ab" * 20), "files[0].sha256", "has 40 characters"),
        (set_file("sha256", "G" * 64), "files[0].sha256", "hex"),
        (lambda e: e.__setitem__("weights_url", "x"), "weights_url", "is unknown"),
        (set_file("mirror", "x"), "files[0].mirror", "is unknown"),
        (set_file("urls", ["ftp://example.org/m.safetensors"]), "files[0].urls[0]", "not an http(s) URL"),
        (set_file("urls", ["not a url"]), "files[0].urls[0]", "not an http(s) URL"),
        (set_file("size", -5), "files[0].size", "positive integer"),
        (set_file("size", "12MB"), "files[0].size", "positive integer"),
        (drop("provenance"), "provenance", "is missing"),
        (drop("metrics"), "metrics", "is missing"),
        (lambda e: e.__setitem__("version", 1.0), "version", "quoted string"),
        (lambda e: e.__setitem__("inputs", []), "inputs", "non-empty list"),
        (lambda e: e.__setitem__("labels", {"one": "brain"}), "labels.one", "integer"),
        (set_file("format", "pickle"), "files[0].format", "pickles are refused"),
        (set_file("name", "model.pth"), "files[0].name", "pickle"),
        (set_file("format", "torchscript"), "files[0].format", "imported"),
        (set_file("shipped", "../weights/model.safetensors"), "files[0].shipped", "package/relative/path"),
        (drop_file_key("urls"), "files[0].urls", "is missing"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_every_malformed_entry_names_the_model_and_the_key(change, key, words):
    with pytest.raises(ManifestError) as caught:
        parse_manifest(broken(change), "test.yaml")
    message = str(caught.value)
    assert message.startswith("test.yaml: model 'brain-unet': ")
    assert f"key '{key}'" in message and words in message
    assert "\n" not in message


def test_duplicate_model_id_is_refused():
    with pytest.raises(ManifestError, match=r"model 'brain-unet': duplicate id"):
        parse_manifest(text_of([valid_entry(), valid_entry()]))


def test_shipped_files_over_25_mb_are_refused():
    def ship_big(e):
        e["files"][0].update(shipped="medpipes.pipelines.x/weights/model.safetensors", size=26 * 1024 * 1024)

    with pytest.raises(ManifestError, match=r"key 'files\[0\].size' .* 25 MB"):
        parse_manifest(broken(ship_big))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("schema_version: 2\nmodels: []\n", "schema_version is 2"),
        ("schema_version: 1\nmodel: []\n", "unknown top-level key 'model'"),
        ("schema_version: 1\nmodels: [\n", "fix the YAML syntax"),
        ("schema_version: 1\nmodels: {}\n", "must be a list"),
        ("schema_version: 1\nurl_pattern: https://x.org/{model}\nmodels: []\n", "{model}"),
    ],
)
def test_malformed_manifest_files_are_refused_in_one_line(text, words):
    with pytest.raises(ManifestError, match=None) as caught:
        parse_manifest(text, "m.yaml")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_shipped_file_whose_size_differs_from_the_manifest_is_reported_by_size(tmp_path, monkeypatch):
    data = srv.safetensors_payload(1000)
    package = tmp_path / "pkgs" / "mp_size_probe"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "weights" / "model.safetensors").write_bytes(data + b"\0")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    entry = srv.model_entry("brain-unet", data, shipped="mp_size_probe/weights/model.safetensors")
    manifest = parse_manifest(text_of([entry]))
    model = manifest.get("brain-unet")

    status = check_file(model, model.files[0], StoreConfig.from_env())

    assert status.state == "corrupt"
    assert f"size is {len(data) + 1} bytes, the manifest's 'size' is {len(data)}" in status.detail


def test_unknown_model_lists_the_known_ids():
    with pytest.raises(ManifestError, match=r"unknown model 'nope' .* known models: brain-unet"):
        parse_manifest(text_of([valid_entry()])).get("nope")


def test_invalid_store_environment_is_named(monkeypatch):
    monkeypatch.setenv("MEDPIPES_MODEL_MIRRORS", "mirror.example.org")
    with pytest.raises(StoreConfigError, match="MEDPIPES_MODEL_MIRRORS"):
        StoreConfig.from_env()
    monkeypatch.delenv("MEDPIPES_MODEL_MIRRORS")
    monkeypatch.setenv("MEDPIPES_OFFLINE", "maybe")
    with pytest.raises(StoreConfigError, match="MEDPIPES_OFFLINE"):
        StoreConfig.from_env()


def test_default_home_is_the_user_cache(monkeypatch):
    monkeypatch.delenv("MEDPIPES_HOME")
    assert StoreConfig.from_env().home == Path("~/.cache/medpipes").expanduser()


# --- weights formats ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory) -> dict[str, Path]:
    """Real files written by torch: a TorchScript archive, torch.save pickles (zip and legacy), a plain pickle."""
    import torch

    folder = tmp_path_factory.mktemp("weights")
    net = torch.nn.Linear(3, 2)
    paths = {
        "torchscript": folder / "net.pt",
        "torch_save_zip": folder / "state.pt",
        "torch_save_legacy": folder / "state_legacy.pth",
        "plain_pickle": folder / "weights.pkl",
    }
    with warnings.catch_warnings():  # torch 2.13 marks torch.jit.trace deprecated; imported models still use it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.trace(net, torch.zeros(1, 3)).save(str(paths["torchscript"]))
    torch.save(net.state_dict(), paths["torch_save_zip"])
    torch.save(net.state_dict(), paths["torch_save_legacy"], _use_new_zipfile_serialization=False)
    paths["plain_pickle"].write_bytes(pickle.dumps({"w": np.zeros(3)}))
    return paths


def test_formats_are_detected_by_content_not_by_suffix(torch_files, tmp_path):
    safetensors_file = tmp_path / "weights.bin"
    safetensors_file.write_bytes(srv.safetensors_payload(100))
    assert detect_weights_format(safetensors_file) == "safetensors"
    assert detect_weights_format(torch_files["torchscript"]) == "torchscript"
    assert detect_weights_format(torch_files["torch_save_zip"]) == "pickle"
    assert detect_weights_format(torch_files["torch_save_legacy"]) == "pickle"
    assert detect_weights_format(torch_files["plain_pickle"]) == "pickle"


def serve_locally(tmp_path: Path, name: str, data: bytes, **entry_keys) -> object:
    """A manifest whose one file is already in the cache (so no network is needed)."""
    entry = srv.model_entry("m", data, ["https://example.invalid/unused"], name=name, **entry_keys.pop("file", {}))
    entry.update(entry_keys)
    manifest = load_manifest(srv.write_manifest(tmp_path / "manifest.yaml", [entry]))
    target = StoreConfig.from_env().models_dir / "m" / "1.0.0" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return manifest


def test_a_pickle_named_safetensors_is_refused_even_with_a_matching_sha256(torch_files, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPIPES_OFFLINE", "1")
    manifest = serve_locally(tmp_path, "model.safetensors", torch_files["torch_save_zip"].read_bytes())
    model = manifest.get("m")
    status = check_file(model, model.files[0], StoreConfig.from_env())
    assert status.state == "corrupt" and "pickle" in status.detail and "refused" in status.detail


def test_load_state_dict_returns_the_tensors_of_a_safetensors_file(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("MEDPIPES_OFFLINE", "1")
    data = srv.safetensors_payload(64)
    manifest = serve_locally(tmp_path, "model.safetensors", data)

    state = load_state_dict("m", manifest=manifest)

    assert set(state) == {"conv.weight", "conv.bias"}
    assert isinstance(state["conv.weight"], torch.Tensor) and state["conv.weight"].shape == (64,)


def test_imported_torchscript_with_matching_sha256_loads(torch_files, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("MEDPIPES_OFFLINE", "1")
    manifest = serve_locally(tmp_path, "net.pt", torch_files["torchscript"].read_bytes(), imported=True,
                             file={"format": "torchscript"})

    module = load_torchscript("m", manifest=manifest)

    assert module(torch.zeros(1, 3)).shape == (1, 2)
    with pytest.raises(WeightsFormatError, match="load_torchscript"):
        load_state_dict("m", manifest=manifest)


def test_torchscript_whose_sha256_differs_is_not_used(torch_files, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPIPES_OFFLINE", "1")
    data = torch_files["torchscript"].read_bytes()
    manifest = serve_locally(tmp_path, "net.pt", data, imported=True, file={"format": "torchscript"})
    cached = StoreConfig.from_env().models_dir / "m" / "1.0.0" / "net.pt"
    cached.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))

    with pytest.raises(OfflineError, match="MEDPIPES_OFFLINE=1"):
        fetch_model("m", manifest)
    assert not cached.exists()  # the tampered copy was deleted, never loaded


# --- packaging ----------------------------------------------------------------------------------------


def test_a_built_wheel_carries_the_manifest_and_reads_it_when_installed(tmp_path):
    """pip wheel (no network) then install into a throwaway venv: load_manifest() reads the wheel's copy."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("core", "pipelines"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "models_manifest.yaml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels)],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("medpipes-*.whl")
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("medpipes/manifest/models_manifest.yaml") == (ROOT / "models_manifest.yaml").read_bytes()

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    site = next(env_dir.glob("lib/python*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages")]
    code = (
        "import sys; sys.path.extend(sys.argv[1:])\n"  # dependencies (numpy, yaml...) after the wheel's files
        "from medpipes.core.store import load_manifest; import medpipes.core.store as s\n"
        "print(s.__file__); print(load_manifest().source)"
    )
    out = subprocess.run([str(python), "-c", code, *deps], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    module_file, manifest_source = out.stdout.split()
    assert module_file.startswith(str(site)) and manifest_source == str(site / "medpipes" / "manifest" / "models_manifest.yaml")
