"""`medpipes models ...` through the umbrella CLI: output, one-line errors, exit codes, bundle/import offline."""

from __future__ import annotations

import importlib.util
import sys
import tarfile
from pathlib import Path

import pytest

from medpipes.core.cli.main import main

_spec = importlib.util.spec_from_file_location("medpipes_tests_store_server", Path(__file__).with_name("store_server.py"))
srv = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = srv
_spec.loader.exec_module(srv)

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("MEDPIPES_HOME", str(home))
    monkeypatch.setenv("MEDPIPES_DOWNLOAD_RETRIES", "0")
    for var in (*PROXY_VARS, "MEDPIPES_OFFLINE", "MEDPIPES_MODEL_MIRRORS", "MEDPIPES_MANIFEST"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def server():
    s = srv.FileServer().start()
    yield s
    s.close()


@pytest.fixture
def two_models(tmp_path, server, monkeypatch) -> dict[str, bytes]:
    """A manifest (via MEDPIPES_MANIFEST) of two models served by the local server."""
    payloads = {"brain-unet": srv.safetensors_payload(3000, seed=1), "lung-unet": srv.safetensors_payload(2000, seed=2)}
    entries = []
    for model_id, data in payloads.items():
        path = f"/{model_id}/model.safetensors"
        server.files[path] = srv.Served(data)
        entries.append(srv.model_entry(model_id, data, [server.url(path)]))
    monkeypatch.setenv("MEDPIPES_MANIFEST", str(srv.write_manifest(tmp_path / "manifest.yaml", entries)))
    return payloads


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_with_the_repository_manifest_reports_every_shipped_file_ok(capsys):
    from medpipes.core.store import load_manifest

    n_files = sum(len(model.files) for model in load_manifest().models)
    code, out, err = run(capsys, "models", "verify")
    assert code == 0 and err == ""
    assert f"{n_files} files: {n_files} OK" in out and "0 corrupt" in out


def test_list_info_fetch_verify_remove(capsys, two_models, server, store_env):
    code, out, _ = run(capsys, "models", "list")
    assert code == 0
    assert "brain-unet" in out and "lung-unet" in out and "missing" in out

    code, out, _ = run(capsys, "models", "info", "brain-unet")
    assert code == 0
    assert "inputs: t1 (MR-T1w)" in out and "labels: 0=background, 1=brain" in out and "[missing]" in out

    code, out, _ = run(capsys, "models", "fetch", "brain-unet", "lung-unet")
    assert code == 0
    assert out.count(" OK (") == 2

    code, out, _ = run(capsys, "models", "verify")
    assert code == 0
    assert "2 files: 2 OK (0 shipped), 0 not fetched, 0 corrupt" in out

    cached = store_env / "models" / "brain-unet" / "1.0.0" / "model.safetensors"
    cached.write_bytes(b"\0" * cached.stat().st_size)
    code, out, err = run(capsys, "models", "verify")
    assert code == 1
    assert "CORRUPT  brain-unet/1.0.0/model.safetensors" in out
    assert err.count("\n") == 1 and "medpipes models fetch" in err

    code, out, _ = run(capsys, "models", "remove", "brain-unet")
    assert code == 0 and "removed 1 cached file(s)" in out
    assert not cached.exists()
    code, out, _ = run(capsys, "models", "verify", "lung-unet")
    assert code == 0 and "1 files: 1 OK" in out


def test_bundle_then_import_into_an_empty_home_verifies_without_network(capsys, two_models, server, tmp_path, monkeypatch):
    out_tar = tmp_path / "models.tar"
    code, out, _ = run(capsys, "models", "bundle", "--out", str(out_tar))
    assert code == 0 and "2 file(s)" in out
    with tarfile.open(out_tar) as tar:
        assert sorted(tar.getnames()) == [
            "medpipes-bundle.json", "models/brain-unet/1.0.0/model.safetensors", "models/lung-unet/1.0.0/model.safetensors"
        ]
    requests_so_far = len(server.requests)

    monkeypatch.setenv("MEDPIPES_HOME", str(tmp_path / "air-gapped"))
    monkeypatch.setenv("MEDPIPES_OFFLINE", "1")
    code, out, _ = run(capsys, "models", "verify", "brain-unet")
    assert code == 1  # nothing there yet
    code, out, _ = run(capsys, "models", "import", str(out_tar))
    assert code == 0 and "2 file(s) imported and verified" in out
    code, out, _ = run(capsys, "models", "verify", "brain-unet", "lung-unet")
    assert code == 0 and "2 files: 2 OK" in out
    assert len(server.requests) == requests_so_far
    assert (tmp_path / "air-gapped" / "models" / "lung-unet" / "1.0.0" / "model.safetensors").read_bytes() == two_models[
        "lung-unet"
    ]


def test_importing_a_damaged_bundle_keeps_nothing(capsys, two_models, tmp_path, monkeypatch):
    out_tar = tmp_path / "models.tar"
    assert run(capsys, "models", "bundle", "--out", str(out_tar), "lung-unet")[0] == 0
    raw = bytearray(out_tar.read_bytes())
    data = two_models["lung-unet"]
    at = bytes(raw).index(data) + len(data) // 2
    raw[at] ^= 0xFF
    out_tar.write_bytes(bytes(raw))
    monkeypatch.setenv("MEDPIPES_HOME", str(tmp_path / "air-gapped"))

    code, _, err = run(capsys, "models", "import", str(out_tar))

    assert code == 1 and "the bundle is damaged" in err and err.count("\n") == 1
    models = tmp_path / "air-gapped" / "models"
    assert not models.exists() or not [p for p in models.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("argv", "exit_code", "words"),
    [
        (("models", "info", "nope"), 2, "unknown model 'nope'"),
        (("models", "fetch", "brain-unet", "nope"), 2, "unknown model 'nope'"),
        (("models", "remove", "nope"), 2, "unknown model 'nope'"),
        (("models", "import", "/nonexistent/models.tar"), 2, "bundle not found"),
        (("models", "bundle", "--out", "/nonexistent/dir/m.tar"), 2, "output folder does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, two_models, server, argv, exit_code, words):
    code, _, err = run(capsys, *argv)
    assert code == exit_code
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err
    assert server.requests == []  # validated before any download


def test_a_failed_download_exits_1_with_one_line(capsys, two_models, server):
    del server.files["/brain-unet/model.safetensors"]
    code, _, err = run(capsys, "models", "fetch", "brain-unet")
    assert code == 1
    assert err.count("\n") == 1 and "HTTP 404" in err and server.url("/brain-unet/model.safetensors") in err


def test_a_malformed_manifest_exits_2_naming_model_and_key(capsys, tmp_path, monkeypatch):
    entry = srv.model_entry("brain-unet", b"x", ["https://example.invalid/m.safetensors"])
    entry["files"][0]["sha256"] = "abc"
    monkeypatch.setenv("MEDPIPES_MANIFEST", str(srv.write_manifest(tmp_path / "bad.yaml", [entry])))
    code, _, err = run(capsys, "models", "list")
    assert code == 2 and "model 'brain-unet'" in err and "files[0].sha256" in err and err.count("\n") == 1


def test_offline_fetch_exits_1_and_explains_how_to_bring_the_files(capsys, two_models, server, monkeypatch):
    monkeypatch.setenv("MEDPIPES_OFFLINE", "1")
    code, _, err = run(capsys, "models", "fetch", "lung-unet")
    assert code == 1 and "medpipes models fetch lung-unet" in err and err.count("\n") == 1
    assert server.requests == []


def test_verify_reports_a_shipped_file_as_ok(capsys, tmp_path, monkeypatch):
    data = srv.safetensors_payload(500)
    package = tmp_path / "pkgs" / "mp_cli_ship_probe"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "weights" / "model.safetensors").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    entry = srv.model_entry("brain-unet", data, shipped="mp_cli_ship_probe/weights/model.safetensors")
    manifest = srv.write_manifest(tmp_path / "shipped.yaml", [entry])

    code, out, _ = run(capsys, "models", "--manifest", str(manifest), "verify")

    assert code == 0
    assert "OK       brain-unet/1.0.0/model.safetensors  shipped" in out
    assert "1 files: 1 OK (1 shipped), 0 not fetched, 0 corrupt" in out
