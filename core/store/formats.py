"""Weights formats by content: safetensors and TorchScript accepted, pickle (torch.save, .pth, .pkl) refused."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from medpipes.core.store.errors import WeightsFormatError

CHUNK = 1 << 20
_CONVERT = (
    "convert it: safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors'), "
    "then update sha256 and size in the manifest"
)


def sha256_file(path: str | Path) -> str:
    """The file's sha256 as 64 lower-case hex characters."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def detect_weights_format(path: str | Path) -> str:
    """'safetensors', 'torchscript', 'pickle' (incl. torch.save zip archives) or 'unknown', read from the bytes."""
    path = Path(path)
    with open(path, "rb") as stream:
        head = stream.read(9)
    if _looks_like_safetensors(path, head):
        return "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        # TorchScript archives hold the model's code (<root>/code/...) beside data.pkl; torch.save's hold none.
        if any("/code/" in n for n in names) or any(n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "pickle"
        return "unknown"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle PROTO opcode, protocols 2-5
        return "pickle"
    return "unknown"


def check_weights_format(path: str | Path, expected: str, where: str) -> None:
    """Raise WeightsFormatError unless the file's content is ``expected`` (pickle is always refused)."""
    found = detect_weights_format(path)
    if found == "pickle":
        raise WeightsFormatError(
            f"{where}: is a pickle file (torch.save, .pth or .pkl); pickles run code when loaded and are refused; "
            + _CONVERT
        )
    if found == "unknown":
        raise WeightsFormatError(f"{where}: not a safetensors or TorchScript file; {_CONVERT}")
    if found != expected:
        raise WeightsFormatError(
            f"{where}: the file is {found} but the manifest says format: {expected}; fix the manifest's format key"
        )
    if found == "safetensors":
        _open_safetensors(path, where)


def _looks_like_safetensors(path: Path, head: bytes) -> bool:
    # safetensors layout: 8-byte little-endian header length, then a JSON object of that length.
    if len(head) < 9 or head[8:9] != b"{":
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len <= path.stat().st_size - 8


def _open_safetensors(path: str | Path, where: str) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            handle.keys()
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsFormatError(f"{where}: damaged safetensors file ({exc}); fetch it again") from None
