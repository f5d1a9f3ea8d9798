"""Verified downloads with requests: streaming, HTTP Range resume, retries with backoff, timeouts, proxies.

Proxies, NO_PROXY and REQUESTS_CA_BUNDLE come from the environment: requests' sessions trust it by default.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import requests
import urllib3

from medpipes.core.store.config import MIRRORS_ENV, TIMEOUT_ENV, StoreConfig
from medpipes.core.store.errors import ChecksumError, DownloadError
from medpipes.core.store.formats import sha256_file

log = logging.getLogger("medpipes.store")
CHUNK = 1 << 16


class _Retry(Exception):
    """A transient failure: try the same URL again (resuming) after a pause."""

    def __init__(self, reason: str, progressed: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.progressed = reason, progressed


class _GiveUp(Exception):
    """This URL cannot deliver the file: move on to the next source."""

    def __init__(self, reason: str, checksum: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.checksum = reason, checksum


def new_session() -> requests.Session:
    """A requests session that honours HTTP(S)_PROXY / NO_PROXY and asks for uncompressed bytes."""
    session = requests.Session()
    session.headers["User-Agent"] = "medpipes-model-store"
    session.headers["Accept-Encoding"] = "identity"  # byte ranges must address the file itself
    return session


def partial_path(target: Path) -> Path:
    """Where an unfinished download of ``target`` is kept for resuming (never used as the file)."""
    return target.with_name(f".{target.name}.part")


def download_verified(
    urls: Sequence[str],
    target: Path,
    *,
    sha256: str,
    size: int,
    config: StoreConfig,
    label: str,
    session: requests.Session | None = None,
    check: Callable[[Path], None] | None = None,
) -> str:
    """Fetch the first URL whose bytes hash to ``sha256`` and rename them onto ``target``; return that URL.

    The caller holds the file's lock. ``check`` inspects the verified bytes before they enter the cache.
    """
    session = session or new_session()
    part = partial_path(target)
    failures: list[tuple[str, _GiveUp]] = []
    for url in urls:
        try:
            _fetch_verified(url, part, sha256, size, config, session, label)
        except _GiveUp as exc:
            log.warning("%s: %s: %s", label, url, exc.reason)
            failures.append((url, exc))
            continue
        if check is not None:
            try:
                check(part)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
        os.replace(part, target)
        return url
    detail = "; ".join(f"{url}: {exc.reason}" for url, exc in failures)
    if failures and all(exc.checksum for _, exc in failures):
        raise ChecksumError(f"{label}: {detail}; nothing was kept in the cache; the source serves another file than "
                            "the manifest names: report it, or fetch from another mirror")
    raise DownloadError(
        f"{label}: no source delivered the file: {detail or 'no URL to try'}; check the network or HTTPS_PROXY, "
        f"or set {MIRRORS_ENV} to a reachable mirror"
    )


def _fetch_verified(
    url: str, part: Path, sha256: str, size: int, config: StoreConfig, session: requests.Session, label: str
) -> None:
    resumed = part.exists() and part.stat().st_size > 0
    _fetch(url, part, size, config, session, label)
    got = sha256_file(part)
    if got != sha256 and resumed:
        # The partial file came from an earlier run, perhaps of other bytes: fetch the whole file once more.
        log.warning("%s: resumed download does not verify; downloading %s from the start", label, url)
        part.unlink(missing_ok=True)
        _fetch(url, part, size, config, session, label)
        got = sha256_file(part)
    if got != sha256:
        part.unlink(missing_ok=True)
        raise _GiveUp(f"sha256 mismatch: expected {sha256}, got {got} (the download was deleted)", checksum=True)


def _fetch(url: str, part: Path, size: int, config: StoreConfig, session: requests.Session, label: str) -> None:
    # Hand-written retry loop: urllib3's Retry cannot resume a body cut mid-stream with a Range request.
    failed_attempts = 0
    while True:
        try:
            _request_once(url, part, size, config, session, label)
            return
        except _Retry as exc:
            failed_attempts = 1 if exc.progressed else failed_attempts + 1
            if failed_attempts > config.retries:
                tries = f" (after {config.retries} retries)" if config.retries else ""
                raise _GiveUp(exc.reason + tries) from None
            delay = config.backoff_s * 2 ** (failed_attempts - 1)
            log.info("%s: %s: %s; retrying in %.1f s", label, url, exc.reason, delay)
            time.sleep(delay)


def _request_once(url: str, part: Path, size: int, config: StoreConfig, session: requests.Session, label: str) -> None:
    offset = part.stat().st_size if part.exists() else 0
    if offset > size:
        part.unlink()
        offset = 0
    if offset == size:
        return  # a complete partial from an earlier run: the hash decides
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    received = 0
    try:
        with session.get(
            url, headers=headers, stream=True, timeout=(config.connect_timeout_s, config.read_timeout_s)
        ) as response:
            status = response.status_code
            if status == 416 and offset:
                part.unlink(missing_ok=True)
                raise _Retry("the server refused to resume; restarting from byte 0")
            if status == 429 or status >= 500:
                raise _Retry(f"HTTP {status} {response.reason}")
            if status not in (200, 206):
                raise _GiveUp(f"HTTP {status} {response.reason}")
            if status == 206 and offset:
                if _range_start(response.headers.get("Content-Range")) != offset:
                    part.unlink(missing_ok=True)
                    raise _Retry("the server answered another byte range; restarting from byte 0")
                mode = "ab"
            else:
                offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and offset + int(length) != size:
                raise _GiveUp(f"serves {offset + int(length)} bytes, the manifest says {size}: another file")
            with open(part, mode) as out, _progress(label, size, offset, config) as advance:
                for chunk in _chunks(response):
                    out.write(chunk)
                    received += len(chunk)
                    advance(len(chunk))
                    if offset + received > size:
                        raise _GiveUp(f"sent more than the manifest's {size} bytes: another file")
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise _Retry(_describe(exc, config, offset + received, size), progressed=received > 0) from None
    except _GiveUp:
        if received:
            part.unlink(missing_ok=True)
        raise
    written = part.stat().st_size if part.exists() else 0
    if written < size:
        raise _Retry(f"connection closed after {written} of {size} bytes", progressed=received > 0)


def _chunks(response: requests.Response) -> Iterator[bytes]:
    if hasattr(response.raw, "read1"):  # urllib3 >= 2.3
        # read1 hands over every byte that arrived before a cut; iter_content drops the last partial chunk.
        while chunk := response.raw.read1(CHUNK):
            yield chunk
    else:
        yield from response.iter_content(CHUNK)


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", content_range or "")
    return int(match.group(1)) if match else None


def _describe(exc: Exception, config: StoreConfig, have: int, size: int) -> str:
    text = str(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return f"timed out connecting after {config.connect_timeout_s:g} s"
    if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        return f"timed out: no data for {config.read_timeout_s:g} s at byte {have} of {size} (raise {TIMEOUT_ENV})"
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"proxy error ({_first_line(text)}); check HTTP_PROXY / HTTPS_PROXY"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error ({_first_line(text)}); set REQUESTS_CA_BUNDLE to your organisation's CA file"
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)):
        return f"connection cut at byte {have} of {size}"
    return f"connection failed at byte {have} of {size} ({_first_line(text)})"


def _first_line(text: str) -> str:
    return text.splitlines()[0][:200] if text else "no detail"


@contextlib.contextmanager
def _progress(label: str, total: int, done: int, config: StoreConfig) -> Iterator[Callable[[int], None]]:
    enabled = sys.stderr.isatty() if config.progress is None else config.progress
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total, completed=done)
        yield lambda n: bar.advance(task, n)
