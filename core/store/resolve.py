"""Find a model's files, always sha256-verified: cache -> shipped in the package -> mirrors -> manifest URLs."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import requests
from filelock import FileLock, Timeout

from medpipes.core.io.atomic import atomic_path
from medpipes.core.store.config import HOME_ENV, MIRRORS_ENV, OFFLINE_ENV, StoreConfig
from medpipes.core.store.download import download_verified, new_session
from medpipes.core.store.errors import DownloadError, OfflineError, StoreConfigError, WeightsFormatError
from medpipes.core.store.formats import check_weights_format, sha256_file
from medpipes.core.store.manifest import Manifest, ModelEntry, ModelFile, load_manifest

log = logging.getLogger("medpipes.store")


@dataclass(frozen=True)
class FileStatus:
    """Where one model file stands locally: 'cached', 'shipped', 'missing' or 'corrupt' (checked, no network)."""

    model_id: str
    version: str
    name: str
    state: str
    path: str | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when a verified copy is present."""
        return self.state in ("cached", "shipped")


def file_label(model: ModelEntry, f: ModelFile) -> str:
    """``id/version/name``: how messages name a model file."""
    return f"{model.id}/{model.version}/{f.name}"


def cache_path(model: ModelEntry, f: ModelFile, config: StoreConfig) -> Path:
    """The file's place in the cache: ``$MEDPIPES_HOME/models/<id>/<version>/<name>``."""
    return config.models_dir / model.id / model.version / f.name


def lock_path(model: ModelEntry, f: ModelFile, config: StoreConfig) -> Path:
    """The lock serialising fetches of one file across processes (outside the models folder)."""
    path = config.home / "locks" / model.id / model.version / f"{f.name}.lock"
    make_cache_folder(path.parent)
    return path


