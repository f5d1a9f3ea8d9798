#!/usr/bin/env python
"""Benchmark: load a DICOM series into an array with medpipes vs SimpleITK vs dicom2nifti vs dcm2niix.

Series (shared real data): the Siemens Trio MPRAGE (176 x 256 x 256, 1 mm, explicit VR little
endian, the largest series there) and the fragmented JPEG-lossless 3D T1 of dcm_qa_frag (96 x 128 x
128). The shared data holds no GE 3D T1 (its GE series are 4D EPI), so none is measured.

Each tool reads the same folder in the same run, after one warm-up round (so every tool reads from
the page cache); then ``--repeats`` rounds in which each tool loads the series once, interleaved so
that a busy spell of the machine slows all tools alike; the median wall-clock time is reported. The plain rows run on
ONE CPU core: the process is pinned with sched_setaffinity (threads and child processes inherit it;
medpipes' thread pool cannot be sized, pinning makes its row comparable) and ITK's thread count is
set to 1 (ProcessObject_SetGlobalDefaultNumberOfThreads). The rows labelled "(all cores)" run
medpipes and SimpleITK unpinned with every core. Each result's shape is checked against the
series' headers (Rows x Columns x image files); a tool that fails or gives a wrong shape is shown as
failed with its reason. dcm2niix is timed as a process writing an uncompressed NIfTI (`-z n`) to a
temporary folder, so its time includes process start and the write; dicom2nifti uses its in-memory
API (read_dicom_directory + dicom_array_to_nifti: no copy, no reorientation). Ratios in the table
are to the 1-core SimpleITK row of the same series.

The last line is ``ratio=<medpipes median / SimpleITK median>`` (both on one core) for the largest
series: below 1 means medpipes is faster than SimpleITK (the target is <= 1); ``ratio=nan`` when
either was not measured, with exit status 1 when either failed.

Usage: .venv/bin/python bench/dicom_load.py [--repeats 5] [--series trio frag] [--tools ...] [--no-all-cores]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pydicom

from medpipes.core.testdata import ENV_VAR, find_test_data, test_data_root

SERIES: dict[str, tuple[str, ...]] = {
    "trio": ("brain", "trio_b17_dicom", "t1_MPRAGEcr_noGRAPPA_19"),
    "frag": ("dicom", "dcm_qa_frag", "In", "5001_anat-T1w_acq-tfl"),
}
REFERENCE = "SimpleITK"


@dataclass
class Row:
    """One tool on one series: its median time, or why it failed."""

    series: str
    tool: str
    times: list[float] = field(default_factory=list)
    shape: tuple[int, ...] | None = None
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times and self.error is None else math.nan


def expected_shape(folder: Path) -> tuple[int, int, int]:
    """(Rows, Columns, number of image files) from the headers, sorted, for shape checks."""
    rows = cols = None
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue  # text files such as the Trio's .nfo
        if "Rows" not in ds:
            continue
        rows, cols = int(ds.Rows), int(ds.Columns)
        count += int(ds.get("NumberOfFrames", 1) or 1)
    if rows is None:
        raise SystemExit(f"error: {folder} holds no DICOM image; check the shared data")
    return tuple(sorted((rows, cols, count)))  # type: ignore[return-value]


# --- the tools: each returns the loaded array's shape -----------------------------------------
def load_medpipes(folder: Path) -> tuple[int, ...]:
    """medpipes.core.io.read_image on the folder."""
    from medpipes.core.io import read_image

    return read_image(folder).array.shape


def load_sitk(folder: Path) -> tuple[int, ...]:
    """SimpleITK: GetGDCMSeriesFileNames + ImageSeriesReader.Execute, to a numpy array."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayViewFromImage(reader.Execute()).shape


def load_dicom2nifti(folder: Path) -> tuple[int, ...]:
    """dicom2nifti's in-memory conversion (no temporary copy, no reorientation)."""
    import dicom2nifti.common
    import dicom2nifti.convert_dicom

    result = dicom2nifti.convert_dicom.dicom_array_to_nifti(
        dicom2nifti.common.read_dicom_directory(str(folder)), None, reorient_nifti=False
    )
    return np.asanyarray(result["NII"].dataobj).shape


def load_dcm2niix(folder: Path) -> tuple[int, ...]:
    """The dcm2niix binary of the PyPI package, uncompressed NIfTI into a temporary folder."""
    import dcm2niix
    import nibabel as nib

    with tempfile.TemporaryDirectory(prefix="bench-dcm2niix-") as out:
        done = subprocess.run(
            [dcm2niix.bin, "-z", "n", "-b", "n", "-f", "out", "-o", out, str(folder)],
            capture_output=True,
            text=True,
        )
        written = sorted(Path(out).glob("*.nii"))
        if done.returncode != 0 or len(written) != 1:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise RuntimeError(f"dcm2niix wrote {len(written)} NIfTI files: {last[0]}")
        return nib.load(written[0]).shape


TOOLS: dict[str, Callable[[Path], tuple[int, ...]]] = {
    "medpipes": load_medpipes,
    "SimpleITK": load_sitk,
    "dicom2nifti": load_dicom2nifti,
    "dcm2niix": load_dcm2niix,
}
# (row label, tool, all cores?): the 1-core rows run with the process pinned to one CPU.
ROWS: list[tuple[str, str, bool]] = [
    ("medpipes", "medpipes", False),
    (REFERENCE, "SimpleITK", False),
    ("dicom2nifti", "dicom2nifti", False),
    ("dcm2niix", "dcm2niix", False),
    ("medpipes (all cores)", "medpipes", True),
    ("SimpleITK (all cores)", "SimpleITK", True),
]


