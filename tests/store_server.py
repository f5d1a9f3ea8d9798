"""Test helpers for the model store: a misbehaving HTTP file server and a recording proxy on 127.0.0.1,
plus builders of real safetensors payloads and manifests. Loaded by the test_store_* files."""

from __future__ import annotations

import hashlib
import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import yaml


def safetensors_payload(n_values: int = 50_000, seed: int = 0) -> bytes:
    """A real safetensors file (float32 tensors) of about 4 * n_values bytes."""
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    return save({"conv.weight": rng.standard_normal(n_values).astype(np.float32), "conv.bias": np.zeros(4, np.float32)})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_entry(model_id: str, data: bytes, urls: list[str] | None = None, **file_keys: Any) -> dict:
    """A complete, valid manifest entry with one safetensors file holding ``data``."""
    file_record = {"name": "model.safetensors", "sha256": sha256(data), "size": len(data)}
    if urls is not None:
        file_record["urls"] = urls
    file_record.update(file_keys)
    return {
        "id": model_id,
        "version": "1.0.0",
        "pipeline": "brain_extraction",
        "task": "skull stripping of T1-weighted MRI",
        "architecture": {"name": "unet", "channels": [8, 16]},
        "inputs": [{"name": "t1", "modality": "MR-T1w"}],
        "preprocessing": {"spacing_mm": [1.0, 1.0, 1.0]},
        "labels": {0: "background", 1: "brain"},
        "files": [file_record],
        "license": "Apache-2.0",
        "provenance": {"training_data": "synthetic test volumes"},
        "metrics": {"dice_brain": 0.97},
    }


def write_manifest(path: Path, models: list[dict], **top: Any) -> Path:
    """Write a schema_version 1 manifest with ``models`` to ``path``."""
    path.write_text(yaml.safe_dump({"schema_version": 1, **top, "models": models}, sort_keys=False))
    return path


@dataclass
class Served:
    """What the server answers at one path: the bytes and how to misbehave."""

    data: bytes
    mode: str = "normal"  # normal | cut_once | stall | slow | status
    status: int = 200
    cut_at: int = 0
    delay_s: float = 0.0


class _LocalServer:
    """An HTTP handler class served on 127.0.0.1 (port 0) from a daemon thread."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@dataclass
class FileServer(_LocalServer):
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) that serves bytes, supports Range, and records requests."""

    files: dict[str, Served] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "FileServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                owner._handle(self)

        self._serve(Handler)
        return self

    def close(self) -> None:
        self.stop.set()
        super().close()

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def hits(self, path: str) -> list[dict[str, str]]:
        """The headers of every GET of ``path``, in order."""
        with self.lock:
            return [h for _, p, h in self.requests if p == path]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        with self.lock:
            self.requests.append(("GET", path, dict(h.headers.items())))
            count = sum(1 for _, p, _ in self.requests if p == path)
        served = self.files.get(path)
        if served is None or served.mode == "status":
            h.send_response(404 if served is None else served.status)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data, start = served.data, 0
        range_header = h.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            start = int(range_header[6:].split("-")[0])
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        body = data[start:]
        if served.mode == "cut_once" and count == 1:
            h.wfile.write(body[: served.cut_at])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)  # the connection dies mid-file
            return
        if served.mode == "stall":
            h.wfile.write(body[:1024])
            h.wfile.flush()
            self.stop.wait(30)  # no more bytes until the test ends
            return
        if served.mode == "slow":
            step = max(1, len(body) // 10)
            for i in range(0, len(body), step):
                h.wfile.write(body[i : i + step])
                h.wfile.flush()
                self.stop.wait(served.delay_s)
            return
        h.wfile.write(body)


@dataclass
class RecordingProxy(_LocalServer):
    """A forward HTTP proxy on 127.0.0.1 that records each request line and relays it to its origin."""

    seen: list[str] = field(default_factory=list)

    def start(self) -> "RecordingProxy":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.seen.append(self.path)
                target = urlsplit(self.path)
                assert target.hostname == "127.0.0.1", "the test proxy only relays to 127.0.0.1"
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "host")}
                conn.request("GET", target.path, headers=headers)
                reply = conn.getresponse()
                body = reply.read()
                self.send_response(reply.status)
                for key in ("Content-Range", "Accept-Ranges"):
                    if reply.getheader(key):
                        self.send_header(key, reply.getheader(key))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                conn.close()

        self._serve(Handler)
        return self

