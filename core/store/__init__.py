"""The model store: manifest, verified resolution (cache -> shipped -> mirrors -> URL), downloads, bundles."""

from medpipes.core.store.bundle import BundledFile, bundle, import_bundle
from medpipes.core.store.config import StoreConfig
from medpipes.core.store.errors import (
    ChecksumError,
    CorruptFileError,
    DownloadError,
    ManifestError,
    OfflineError,
    StoreConfigError,
    WeightsFormatError,
)
from medpipes.core.store.formats import detect_weights_format, sha256_file
from medpipes.core.store.manifest import (
    Manifest,
    ModelEntry,
    ModelFile,
    ModelInput,
    load_manifest,
    packaged_manifest,
    parse_manifest,
)
from medpipes.core.store.resolve import FileStatus, cache_path, check_file, fetch_model, remove_model, resolve_file, verify
from medpipes.core.store.weights import load_state_dict, load_torchscript

__all__ = [
    "BundledFile",
    "ChecksumError",
    "CorruptFileError",
    "DownloadError",
    "FileStatus",
    "Manifest",
    "ManifestError",
    "ModelEntry",
    "ModelFile",
    "ModelInput",
    "OfflineError",
    "StoreConfig",
    "StoreConfigError",
    "WeightsFormatError",
    "bundle",
    "cache_path",
    "check_file",
    "detect_weights_format",
    "fetch_model",
    "import_bundle",
    "load_manifest",
    "load_state_dict",
    "load_torchscript",
    "packaged_manifest",
    "parse_manifest",
    "remove_model",
    "resolve_file",
    "sha256_file",
    "verify",
]