@contextlib.contextmanager
def cores(all_cores: bool) -> Iterator[None]:
    """Run the block on one CPU (sched_setaffinity, inherited by threads and child processes) or on all."""
    pin = not all_cores and hasattr(os, "sched_setaffinity")
    before = os.sched_getaffinity(0) if pin else None
    if pin:
        os.sched_setaffinity(0, {min(before)})  # type: ignore[arg-type]
    try:
        yield
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)


def versions() -> str:
    """The versions of the packages measured, for the record."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for dist in ("medpipes", "pydicom", "SimpleITK", "dicom2nifti", "dcm2niix"):
        try:
            found.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            found.append(f"{dist} (not installed)")
    return ", ".join(found)


def load_once(folder: Path, tool: str, all_cores: bool, expected: tuple[int, ...]) -> tuple[float, tuple[int, ...]]:
    """Seconds for one load by ``tool`` and the shape it gave; raise when the shape is not the series'."""
    import SimpleITK as sitk

    # ITK's own thread count as well as the CPU pinning: 1 unless the row is an all-cores row.
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads((os.cpu_count() or 1) if all_cores else 1)
    with cores(all_cores):
        gc.collect()
        start = time.perf_counter()
        shape = TOOLS[tool](folder)
        elapsed = time.perf_counter() - start
    if tuple(sorted(s for s in shape if s != 1)) != expected:
        raise RuntimeError(f"shape {shape}, expected {expected} in some order")
    return elapsed, tuple(shape)


def measure(
    series: str, folder: Path, expected: tuple[int, ...], wanted: list[tuple[str, str, bool]], repeats: int
) -> list[Row]:
    """One warm-up round, then ``repeats`` rounds in which every tool loads once (interleaved, so a
    slow spell of the machine hits all tools alike); a failure or wrong shape becomes the row's error."""
    rows = [Row(series, label) for label, _, _ in wanted]
    for i in range(repeats + 1):
        for row, (_, tool, all_cores) in zip(rows, wanted):
            if row.error:
                continue
            try:
                elapsed, row.shape = load_once(folder, tool, all_cores, expected)
            except Exception as exc:  # a tool's failure is a result to report, not a crash
                row.error = " ".join(f"{type(exc).__name__}: {exc}".split())[:100]
                continue
            if i:
                row.times.append(elapsed)
    return rows


def table(rows: list[Row]) -> str:
    """The result table, ratios to the 1-core SimpleITK row of the same series."""
    reference = {r.series: r.median for r in rows if r.tool == REFERENCE}
    lines = [f"{'series':<8} {'tool':<22} {'median s':>9} {'vs SimpleITK':>12}  shape / failure"]
    for r in rows:
        if r.error:
            lines.append(f"{r.series:<8} {r.tool:<22} {'failed':>9} {'-':>12}  {r.error}")
            continue
        ratio = r.median / reference[r.series] if reference.get(r.series, math.nan) > 0 else math.nan
        lines.append(f"{r.series:<8} {r.tool:<22} {r.median:>9.3f} {ratio:>12.2f}  {r.shape}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table, then ``ratio=...`` as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per tool after one warm-up (default 5)")
    parser.add_argument("--series", nargs="+", choices=sorted(SERIES), default=list(SERIES), help="series to load")
    parser.add_argument("--tools", nargs="+", choices=list(TOOLS), default=list(TOOLS), help="tools to time")
    parser.add_argument(
        "--no-all-cores", dest="all_cores", action="store_false", help="skip the all-cores rows of medpipes and SimpleITK"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    folders = {name: find_test_data(*SERIES[name]) for name in args.series}
    missing = [("/".join(SERIES[n])) for n, f in folders.items() if f is None]
    if missing:
        print(
            f"error: shared test data not found under {test_data_root()}: {', '.join(missing)}; "
            f"set {ENV_VAR} to the shared data folder",
            file=sys.stderr,
        )
        return 2

    rows_wanted = [r for r in ROWS if r[1] in args.tools and (args.all_cores or not r[2])]
    print(f"DICOM series load, median of {args.repeats} interleaved rounds after 1 warm-up round, one core unless labelled (all cores = {os.cpu_count()})")
    print(versions())
    rows: list[Row] = []
    sizes: dict[str, int] = {}
    for name, folder in folders.items():
        expected = expected_shape(folder)
        sizes[name] = math.prod(expected)
        series_rows = measure(name, folder, expected, rows_wanted, args.repeats)
        for row in series_rows:
            runs = " ".join(f"{t:.3f}" for t in row.times)
            print(f"  {name} / {row.tool}: {row.error or 'runs ' + runs + ' s'}", file=sys.stderr)
        rows.extend(series_rows)
    print(table(rows))

    largest = max(sizes, key=sizes.__getitem__)
    med = {r.tool: r.median for r in rows if r.series == largest}
    ratio = med.get("medpipes", math.nan) / med.get(REFERENCE, math.nan)
    print(f"ratio={ratio:.3f}" if math.isfinite(ratio) else "ratio=nan")
    failed = any(r.error for r in rows if r.series == largest and r.tool in ("medpipes", REFERENCE))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
