"""Build the brain-extraction image and run it for real (marker `docker`; `make test-docker`).

A session fixture installs Debian's docker.io when absent, starts its own dockerd (no bridge, no
iptables: containers get no private-range address; overlay2, vfs as a fallback) with its data under
/var/lib/medpipes-test-docker (reused by reruns), builds the local base and the images with
`--network none`, serves the weights from 127.0.0.1, and stops that dockerd by its pid at the end.
Figures (build, size, cold and warm start) go to build/docker-test-figures.json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("MEDPIPES_TEST_DOCKER_ROOT", "/var/lib/medpipes-test-docker"))
MAX_IMAGE_BYTES = 2_000_000_000
USER = "4321:4321"  # any uid: the image must work with --user "$(id -u):$(id -g)"
FIGURES: dict[str, float] = {}

_spec = importlib.util.spec_from_file_location("medpipes_tests_store_server", Path(__file__).with_name("store_server.py"))
srv = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = srv
_spec.loader.exec_module(srv)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the docker tests must run)")
    pytest.skip(reason)


def _install_debian_packages() -> None:
    missing = [pkg for pkg, exe in (("docker.io", "dockerd"), ("debootstrap", "debootstrap")) if shutil.which(exe) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        _unavailable(f"{', '.join(missing)} missing and cannot be installed (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
        out = subprocess.run(argv, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            _unavailable(f"`{' '.join(argv)}` failed: {out.stderr.strip().splitlines()[-1:]}")


class Dockerd:
    """Our own dockerd on a private socket; stopped by its pid."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0"}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        pidfile = self.root / "dockerd.pid"
        if pidfile.exists() and Path(f"/proc/{pidfile.read_text().strip()}").exists():
            pytest.fail(f"a dockerd already runs with {pidfile} (pid {pidfile.read_text().strip()}); stop it first")
        for driver in ("overlay2", "vfs"):
            log = open(self.root / f"dockerd-{driver}.log", "w")
            self.process = subprocess.Popen(
                ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false", f"--storage-driver={driver}",
                 "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                 "--pidfile", str(pidfile), "-H", f"unix://{self.socket}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.process.poll() is None:
                if self.docker("info", check=False).returncode == 0:
                    return
                time.sleep(0.5)
            self.stop()
        _unavailable(f"dockerd did not start with overlay2 or vfs; see {self.root}/dockerd-*.log")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def docker(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        out = subprocess.run(["docker", *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({out.returncode}): {out.stderr[-3000:]}")
        return out


@pytest.fixture(scope="session")
def dockerd():
    if sys.platform != "linux" or os.geteuid() != 0:
        _unavailable("the docker tests start their own dockerd: run them as root on Linux")
    if shutil.which("docker") is None and shutil.which("apt-get") is None:
        _unavailable("no docker client and no apt-get to install docker.io")
    _install_debian_packages()
    for sub in ("data", "exec"):
        (ROOT / sub).mkdir(parents=True, exist_ok=True)
    daemon = Dockerd(ROOT)
    daemon.start()
    try:
        yield daemon
    finally:
        for volume in daemon.docker("volume", "ls", "-q", "--filter", "name=medpipes-test-", check=False).stdout.split():
            daemon.docker("volume", "rm", "-f", volume, check=False)
        daemon.stop()
        if FIGURES:
            (REPO / "build").mkdir(exist_ok=True)
            (REPO / "build" / "docker-test-figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
            print("\ncontainer figures:", json.dumps(FIGURES))


@pytest.fixture(scope="session")
def image(dockerd: Dockerd) -> str:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "build_images.py"), "--local-base"],
                         capture_output=True, text=True, env=dockerd.env, cwd=REPO, timeout=3600)  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    FIGURES["build_s"] = round(time.perf_counter() - start, 1)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    tag = f"medpipes/brain-extraction:{version}"
    FIGURES["image_mb"] = round(int(dockerd.docker("image", "inspect", "--format", "{{.Size}}", tag).stdout) / 1e6)
    return tag


@pytest.fixture(scope="session")
def weights_server():
    from medpipes.core.store import load_manifest
    from medpipes.core.store.resolve import shipped_resource

    entry = load_manifest().get("brain-extraction-unet")
    with shipped_resource(entry.file()).open("rb") as f:
        data = f.read()
    server = srv.FileServer(files={"/weights/model.safetensors": srv.Served(data)}).start()
    yield server
    server.close()


def _manifest(folder: Path, url: str, sha256: str | None = None) -> Path:
    data = yaml.safe_load((REPO / "models_manifest.yaml").read_text(encoding="utf-8"))
    for model in data["models"]:
        for f in model["files"]:
            f["urls"] = [url]
            if sha256:
                f["sha256"] = sha256
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o644)
    folder.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def case(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dicom_case")
    with zipfile.ZipFile(REPO / "demo" / "ixi012_t1_dicom.zip") as z:
        z.extractall(folder)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def _output_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, *map(int, USER.split(":")))  # the caller's own folder
    return out


def _run(dockerd: Dockerd, image: str, case: Path, out: Path, volume: str, manifest: Path, *args: str):
    start = time.perf_counter()
    result = dockerd.docker(
        "run", "--rm", "--network", "host", "--user", USER, "-v", f"{case}:/input:ro", "-v", f"{out}:/output",
        "-v", f"{volume}:/cache", "-v", f"{manifest}:/config/manifest.yaml:ro", "-e", "MEDPIPES_MANIFEST=/config/manifest.yaml",
        image, *args, check=False,
    )  # fmt: skip
    return result, round(time.perf_counter() - start, 1)


@pytest.fixture(scope="session")
def cold_and_warm(dockerd, image, case, weights_server, tmp_path_factory):
    url = weights_server.url("/weights/model.safetensors")
    manifest = _manifest(tmp_path_factory.mktemp("manifest"), url)
    volume = "medpipes-test-cache"
    dockerd.docker("volume", "rm", "-f", volume, check=False)
    cold_out = _output_dir(tmp_path_factory.mktemp("cold"))
    cold, FIGURES["cold_start_to_mask_s"] = _run(dockerd, image, case, cold_out, volume, manifest, "--device", "cpu")
    hits_after_cold = len(weights_server.hits("/weights/model.safetensors"))
    warm_out = _output_dir(tmp_path_factory.mktemp("warm"))
    warm, FIGURES["warm_start_to_mask_s"] = _run(dockerd, image, case, warm_out, volume, manifest, "--device", "cpu")
    hits_after_warm = len(weights_server.hits("/weights/model.safetensors"))
    return {"cold": cold, "cold_out": cold_out, "warm": warm, "warm_out": warm_out, "volume": volume,
            "hits": (hits_after_cold, hits_after_warm), "manifest": manifest}  # fmt: skip


def test_image_is_under_2_gb_and_carries_oci_and_model_labels(dockerd: Dockerd, image: str) -> None:
    size = int(dockerd.docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
    assert size < MAX_IMAGE_BYTES, f"{image} is {size / 1e9:.2f} GB"
    config = json.loads(dockerd.docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    labels = config["Labels"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    entry = next(m for m in yaml.safe_load((REPO / "models_manifest.yaml").read_text())["models"] if m["id"] == "brain-extraction-unet")
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["io.medpipes.model.id"] == entry["id"]
    assert labels["io.medpipes.model.sha256"] == entry["files"][0]["sha256"]
    assert labels["io.medpipes.model.license"] == entry["license"]
    assert config["User"] not in ("", "0", "root") and "PYTHONUNBUFFERED=1" in config["Env"]


def test_help_works_without_weights_or_network(dockerd: Dockerd, image: str) -> None:
    out = dockerd.docker("run", "--rm", "--network", "none", image, "--help")
    assert "selftest" in out.stdout and "--device" in out.stdout


def test_cold_start_fetches_and_verifies_weights_then_writes_mask_and_seg(cold_and_warm) -> None:
    import pydicom

    from medpipes.core.io import read_image

    cold, out = cold_and_warm["cold"], cold_and_warm["cold_out"]
    assert cold.returncode == 0, cold.stderr[-3000:]
    assert cold_and_warm["hits"][0] == 1
    assert "downloaded, sha256 verified" in cold.stderr
    mask = read_image(out / "brain_mask.nii.gz")
    assert np.count_nonzero(mask.array) > 0
    assert pydicom.dcmread(out / "brain_mask_seg.dcm").Modality == "SEG"
    owner = f"{(out / 'brain_mask.nii.gz').stat().st_uid}:{(out / 'brain_mask.nii.gz').stat().st_gid}"
    assert owner == USER  # outputs belong to the caller


def test_warm_start_uses_the_verified_cache_without_downloading(cold_and_warm) -> None:
    warm = cold_and_warm["warm"]
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert cold_and_warm["hits"][1] == cold_and_warm["hits"][0] == 1
    assert "found in the cache, sha256 verified" in warm.stderr
    assert (cold_and_warm["warm_out"] / "brain_mask.nii.gz").is_file()


def test_wrong_checksum_exits_non_zero_with_one_clear_line_and_writes_nothing(
    dockerd, image, case, weights_server, tmp_path
) -> None:
    manifest = _manifest(tmp_path / "bad", weights_server.url("/weights/model.safetensors"), sha256="0" * 64)
    out = _output_dir(tmp_path)
    volume = "medpipes-test-bad-cache"
    dockerd.docker("volume", "rm", "-f", volume, check=False)
    result, _ = _run(dockerd, image, case, out, volume, manifest)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0
    assert len(errors) == 1 and "sha256 mismatch" in errors[0] and result.stderr.strip().splitlines()[-1] == errors[0]
    assert list(out.iterdir()) == []


def test_selftest_in_the_image_passes(dockerd: Dockerd, image: str, cold_and_warm) -> None:
    out = dockerd.docker(
        "run", "--rm", "--network", "host", "--user", USER, "-v", f"{cold_and_warm['volume']}:/cache",
        "-v", f"{cold_and_warm['manifest']}:/config/manifest.yaml:ro", "-e", "MEDPIPES_MANIFEST=/config/manifest.yaml",
        image, "selftest", "--device", "cpu", check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "selftest brain_extraction: PASS" in out.stderr


def test_medpipes_docker_run_wrapper_runs_the_image_on_a_dicom_folder(dockerd, image, case, cold_and_warm, tmp_path) -> None:
    out = tmp_path / "wrapped"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("medpipes")), "docker", "run", "brain-extraction", str(case), str(out),
         "--image", image, "--cache-volume", cold_and_warm["volume"], "--network", "none", "--device", "cpu"],
        capture_output=True, text=True, env=dockerd.env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.splitlines()[0].startswith("docker run --rm --user ")
    assert (out / "brain_mask.nii.gz").stat().st_uid == os.getuid()
