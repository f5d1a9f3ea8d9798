"""models_manifest.yaml: schema, validation and loading into frozen dataclasses (never imports torch).

Schema (``schema_version: 1``)::

    schema_version: 1
    url_pattern: https://host/releases/download/v{version}/{id}-{name}   # optional; {id} {version} {name}
    models:
      - id: brain-extraction-unet        # lower case, digits, . _ -
        version: "1.0.0"                 # a string (quote it)
        pipeline: brain_extraction
        task: skull stripping of T1-weighted MRI
        architecture: {name: unet, channels: [16, 32, 64]}   # mapping, free content
        inputs: [{name: t1, modality: MR-T1w}]                # in channel order
        preprocessing: {spacing_mm: [1, 1, 1]}                # mapping, free content
        labels: {0: background, 1: brain}
        files:
          - name: model.safetensors
            sha256: <64 hex>
            size: 1234567                                     # bytes
            urls: [https://...]                               # optional (else url_pattern)
            shipped: medpipes.pipelines.brain_extraction/weights/model.safetensors  # optional
            format: safetensors                               # optional; inferred from the suffix
        license: Apache-2.0
        provenance: {training_data: "IXI (CC BY-SA 3.0), 40 subjects"}
        metrics: {dice_brain: 0.97}
        imported: false                  # true for third-party weights; only these may be TorchScript
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from medpipes.core.store.errors import ManifestError

SCHEMA_VERSION = 1
MANIFEST_ENV = "MEDPIPES_MANIFEST"
MANIFEST_PACKAGE = "medpipes.manifest"
MANIFEST_NAME = "models_manifest.yaml"
SHIPPED_MAX_BYTES = 25 * 1024 * 1024
FORMATS = ("safetensors", "torchscript")

TOP_KEYS = {"schema_version", "url_pattern", "models"}
MODEL_REQUIRED = (
    "id", "version", "pipeline", "task", "architecture", "inputs", "preprocessing",
    "labels", "files", "license", "provenance", "metrics",
)  # fmt: skip
MODEL_OPTIONAL = ("imported", "description")
FILE_REQUIRED = ("name", "sha256", "size")
FILE_OPTIONAL = ("urls", "shipped", "format")
INPUT_KEYS = ("name", "modality")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_SHIPPED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/[A-Za-z0-9._/-]+$")
_SUFFIX_FORMATS = {".safetensors": "safetensors", ".pt": "torchscript", ".pts": "torchscript"}
_PICKLE_SUFFIXES = (".pth", ".pkl", ".pickle", ".ckpt", ".bin")
_PLACEHOLDERS = {"id", "version", "name"}


@dataclass(frozen=True)
class ModelInput:
    """One input channel: its name and the modality it expects."""

    name: str
    modality: str


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: where it lives and what its bytes must hash to."""

    name: str
    sha256: str
    size: int
    urls: tuple[str, ...] = ()
    shipped: str | None = None
    format: str = "safetensors"

    @property
    def shipped_package(self) -> str | None:
        """The package that ships this file (``medpipes.pipelines.x``), or None."""
        return self.shipped.split("/", 1)[0] if self.shipped else None

    @property
    def shipped_relpath(self) -> str | None:
        """The file's path inside its shipping package (``weights/model.safetensors``), or None."""
        return self.shipped.split("/", 1)[1] if self.shipped else None


@dataclass(frozen=True)
class ModelEntry:
    """One model of the manifest, validated."""

    id: str
    version: str
    pipeline: str
    task: str
    architecture: Mapping[str, Any]
    inputs: tuple[ModelInput, ...]
    preprocessing: Mapping[str, Any]
    labels: Mapping[int, str]
    files: tuple[ModelFile, ...]
    license: str
    provenance: Any
    metrics: Mapping[str, Any]
    imported: bool = False
    description: str = ""

    def file(self, name: str | None = None) -> ModelFile:
        """The file called ``name``; without a name, the model's only file."""
        if name is None:
            if len(self.files) == 1:
                return self.files[0]
            names = ", ".join(f.name for f in self.files)
            raise ManifestError(f"model '{self.id}' has {len(self.files)} files ({names}); name the one you want")
        for f in self.files:
            if f.name == name:
                return f
        names = ", ".join(f.name for f in self.files)
        raise ManifestError(f"model '{self.id}' has no file '{name}'; its files are: {names}")


