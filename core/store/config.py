"""Model-store settings read from the environment (MEDPIPES_HOME, MEDPIPES_OFFLINE, mirrors, timeouts)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from medpipes.core.store.errors import StoreConfigError

HOME_ENV = "MEDPIPES_HOME"
OFFLINE_ENV = "MEDPIPES_OFFLINE"
MIRRORS_ENV = "MEDPIPES_MODEL_MIRRORS"
TIMEOUT_ENV = "MEDPIPES_DOWNLOAD_TIMEOUT"
RETRIES_ENV = "MEDPIPES_DOWNLOAD_RETRIES"
DEFAULT_HOME = Path("~/.cache/medpipes")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class StoreConfig:
    """Where the cache lives and how downloads behave."""

    home: Path
    offline: bool = False
    mirrors: tuple[str, ...] = ()
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 1.0
    lock_timeout_s: float = 3600.0
    progress: bool | None = None  # None: a progress bar only when stderr is a terminal

    @property
    def models_dir(self) -> Path:
        """The cache folder holding ``<id>/<version>/<file>``."""
        return self.home / "models"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "StoreConfig":
        """Settings from the environment; keyword arguments override them."""
        env = os.environ if env is None else env
        home = Path(env.get(HOME_ENV) or DEFAULT_HOME).expanduser()
        offline_text = env.get(OFFLINE_ENV, "").strip().lower()
        if offline_text not in _TRUE | _FALSE:
            raise StoreConfigError(f"{OFFLINE_ENV}={env.get(OFFLINE_ENV)!r}: use 1 (offline) or 0")
        mirrors = tuple(m.strip().rstrip("/") for m in env.get(MIRRORS_ENV, "").split(",") if m.strip())
        for mirror in mirrors:
            parts = urlsplit(mirror)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise StoreConfigError(
                    f"{MIRRORS_ENV}: {mirror!r} is not an http(s) base URL; give comma-separated URLs like "
                    "https://mirror.example.org/medpipes"
                )
        config = cls(home=home, offline=offline_text in _TRUE, mirrors=mirrors)
        if env.get(TIMEOUT_ENV):
            config = replace(config, read_timeout_s=_positive(env, TIMEOUT_ENV, float))
        if env.get(RETRIES_ENV):
            config = replace(config, retries=_positive(env, RETRIES_ENV, int, allow_zero=True))
        return replace(config, **overrides) if overrides else config


def _positive(env: Mapping[str, str], key: str, kind: type, allow_zero: bool = False) -> Any:
    try:
        value = kind(env[key])
    except ValueError:
        value = None
    if value is None or value < 0 or (value == 0 and not allow_zero):
        raise StoreConfigError(f"{key}={env[key]!r}: give a positive {'integer' if kind is int else 'number'}")
    return value