def make_cache_folder(folder: Path) -> None:
    """Create a folder of the cache; an unwritable MEDPIPES_HOME becomes a one-line StoreConfigError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreConfigError(
            f"{folder}: cannot create the model cache there ({exc.strerror}); set {HOME_ENV} to a writable folder"
        ) from None


def shipped_resource(f: ModelFile) -> Traversable | None:
    """The file as shipped inside its package (importlib.resources), or None when not shipped / not installed."""
    if f.shipped is None:
        return None
    try:
        resource = resources.files(f.shipped_package).joinpath(*f.shipped_relpath.split("/"))
    except (ModuleNotFoundError, NotADirectoryError, TypeError):
        return None
    return resource if resource.is_file() else None


def mirror_urls(model: ModelEntry, f: ModelFile, config: StoreConfig) -> list[str]:
    """``<mirror>/<id>/<version>/<name>`` for each base URL of MEDPIPES_MODEL_MIRRORS, in order."""
    return [f"{base}/{model.id}/{model.version}/{f.name}" for base in config.mirrors]


def check_file(model: ModelEntry, f: ModelFile, config: StoreConfig) -> FileStatus:
    """Verify the cached or shipped copy of one file (size, sha256, format) without touching the network."""
    damaged: list[str] = []
    cached = cache_path(model, f, config)
    if cached.is_file():
        problem = _problem(cached, model, f)
        if problem is None:
            return FileStatus(model.id, model.version, f.name, "cached", str(cached))
        damaged.append(f"cached copy {cached}: {problem}")
    shipped = shipped_resource(f)
    if shipped is not None:
        with resources.as_file(shipped) as shipped_path:
            problem = _problem(shipped_path, model, f)
        if problem is None:
            return FileStatus(model.id, model.version, f.name, "shipped", str(shipped))
        damaged.append(f"shipped copy {shipped}: {problem}")
    if damaged:
        return FileStatus(model.id, model.version, f.name, "corrupt", None, "; ".join(damaged))
    detail = f"shipped file {f.shipped} is not installed" if f.shipped else "not fetched"
    return FileStatus(model.id, model.version, f.name, "missing", None, detail)


def resolve_file(
    model: ModelEntry, f: ModelFile, config: StoreConfig | None = None, session: requests.Session | None = None
) -> Path:
    """A local path to the verified file, downloading it when needed (never in offline mode)."""
    config = config or StoreConfig.from_env()
    local = _local_copy(model, f, config)
    if local is not None:
        return local
    if config.offline:
        raise OfflineError(_offline_message(model, [f]))
    return _download(model, f, config, session)


def fetch_model(
    model_id: str, manifest: Manifest | None = None, config: StoreConfig | None = None
) -> dict[str, Path]:
    """Every file of ``model_id`` as a verified local path, by file name (the one call pipelines make)."""
    manifest = manifest or load_manifest()
    config = config or StoreConfig.from_env()
    model = manifest.get(model_id)
    paths: dict[str, Path] = {}
    missing: list[ModelFile] = []
    for f in model.files:
        local = _local_copy(model, f, config)
        if local is not None:
            paths[f.name] = local
        elif config.offline:
            missing.append(f)
    if missing:
        raise OfflineError(_offline_message(model, missing))
    session = new_session()
    for f in model.files:
        if f.name not in paths:
            paths[f.name] = _download(model, f, config, session)
    return paths


def verify(manifest: Manifest, ids: list[str] | None = None, config: StoreConfig | None = None) -> list[FileStatus]:
    """The status of every file of the given models (all by default), checked locally."""
    config = config or StoreConfig.from_env()
    models = [manifest.get(i) for i in ids] if ids else list(manifest.models)
    return [check_file(m, f, config) for m in models for f in m.files]


def remove_model(model_id: str, manifest: Manifest, config: StoreConfig | None = None) -> list[Path]:
    """Delete every cached version of ``model_id`` (shipped files are never touched); the files removed."""
    config = config or StoreConfig.from_env()
    manifest.get(model_id)
    folder = config.models_dir / model_id
    if not folder.is_dir():
        return []
    removed = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    shutil.rmtree(folder)
    return removed


def _problem(path: Path, model: ModelEntry, f: ModelFile) -> str | None:
    actual_size = path.stat().st_size
    if actual_size != f.size:
        return f"size is {actual_size} bytes, the manifest's 'size' is {f.size}"
    digest = sha256_file(path)
    if digest != f.sha256:
        return f"sha256 is {digest}, the manifest's is {f.sha256}"
    try:
        check_weights_format(path, f.format, f"{file_label(model, f)} ({path})")
    except WeightsFormatError as exc:
        return str(exc)
    return None


def _local_copy(model: ModelEntry, f: ModelFile, config: StoreConfig) -> Path | None:
    cached = cache_path(model, f, config)
    if cached.is_file():
        problem = _problem(cached, model, f)
        if problem is None:
            return cached
        log.warning("%s: cached copy %s fails verification (%s); deleting it", file_label(model, f), cached, problem)
        with FileLock(lock_path(model, f, config), timeout=config.lock_timeout_s):
            if _problem(cached, model, f) is None:  # another process replaced it meanwhile
                return cached
            cached.unlink(missing_ok=True)
    shipped = shipped_resource(f)
    if shipped is not None:
        if isinstance(shipped, Path):
            problem = _problem(shipped, model, f)
            if problem is None:
                return shipped
        else:  # shipped inside a zip: copy it into the cache, verified
            with resources.as_file(shipped) as tmp:
                problem = _problem(tmp, model, f)
                if problem is None:
                    make_cache_folder(cached.parent)
                    with atomic_path(cached) as partial:
                        shutil.copyfile(tmp, partial)
                    return cached
        log.warning("%s: shipped copy %s fails verification (%s); looking elsewhere", file_label(model, f), shipped, problem)
    return None


def _download(model: ModelEntry, f: ModelFile, config: StoreConfig, session: requests.Session | None) -> Path:
    label = file_label(model, f)
    target = cache_path(model, f, config)
    urls = [*mirror_urls(model, f, config), *f.urls]
    if not urls:
        raise DownloadError(
            f"{label}: not cached, its shipped copy is missing or damaged, and the manifest gives no URL; "
            f"reinstall medpipes or set {MIRRORS_ENV}"
        )
    make_cache_folder(target.parent)
    lock = FileLock(lock_path(model, f, config), timeout=config.lock_timeout_s)
    try:
        with lock:
            if target.is_file():  # another process may have fetched it while we waited
                if _problem(target, model, f) is None:
                    return target
                target.unlink()
            download_verified(
                urls,
                target,
                sha256=f.sha256,
                size=f.size,
                config=config,
                label=label,
                session=session,
                check=lambda p: check_weights_format(p, f.format, f"{label} ({p})"),
            )
    except Timeout:
        raise DownloadError(
            f"{label}: another process has held {lock.lock_file} for {config.lock_timeout_s:g} s; "
            "wait for it, or delete the lock file if no medpipes process is running"
        ) from None
    return target


def _offline_message(model: ModelEntry, missing: list[ModelFile]) -> str:
    files = ", ".join(f"{file_label(model, f)} ({f.size} bytes, sha256 {f.sha256[:12]}...)" for f in missing)
    return (
        f"{OFFLINE_ENV}=1 and {len(missing)} file(s) of model '{model.id}' are neither cached nor shipped: {files}; "
        f"bring them by running `medpipes models fetch {model.id}` on a networked machine and then "
        f"`medpipes models bundle --out models.tar {model.id}` there and `medpipes models import models.tar` here, "
        f"or unset {OFFLINE_ENV} and set {MIRRORS_ENV} to a mirror on your network"
    )