@dataclass(frozen=True)
class Manifest:
    """The validated manifest and where it was read from."""

    source: str
    models: tuple[ModelEntry, ...] = field(default_factory=tuple)
    url_pattern: str | None = None

    def ids(self) -> list[str]:
        """Every model id, in manifest order."""
        return [m.id for m in self.models]

    def get(self, model_id: str) -> ModelEntry:
        """The model ``model_id``; a ManifestError lists the known ids otherwise."""
        for m in self.models:
            if m.id == model_id:
                return m
        known = ", ".join(self.ids()) or "none: the manifest has no models yet"
        raise ManifestError(
            f"unknown model '{model_id}' in {self.source}; known models: {known} (see `medpipes models list`)"
        )


def packaged_manifest() -> Traversable:
    """The manifest shipped with the package (package data of ``medpipes.manifest``)."""
    if find_spec(MANIFEST_PACKAGE) is None:
        raise ManifestError(
            f"package {MANIFEST_PACKAGE} (which carries {MANIFEST_NAME}) is not installed; reinstall medpipes "
            "(pip install -e . in a clone), or set MEDPIPES_MANIFEST to a manifest file"
        )
    try:
        return resources.files(MANIFEST_PACKAGE) / MANIFEST_NAME
    except (NotADirectoryError, ValueError):
        # Python < 3.13 with setuptools' editable finder: the namespace path holds a placeholder entry
        # that importlib.resources rejects, so look through the package's real search locations.
        spec = find_spec(MANIFEST_PACKAGE)
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(location) / MANIFEST_NAME
            if candidate.is_file():
                return candidate
        raise ManifestError(
            f"{MANIFEST_NAME} is not installed with package {MANIFEST_PACKAGE}; reinstall medpipes (pip install .)"
        ) from None


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and validate a manifest: ``path``, else $MEDPIPES_MANIFEST, else the packaged one."""
    if path is None and os.environ.get(MANIFEST_ENV):
        path = os.environ[MANIFEST_ENV]
    if path is not None:
        source_path = Path(path)
        if not source_path.is_file():
            hint = f" (from ${MANIFEST_ENV})" if os.environ.get(MANIFEST_ENV) == str(path) else ""
            raise ManifestError(f"{source_path}{hint}: manifest file not found; give an existing models_manifest.yaml")
        text = source_path.read_text(encoding="utf-8")
        source = str(source_path)
    else:
        resource = packaged_manifest()
        if not resource.is_file():
            raise ManifestError(f"{MANIFEST_NAME} missing from package {MANIFEST_PACKAGE}; reinstall medpipes")
        text = resource.read_text(encoding="utf-8")
        source = str(resource)
    return parse_manifest(text, source)


def parse_manifest(text: str, source: str = "<manifest>") -> Manifest:
    """Validate manifest YAML text; every malformed entry raises a ManifestError naming model and key."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ManifestError(f"{source}:{line}: {problem}; fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: the manifest must be a mapping with keys schema_version and models")
    unknown = sorted(set(map(str, data)) - TOP_KEYS)
    if unknown:
        raise ManifestError(f"{source}: unknown top-level key '{unknown[0]}'; allowed: {', '.join(sorted(TOP_KEYS))}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(
            f"{source}: schema_version is {data.get('schema_version')!r}, this medpipes reads {SCHEMA_VERSION}; "
            "upgrade medpipes or fix the manifest"
        )
    url_pattern = data.get("url_pattern")
    if url_pattern is not None:
        _check_url_pattern(url_pattern, source)
    models = data.get("models")
    if models is None:
        models = []
    if not isinstance(models, list):
        raise ManifestError(f"{source}: 'models' must be a list of model entries (use `models: []` for none)")
    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for index, raw in enumerate(models):
        entry = _parse_model(raw, index, source, url_pattern)
        if entry.id in seen:
            raise ManifestError(f"{source}: model '{entry.id}': duplicate id (entry {index}); every id must be unique")
        seen.add(entry.id)
        entries.append(entry)
    return Manifest(source=source, models=tuple(entries), url_pattern=url_pattern)


class _Where:
    """Formats errors for one model entry: '<source>: model '<id>': key '<key>' ...'."""

    def __init__(self, source: str, model: str) -> None:
        self.source, self.model = source, model

    def error(self, key: str, problem: str) -> ManifestError:
        return ManifestError(f"{self.source}: model '{self.model}': key '{key}' {problem}")


