"""Model-store exceptions: each maps onto the project's InputError (exit 2) or ProcessingError (exit 1)."""

from __future__ import annotations

from medpipes.core.errors import InputError, ProcessingError


class ManifestError(InputError):
    """models_manifest.yaml (or MEDPIPES_MANIFEST) is malformed, or names an unknown model."""


class WeightsFormatError(InputError):
    """A weights file is not in a format the store accepts (pickle is always refused)."""


class StoreConfigError(InputError):
    """A MEDPIPES_* environment variable of the model store has an invalid value."""


class DownloadError(ProcessingError):
    """No source could deliver a verified copy of a model file."""


class ChecksumError(DownloadError):
    """A downloaded or imported file's sha256 differs from the manifest's (the file was deleted)."""


class OfflineError(ProcessingError):
    """MEDPIPES_OFFLINE=1 and some model files are neither cached nor shipped."""


class CorruptFileError(ProcessingError):
    """A cached or shipped file fails its sha256 check (reported by verify)."""
