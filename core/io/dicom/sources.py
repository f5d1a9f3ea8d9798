"""Where DICOM bytes come from: files in a folder (recursively), members of a zip, one file; gzip too.

Nothing is ever extracted next to the input: zip members and ``.gz`` files are read into memory.
"""

from __future__ import annotations

import gzip
import io
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from medpipes.core.errors import DicomError


class _ZipArchive:
    """One open zip file shared by its members (reads are serialised: ZipFile is not thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._lock = threading.Lock()

    def read(self, member: str) -> bytes:
        with self._lock:
            if self._zip is None:
                self._zip = zipfile.ZipFile(self.path)
            return self._zip.read(member)


@dataclass(frozen=True)
class Source:
    """One candidate file: a path on disk, or a member of a zip; ``gz`` when gzip-compressed."""

    path: Path  # what messages show: the file, or "<zip>/<member>"
    member: str | None = None
    archive: _ZipArchive | None = None
    gz: bool = False

    def read_bytes(self) -> bytes:
        """The (decompressed) bytes of this file."""
        if self.archive is not None and self.member is not None:
            data = self.archive.read(self.member)
        else:
            data = self.path.read_bytes()
        if self.gz:
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise DicomError(f"{self.path}: broken gzip file ({exc}); re-create it with gzip") from None
        return data

    def head(self, n: int) -> bytes:
        """The first ``n`` (decompressed) bytes, without reading or inflating the whole file."""
        if self.archive is not None and self.member is not None:
            raw: BinaryIO = io.BytesIO(self.archive.read(self.member))
        else:
            raw = self.path.open("rb")
        with raw:
            if not self.gz:
                return raw.read(n)
            try:
                with gzip.GzipFile(fileobj=raw) as gz:
                    return gz.read(n)
            except (OSError, EOFError):
                return b""  # not gzip at all: not a DICOM file either

    def open(self, in_memory_below: int = 16 << 20) -> BinaryIO:
        """A seekable binary file object: the bytes in memory (small, zipped or gzipped files: fastest
        to parse), else the file itself (a big multi-frame file is never read whole)."""
        if self.archive is None and not self.gz and self.path.stat().st_size >= in_memory_below:
            return self.path.open("rb")
        return io.BytesIO(self.read_bytes())

    def read_range(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset`` of the (decompressed) file; reads only those from a plain file."""
        if self.archive is None and not self.gz:
            with self.path.open("rb") as fh:
                fh.seek(offset)
                return fh.read(size)
        return self.read_bytes()[offset : offset + size]

    @property
    def name(self) -> str:
        return self.path.name


def _is_gz(name: str) -> bool:
    return name.lower().endswith(".gz")


def list_sources(path: str | os.PathLike[str]) -> tuple[Path, list[Source]]:
    """The root and every file under ``path`` (a folder, a zip, or one file), sorted by name."""
    root = Path(path)
    if not root.exists():
        raise DicomError(f"{root}: no such file or folder; check the path")
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DicomError(f"{root}: empty folder; point at a folder of DICOM files")
        return root, [Source(p, gz=_is_gz(p.name)) for p in files]
    if zipfile.is_zipfile(root):
        archive = _ZipArchive(root)
        with zipfile.ZipFile(root) as zf:
            members = sorted(
                i.filename
                for i in zf.infolist()
                if not i.is_dir() and not Path(i.filename).name.startswith(".") and "__MACOSX" not in i.filename
            )
        if not members:
            raise DicomError(f"{root}: empty zip; point at a zip of DICOM files")
        return root, [Source(root / m, member=m, archive=archive, gz=_is_gz(m)) for m in members]
    return root, [Source(root, gz=_is_gz(root.name))]
