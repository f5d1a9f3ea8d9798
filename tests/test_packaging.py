"""The package installs as medpipes.core / medpipes.pipelines, with every sub-package listed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared_in_pyproject() -> None:
    found = set()
    for top, name in (("core", "medpipes.core"), ("pipelines", "medpipes.pipelines")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    # medpipes.manifest is the repository root as a data-only package (models_manifest.yaml)
    assert found == declared_packages() - {"medpipes.manifest"}


def test_no_top_level_core_is_importable() -> None:
    code = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('core') is None else 1)"
    assert subprocess.run([sys.executable, "-c", code], cwd="/").returncode == 0


def test_console_script_answers_help() -> None:
    exe = Path(sys.executable).with_name("medpipes")
    if not exe.exists():
        pytest.skip("medpipes console script not installed in this environment")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "convert" in out.stdout and "dicom" in out.stdout
