"""Run reports: seconds and peak memory per step, package versions, and an atomic ``report.json``."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from medpipes.core.io.atomic import atomic_write_text

VERSIONED_PACKAGES = ("medpipes", "numpy", "torch", "SimpleITK", "nibabel", "pydicom", "highdicom", "antspyx", "scipy")


@dataclass
class StepTimes:
    """Per-step wall seconds, the peak resident memory seen during the step and the process's peak so far."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    sample_seconds: float = 0.01

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as step ``name``; a sampling thread records its peak RSS.

        Sampling /proc rather than tracemalloc: tracing every allocation slowed pydicom/matplotlib steps tenfold.
        """
        peak = [current_rss_mb()]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(self.sample_seconds):
                peak[0] = max(peak[0], current_rss_mb())

        sampler = threading.Thread(target=sample, name=f"rss-{name}", daemon=True)
        sampler.start()
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            done.set()
            sampler.join()
            peak[0] = max(peak[0], current_rss_mb())
            self.steps.append(
                {
                    "step": name,
                    "seconds": round(seconds, 4),
                    "peak_rss_mb": round(peak[0], 1),
                    "max_rss_mb": round(max_rss_mb(), 1),
                }
            )

    def total_seconds(self) -> float:
        """Sum of the steps' seconds."""
        return round(sum(s["seconds"] for s in self.steps), 4)


def current_rss_mb() -> float:
    """This process's resident memory now, in MiB (/proc/self/statm; the peak so far where /proc is absent)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return max_rss_mb()
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def max_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def package_versions(names: tuple[str, ...] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages a result depends on (absent ones left out), plus Python's."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write ``report`` as indented JSON, atomically."""
    path = Path(path)
    atomic_write_text(path, json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    return path
