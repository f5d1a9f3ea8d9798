"""The umbrella command: usage errors and --version without tracebacks, from a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medpipes.core.cli.main import main

EXE = Path(sys.executable).with_name("medpipes")


def test_unknown_option_is_a_usage_error_with_exit_code_2(capsys) -> None:
    assert main(["convert", "--no-such-option"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_version_prints_and_exits_zero(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("medpipes ")


def test_usage_error_in_a_real_process_shows_no_traceback() -> None:
    if not EXE.exists():
        pytest.skip("medpipes console script not installed in this environment")
    out = subprocess.run([str(EXE), "convert", "--no-such-option"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