def _parse_model(raw: Any, index: int, source: str, url_pattern: str | None) -> ModelEntry:
    label = f"#{index}"
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        label = raw["id"]
    w = _Where(source, label)
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: models[{index}] must be a mapping with keys {', '.join(MODEL_REQUIRED)}")
    _check_keys(raw, MODEL_REQUIRED, MODEL_OPTIONAL, "", w)
    model_id = raw["id"]
    if not isinstance(model_id, str) or not _ID_RE.match(model_id):
        raise w.error("id", f"is {model_id!r}; use lower-case letters, digits, '.', '_' or '-' (e.g. brain-extraction-unet)")
    version = raw["version"]
    if not isinstance(version, str) or not version.strip():
        raise w.error("version", f"is {version!r}; write it as a quoted string, e.g. version: \"1.0.0\"")
    for key in ("pipeline", "task", "license"):
        _text(raw[key], key, w)
    imported = raw.get("imported", False)
    if not isinstance(imported, bool):
        raise w.error("imported", f"is {imported!r}; use true or false")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise w.error("description", "must be a string")
    for key in ("architecture", "preprocessing", "metrics"):
        if not isinstance(raw[key], dict):
            raise w.error(key, f"must be a mapping (got {type(raw[key]).__name__}); write `{key}: {{}}` if empty")
    if not isinstance(raw["architecture"], dict) or not raw["architecture"]:
        raise w.error("architecture", "is empty; give at least the network's name and its configuration")
    provenance = raw["provenance"]
    if not (isinstance(provenance, dict) and provenance) and not (isinstance(provenance, str) and provenance.strip()):
        raise w.error("provenance", "must say which data trained the model (a non-empty mapping or text)")
    inputs = _parse_inputs(raw["inputs"], w)
    labels = _parse_labels(raw["labels"], w)
    files_raw = raw["files"]
    if not isinstance(files_raw, list) or not files_raw:
        raise w.error("files", "must be a non-empty list of files (name, sha256, size, urls/shipped)")
    files = tuple(
        _parse_file(f, i, w, model_id, version, imported, url_pattern) for i, f in enumerate(files_raw)
    )
    names = [f.name for f in files]
    for name in names:
        if names.count(name) > 1:
            raise w.error("files", f"lists '{name}' twice; file names must be unique within a model")
    return ModelEntry(
        id=model_id,
        version=version,
        pipeline=raw["pipeline"],
        task=raw["task"],
        architecture=raw["architecture"],
        inputs=inputs,
        preprocessing=raw["preprocessing"],
        labels=labels,
        files=files,
        license=raw["license"],
        provenance=provenance,
        metrics=raw["metrics"],
        imported=imported,
        description=description,
    )


def _check_keys(raw: dict, required: tuple[str, ...], optional: tuple[str, ...], prefix: str, w: _Where) -> None:
    for key in required:
        if key not in raw:
            raise w.error(f"{prefix}{key}", f"is missing; required keys: {', '.join(required)}")
    allowed = set(required) | set(optional)
    for key in raw:
        if key not in allowed:
            raise w.error(f"{prefix}{key}", f"is unknown; allowed keys: {', '.join((*required, *optional))}")


def _text(value: Any, key: str, w: _Where) -> str:
    if not isinstance(value, str) or not value.strip():
        raise w.error(key, f"is {value!r}; it must be non-empty text")
    return value


def _parse_inputs(raw: Any, w: _Where) -> tuple[ModelInput, ...]:
    if not isinstance(raw, list) or not raw:
        raise w.error("inputs", "must be a non-empty list of {name, modality}, in channel order")
    inputs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise w.error(f"inputs[{i}]", "must be a mapping {name: ..., modality: ...}")
        _check_keys(item, INPUT_KEYS, (), f"inputs[{i}].", w)
        inputs.append(ModelInput(_text(item["name"], f"inputs[{i}].name", w), _text(item["modality"], f"inputs[{i}].modality", w)))
    return tuple(inputs)


def _parse_labels(raw: Any, w: _Where) -> dict[int, str]:
    if not isinstance(raw, dict) or not raw:
        raise w.error("labels", "must be a non-empty mapping of label value to name, e.g. {0: background, 1: brain}")
    labels = {}
    for value, name in raw.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise w.error(f"labels.{value}", "must be a non-negative integer label value")
        labels[value] = _text(name, f"labels.{value}", w)
    return labels


