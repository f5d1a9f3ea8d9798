"""Where the shared real test data lives (tests, benchmarks and scripts all ask here)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MEDPIPES_TEST_DATA"


def test_data_root() -> Path:
    """``$MEDPIPES_TEST_DATA``, else ``../shared/data`` beside the checkout (or the working folder)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    beside_checkout = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
    if beside_checkout.exists():
        return beside_checkout
    return (Path.cwd() / ".." / "shared" / "data").resolve()


def find_test_data(*parts: str) -> Path | None:
    """The path of ``parts`` under the test-data root, or None when it is absent."""
    path = test_data_root().joinpath(*parts)
    return path if path.exists() else None
