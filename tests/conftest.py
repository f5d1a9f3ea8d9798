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


import numpy as np  # noqa: E402 (appended below the original fixtures)


@pytest.fixture(scope="session")
def oblique_affine() -> Callable[..., np.ndarray]:
    """``oblique_affine(spacing, origin, degrees=(about_z, about_x))``: an anisotropic voxel->RAS affine, oblique in two axes."""

    def make(spacing=(1.0, 1.0, 2.0), origin=(-10.0, 20.0, 5.5), degrees=(17.0, -8.0)) -> np.ndarray:
        a, b = np.deg2rad(degrees[0]), np.deg2rad(degrees[1])
        rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
        affine = np.eye(4)
        affine[:3, :3] = rz @ rx @ np.diag(spacing)
        affine[:3, 3] = origin
        return affine

    return make