def _parse_file(
    raw: Any, i: int, w: _Where, model_id: str, version: str, imported: bool, url_pattern: str | None
) -> ModelFile:
    p = f"files[{i}]."
    if not isinstance(raw, dict):
        raise w.error(f"files[{i}]", "must be a mapping with keys name, sha256, size and urls or shipped")
    _check_keys(raw, FILE_REQUIRED, FILE_OPTIONAL, p, w)
    name = raw["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise w.error(p + "name", f"is {name!r}; use a plain file name (letters, digits, '.', '_', '-'), no folders")
    sha = raw["sha256"]
    if not isinstance(sha, str):
        raise w.error(p + "sha256", f"is {sha!r}; quote the 64 hex characters printed by `sha256sum {name}`")
    if len(sha) != 64:
        raise w.error(p + "sha256", f"has {len(sha)} characters, a sha256 has 64 hex characters; paste `sha256sum {name}`")
    if not _SHA_RE.match(sha):
        raise w.error(p + "sha256", "must be lower-case hex (0-9, a-f); paste the output of `sha256sum`")
    size = raw["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise w.error(p + "size", f"is {size!r}; give the file's size in bytes as a positive integer (`stat -c %s {name}`)")
    urls_raw = raw.get("urls", [])
    if isinstance(urls_raw, str):
        urls_raw = [urls_raw]
    if not isinstance(urls_raw, list):
        raise w.error(p + "urls", "must be a list of http(s) URLs")
    urls = tuple(_check_url(u, p + f"urls[{j}]", w) for j, u in enumerate(urls_raw))
    if not urls and url_pattern:
        url = url_pattern.format(id=model_id, version=version, name=name)
        urls = (_check_url(url, "url_pattern", w),)
    shipped = raw.get("shipped")
    if shipped is not None:
        if not isinstance(shipped, str) or not _SHIPPED_RE.match(shipped) or ".." in shipped.split("/"):
            raise w.error(
                p + "shipped",
                f"is {shipped!r}; write package/relative/path, e.g. medpipes.pipelines.brain_extraction/weights/{name}",
            )
        if size > SHIPPED_MAX_BYTES:
            raise w.error(
                p + "size",
                f"is {size} bytes, over the 25 MB limit for weights shipped in the repository; publish it (urls) instead",
            )
    if not urls and shipped is None:
        raise w.error(p + "urls", "is missing: give urls, a shipped path, or a top-level url_pattern so the file can be found")
    fmt = raw.get("format")
    suffix = Path(name).suffix.lower()
    if fmt is None:
        if suffix in _PICKLE_SUFFIXES:
            raise w.error(
                p + "name",
                f"is '{name}', a pickle file: pickles are refused; convert it with safetensors.torch.save_file",
            )
        fmt = _SUFFIX_FORMATS.get(suffix)
        if fmt is None:
            raise w.error(p + "format", f"is missing and cannot be inferred from '{name}'; add format: safetensors")
    if fmt == "pickle":
        raise w.error(p + "format", "is pickle: pickles are refused; convert to safetensors (safetensors.torch.save_file)")
    if fmt not in FORMATS:
        raise w.error(p + "format", f"is {fmt!r}; allowed: {', '.join(FORMATS)}")
    if fmt == "torchscript" and not imported:
        raise w.error(
            p + "format",
            "is torchscript, accepted only for imported models: set `imported: true` or convert to safetensors",
        )
    return ModelFile(name=name, sha256=sha, size=size, urls=urls, shipped=shipped, format=fmt)


def _check_url(url: Any, key: str, w: _Where) -> str:
    if not isinstance(url, str):
        raise w.error(key, f"is {url!r}; give an http(s) URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in url:
        raise w.error(key, f"is {url!r}, not an http(s) URL; write e.g. https://example.org/weights/model.safetensors")
    return url


def _check_url_pattern(pattern: Any, source: str) -> None:
    if not isinstance(pattern, str):
        raise ManifestError(f"{source}: key 'url_pattern' must be a string with {{id}}, {{version}} and {{name}}")
    names = set(re.findall(r"{([^{}]*)}", pattern))
    if names - _PLACEHOLDERS:
        raise ManifestError(
            f"{source}: key 'url_pattern' uses {{{sorted(names - _PLACEHOLDERS)[0]}}}; allowed placeholders: "
            "{id}, {version}, {name}"
        )
    if "{name}" not in pattern:
        raise ManifestError(f"{source}: key 'url_pattern' must contain {{name}} so each file has its own URL")
