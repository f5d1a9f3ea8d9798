"""Model store downloads against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medpipes.core.store import (
    ChecksumError,
    DownloadError,
    OfflineError,
    StoreConfig,
    StoreConfigError,
    check_file,
    fetch_model,
    load_manifest,
    sha256_file,
)

_spec = importlib.util.spec_from_file_location("medpipes_tests_store_server", Path(__file__).with_name("store_server.py"))
srv = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = srv
_spec.loader.exec_module(srv)

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "NO_PROXY", "no_proxy")
PATH = "/weights/m/model.safetensors"


@pytest.fixture(autouse=True)
def store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MEDPIPES_HOME in tmp_path; no proxy, mirror, offline or manifest setting leaks in from the machine."""
    home = tmp_path / "home"
    monkeypatch.setenv("MEDPIPES_HOME", str(home))
    for var in (*PROXY_VARS, "MEDPIPES_OFFLINE", "MEDPIPES_MODEL_MIRRORS", "MEDPIPES_MANIFEST",
                "MEDPIPES_DOWNLOAD_TIMEOUT", "MEDPIPES_DOWNLOAD_RETRIES"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def server():
    s = srv.FileServer().start()
    yield s
    s.close()


@pytest.fixture
def payload() -> bytes:
    return srv.safetensors_payload()


def fast(**overrides) -> StoreConfig:
    """Settings from the environment with test-sized timeouts and backoff."""
    settings = {"connect_timeout_s": 5.0, "read_timeout_s": 5.0, "retries": 2, "backoff_s": 0.01, **overrides}
    return StoreConfig.from_env(**settings)


def manifest_for(tmp_path: Path, entry: dict):
    return load_manifest(srv.write_manifest(tmp_path / "manifest.yaml", [entry]))


def cache_files(home: Path) -> list[Path]:
    """Every file in the models cache, hidden partial downloads included (locks live apart, in home/locks)."""
    models = home / "models"
    return sorted(p for p in models.rglob("*") if p.is_file()) if models.exists() else []


def test_fetch_downloads_verifies_and_serves_the_cache_next_time(tmp_path, server, payload, store_env):
    server.files[PATH] = srv.Served(payload)
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))

    path = fetch_model("m", manifest, fast())["model.safetensors"]

    assert path == store_env / "models" / "m" / "1.0.0" / "model.safetensors"
    assert path.read_bytes() == payload
    assert cache_files(store_env) == [path]  # no partial or lock file left
    assert fetch_model("m", manifest, fast())["model.safetensors"] == path
    assert len(server.hits(PATH)) == 1


def test_connection_cut_mid_file_resumes_with_a_range_request(tmp_path, server, payload):
    cut = len(payload) // 2
    server.files[PATH] = srv.Served(payload, mode="cut_once", cut_at=cut)
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))

    path = fetch_model("m", manifest, fast())["model.safetensors"]

    first, second = server.hits(PATH)
    assert "Range" not in first
    assert second["Range"] == f"bytes={cut}-"
    assert sha256_file(path) == srv.sha256(payload)


def test_wrong_checksum_names_url_and_both_hashes_and_leaves_nothing_in_the_cache(tmp_path, server, payload, store_env):
    served = bytearray(payload)
    served[-1] ^= 0xFF  # same size, other bytes
    server.files[PATH] = srv.Served(bytes(served))
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))

    with pytest.raises(ChecksumError) as caught:
        fetch_model("m", manifest, fast())

    message = str(caught.value)
    assert server.url(PATH) in message
    assert srv.sha256(payload) in message and srv.sha256(bytes(served)) in message
    assert cache_files(store_env) == []


def test_404_on_the_first_mirror_falls_through_to_the_next(tmp_path, server, payload, monkeypatch):
    server.files["/mirror-b/m/1.0.0/model.safetensors"] = srv.Served(payload)
    monkeypatch.setenv("MEDPIPES_MODEL_MIRRORS", f"{server.base}/mirror-a, {server.base}/mirror-b/")
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url("/canonical/model.safetensors")]))

    path = fetch_model("m", manifest, fast())["model.safetensors"]

    assert path.read_bytes() == payload
    assert len(server.hits("/mirror-a/m/1.0.0/model.safetensors")) == 1
    assert len(server.hits("/mirror-b/m/1.0.0/model.safetensors")) == 1
    assert server.hits("/canonical/model.safetensors") == []


def test_stalled_server_raises_a_timeout_within_the_configured_seconds(tmp_path, server, payload):
    server.files[PATH] = srv.Served(payload, mode="stall")
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))

    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"timed out: no data for 1 s") as caught:
        fetch_model("m", manifest, fast(read_timeout_s=1.0, retries=0))
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 2.5
    assert server.url(PATH) in str(caught.value)


def test_retries_resume_after_each_cut_when_the_timeout_comes_from_the_environment(tmp_path, server, payload, monkeypatch):
    monkeypatch.setenv("MEDPIPES_DOWNLOAD_TIMEOUT", "2")
    monkeypatch.setenv("MEDPIPES_DOWNLOAD_RETRIES", "0")
    assert StoreConfig.from_env().read_timeout_s == 2.0 and StoreConfig.from_env().retries == 0
    server.files[PATH] = srv.Served(payload, mode="cut_once", cut_at=1000)
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))

    with pytest.raises(DownloadError, match="connection cut at byte 1000"):
        fetch_model("m", manifest, StoreConfig.from_env(backoff_s=0.01))  # no retry allowed
    path = fetch_model("m", manifest, StoreConfig.from_env(backoff_s=0.01))["model.safetensors"]  # resumes the partial

    assert server.hits(PATH)[-1]["Range"] == "bytes=1000-"
    assert path.read_bytes() == payload


