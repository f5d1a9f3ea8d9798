"""Shared fixtures: the one place tests find the real data set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from medpipes.core.testdata import ENV_VAR, find_test_data, test_data_root


@pytest.fixture(scope="session")
def shared_data() -> Callable[..., Path]:
    """``shared_data("dicom", "dcm_qa_ts")``: the path, skipped when absent (failed under CI=true)."""

    def locate(*parts: str) -> Path:
        path = find_test_data(*parts)
        if path is None:
            reason = (
                f"real test data {'/'.join(parts)} not found under {test_data_root()}; "
                f"set {ENV_VAR} to the shared data folder"
            )
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(reason + " (CI=true: missing data is a failure)")
            pytest.skip(reason)
        return path

    return locate


@pytest.fixture(scope="session")
def dicom_cases():
    """The module tests/dicom_cases.py: generators of edge-case DICOM folders made from real series."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("medpipes_tests_dicom_cases", Path(__file__).parent / "dicom_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
