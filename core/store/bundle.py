"""Offline bundles: a tar of verified model files plus an index, to carry weights to an air-gapped site."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from medpipes.core.errors import InputError
from medpipes.core.io.atomic import atomic_path
from medpipes.core.store.config import StoreConfig
from medpipes.core.store.errors import ChecksumError, ManifestError
from medpipes.core.store.formats import CHUNK, check_weights_format
from medpipes.core.store.manifest import Manifest
from medpipes.core.store.resolve import FileStatus, cache_path, check_file, fetch_model, lock_path, make_cache_folder

INDEX_NAME = "medpipes-bundle.json"
BUNDLE_FORMAT = "medpipes-model-bundle"
BUNDLE_VERSION = 1


@dataclass(frozen=True)
class BundledFile:
    """One file of a bundle: which model file it is and what it must hash to."""

    model_id: str
    version: str
    name: str
    sha256: str
    size: int

    @property
    def member(self) -> str:
        """Its member name in the tar."""
        return f"models/{self.model_id}/{self.version}/{self.name}"


def bundle(out: str | os.PathLike[str], manifest: Manifest, ids: list[str] | None = None,
           config: StoreConfig | None = None) -> list[BundledFile]:
    """Write the verified files of ``ids`` (all models by default) to the tar ``out``, fetching any missing."""
    config = config or StoreConfig.from_env()
    models = [manifest.get(i) for i in dict.fromkeys(ids)] if ids else list(manifest.models)
    if not models:
        raise ManifestError(f"{manifest.source} has no models yet: nothing to bundle")
    folder = Path(out).parent
    if not folder.is_dir():  # checked before any download
        raise InputError(f"{folder}: output folder does not exist; create it first")
    entries: list[tuple[BundledFile, Path]] = []
    for model in models:
        paths = fetch_model(model.id, manifest, config)
        for f in model.files:
            entries.append((BundledFile(model.id, model.version, f.name, f.sha256, f.size), paths[f.name]))
    index = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "files": [{"model": b.model_id, "version": b.version, "name": b.name, "sha256": b.sha256, "size": b.size}
                  for b, _ in entries],
    }
    with atomic_path(out) as tmp, tarfile.open(tmp, "w") as tar:
        data = json.dumps(index, indent=2).encode("utf-8")
        info = tarfile.TarInfo(INDEX_NAME)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for entry, path in entries:
            tar.add(str(path), arcname=entry.member, recursive=False)
    return [b for b, _ in entries]


def import_bundle(path: str | os.PathLike[str], manifest: Manifest, config: StoreConfig | None = None) -> list[FileStatus]:
    """Verify every file of the bundle against the manifest and move it into the cache; no network."""
    config = config or StoreConfig.from_env()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: bundle not found; give the .tar written by `medpipes models bundle --out`")
    try:
        tar = tarfile.open(path, "r:*")
    except tarfile.TarError as exc:
        raise InputError(f"{path}: not a tar archive ({exc}); give a file written by `medpipes models bundle`") from None
    with tar:
        entries = _read_index(tar, path)
        # Check the whole bundle against the manifest before writing anything.
        for b in entries:
            model = manifest.get(b.model_id)
            if model.version != b.version:
                raise ManifestError(
                    f"{path}: holds {b.model_id} version {b.version}, the manifest ({manifest.source}) has "
                    f"{model.version}; bundle with the same medpipes version on both sites"
                )
            f = model.file(b.name)
            if (f.sha256, f.size) != (b.sha256, b.size):
                raise ManifestError(
                    f"{path}: {b.member} is recorded with sha256 {b.sha256}, the manifest says {f.sha256}; "
                    "the bundle was made from another manifest"
                )
        statuses = []
        for b in entries:
            model = manifest.get(b.model_id)
            f = model.file(b.name)
            status = check_file(model, f, config)
            if not status.ok:
                with FileLock(lock_path(model, f, config)):
                    _extract_verified(tar, path, b, cache_path(model, f, config), f.format)
                status = check_file(model, f, config)
            statuses.append(status)
    return statuses


def _read_index(tar: tarfile.TarFile, path: Path) -> list[BundledFile]:
    try:
        member = tar.extractfile(INDEX_NAME)
    except KeyError:
        member = None
    if member is None:
        raise InputError(f"{path}: no {INDEX_NAME} inside: not a medpipes model bundle")
    try:
        index = json.loads(member.read().decode("utf-8"))
        if index.get("format") != BUNDLE_FORMAT or index.get("version") != BUNDLE_VERSION:
            raise ValueError(f"format {index.get('format')!r} version {index.get('version')!r}")
        return [BundledFile(e["model"], e["version"], e["name"], e["sha256"], int(e["size"])) for e in index["files"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: unreadable {INDEX_NAME} ({exc}); re-create the bundle with `medpipes models bundle`") from None


def _extract_verified(tar: tarfile.TarFile, path: Path, b: BundledFile, target: Path, fmt: str) -> None:
    try:
        source = tar.extractfile(b.member)
    except KeyError:
        source = None
    if source is None:
        raise InputError(f"{path}: member {b.member} listed in {INDEX_NAME} is missing; re-create the bundle")
    make_cache_folder(target.parent)
    with atomic_path(target) as tmp:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != b.sha256:
            raise ChecksumError(
                f"{path}: {b.member} has sha256 {digest.hexdigest()}, the manifest says {b.sha256}; "
                "the bundle is damaged: copy it again"
            )
        check_weights_format(tmp, fmt, f"{path}: {b.member}")