def test_two_processes_fetching_the_same_file_download_it_once(tmp_path, server, payload, store_env):
    server.files[PATH] = srv.Served(payload, mode="slow", delay_s=0.08)  # about 0.8 s per download
    manifest_path = srv.write_manifest(tmp_path / "manifest.yaml", [srv.model_entry("m", payload, [server.url(PATH)])])
    ready = tmp_path / "ready"
    ready.mkdir()
    script = (
        "import sys, time, pathlib\n"
        "from medpipes.core.store import fetch_model\n"
        "ready = pathlib.Path(sys.argv[1]); (ready / sys.argv[2]).touch()\n"
        "while len(list(ready.iterdir())) < 2: time.sleep(0.002)\n"  # start both fetches together
        "print(fetch_model('m')['model.safetensors'])\n"
    )
    env = {**os.environ, "MEDPIPES_MANIFEST": str(manifest_path), "MEDPIPES_HOME": str(store_env)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(ready), name], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    results = [p.communicate(timeout=60) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], results
    assert {out.strip() for out, _ in results} == {str(store_env / "models" / "m" / "1.0.0" / "model.safetensors")}
    assert len(server.hits(PATH)) == 1
    assert sha256_file(store_env / "models" / "m" / "1.0.0" / "model.safetensors") == srv.sha256(payload)


def test_corrupted_cache_file_is_detected_and_fetched_again(tmp_path, server, payload):
    server.files[PATH] = srv.Served(payload)
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))
    model = manifest.get("m")
    path = fetch_model("m", manifest, fast())["model.safetensors"]
    damaged = bytearray(path.read_bytes())
    damaged[100] ^= 0x01
    path.write_bytes(bytes(damaged))

    status = check_file(model, model.files[0], fast())
    assert status.state == "corrupt" and "sha256" in status.detail

    again = fetch_model("m", manifest, fast())["model.safetensors"]
    assert again.read_bytes() == payload
    assert len(server.hits(PATH)) == 2


def test_offline_mode_names_the_missing_files_and_how_to_bring_them_without_any_request(
    tmp_path, server, payload, monkeypatch
):
    server.files[PATH] = srv.Served(payload)
    monkeypatch.setenv("MEDPIPES_OFFLINE", "1")
    monkeypatch.setenv("MEDPIPES_MODEL_MIRRORS", f"{server.base}/mirror")
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))

    with pytest.raises(OfflineError) as caught:
        fetch_model("m", manifest, fast())

    message = str(caught.value)
    assert "m/1.0.0/model.safetensors" in message
    assert "medpipes models fetch m" in message
    assert "medpipes models bundle" in message and "medpipes models import" in message
    assert "MEDPIPES_MODEL_MIRRORS" in message
    assert server.requests == []


def test_requests_go_through_the_proxy_named_by_http_proxy(tmp_path, server, payload, monkeypatch):
    proxy = srv.RecordingProxy().start()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.base)  # and no NO_PROXY: 127.0.0.1 is not exempted
        server.files[PATH] = srv.Served(payload)
        manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))

        path = fetch_model("m", manifest, fast())["model.safetensors"]
    finally:
        proxy.close()

    assert proxy.seen == [server.url(PATH)]
    assert len(server.hits(PATH)) == 1
    assert path.read_bytes() == payload


def test_server_errors_are_retried_then_reported_with_the_status(tmp_path, server, payload):
    server.files[PATH] = srv.Served(payload, mode="status", status=503)
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))

    with pytest.raises(DownloadError, match=r"HTTP 503 .*after 2 retries"):
        fetch_model("m", manifest, fast(retries=2))

    assert len(server.hits(PATH)) == 3


def test_a_server_sending_a_different_size_is_refused_before_writing(tmp_path, server, payload, store_env):
    server.files[PATH] = srv.Served(payload + b"extra")
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))

    with pytest.raises(DownloadError, match=rf"serves {len(payload) + 5} bytes, the manifest says {len(payload)}"):
        fetch_model("m", manifest, fast())

    assert cache_files(store_env) == []


def test_shipped_weights_are_used_without_network_and_a_damaged_copy_falls_back_to_the_url(
    tmp_path, server, payload, monkeypatch
):
    package = tmp_path / "pkgs" / "mp_ship_probe"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "weights" / "model.safetensors").write_bytes(payload)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    server.files[PATH] = srv.Served(payload)
    entry = srv.model_entry("m", payload, [server.url(PATH)], shipped="mp_ship_probe/weights/model.safetensors")
    manifest = manifest_for(tmp_path, entry)

    assert fetch_model("m", manifest, fast())["model.safetensors"] == package / "weights" / "model.safetensors"
    assert server.requests == []

    (package / "weights" / "model.safetensors").write_bytes(payload[:-1] + b"\x00")
    path = fetch_model("m", manifest, fast())["model.safetensors"]
    assert path.read_bytes() == payload and "home" in path.parts
    assert len(server.hits(PATH)) == 1


def test_a_progress_bar_can_be_drawn_while_downloading(tmp_path, server, payload, capsys):
    server.files[PATH] = srv.Served(payload)
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))

    path = fetch_model("m", manifest, fast(progress=True))["model.safetensors"]

    assert path.read_bytes() == payload


def test_an_unwritable_home_is_a_one_line_error_naming_medpipes_home(tmp_path, server, payload, monkeypatch):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    monkeypatch.setenv("MEDPIPES_HOME", str(blocker / "home"))
    server.files[PATH] = srv.Served(payload)
    manifest = manifest_for(tmp_path, srv.model_entry("m", payload, [server.url(PATH)]))

    with pytest.raises(StoreConfigError, match=r"cannot create the model cache there .* set MEDPIPES_HOME"):
        fetch_model("m", manifest, fast())
    assert server.requests == []
