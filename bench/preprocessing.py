#!/usr/bin/env python
"""Benchmark: resampling a 256^3 volume to 1 mm, and N4 on a real T1; medpipes vs SimpleITK, TorchIO, ANTs.

Resample: a 256^3 volume at 0.9 mm isotropic (float32, C order) is made in the bench by resampling
the real head ``brain/nichart/t1/Subj1_T1.nii.gz`` (2 mm) about its centre; it is then resampled to
1 mm (230^3), linear interpolation everywhere, by
  - medpipes ``Resample(spacing=1.0)`` (numpy in, numpy out: its SimpleITK conversions and the
    NaN/inf check included), on the C-ordered array and on an F-ordered copy (as nibabel reads NIfTI),
  - SimpleITK ``ResampleImageFilter`` onto the same grid, from a ready ``sitk.Image`` to a numpy
    array (Execute + GetArrayFromImage; the input conversion is not timed), and the same from an
    (i, j, k)-ordered numpy array to one (the transposed copies SimpleITK's (z, y, x) order needs),
  - TorchIO ``tio.Resample(1.0, image_interpolation="linear")`` on a ScalarImage (its own grid).
N4: the same T1 (106 x 127 x 135, 2 mm), parameters identical for all four: mask = Otsu's
foreground (computed once, given to every tool), shrink factor 4, 4 levels x 50 iterations,
convergence 1e-7, B-spline mesh 1 (4 control points per axis):
  - medpipes ``N4BiasFieldCorrection`` with backend "sitk" and with backend "ants",
  - SimpleITK direct: Shrink, N4BiasFieldCorrectionImageFilter, GetLogBiasFieldAsImage, divide,
  - ANTs direct: ``ants.n4_bias_field_correction`` on a ready ANTsImage.
Each wrapper's output is compared with its direct counterpart (max relative difference).

Threads: ONE. The process is pinned to one CPU (sched_setaffinity), ITK's thread count is 1 for
SimpleITK (ProcessObject_SetGlobalDefaultNumberOfThreads) and for ANTs (ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS
set before antspy is imported), torch uses 1 thread. One warm-up round, then ``--repeats`` rounds
interleaving the tools; medians are reported.

The last line is ``ratio=<medpipes resample median s / SimpleITK resample median s>``: above 1 means
the medpipes wrapper is slower than SimpleITK's filter alone (the target: close to 1, negligible
overhead).

Usage: .venv/bin/python bench/preprocessing.py [--repeats 3] [--skip-n4]
"""

from __future__ import annotations

import os

os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"  # read once by ANTs' ITK: before antspy loads

import argparse
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from medpipes.core.testdata import ENV_VAR, find_test_data, test_data_root

T1 = ("brain", "nichart", "t1", "Subj1_T1.nii.gz")
N4_ITERATIONS = [50, 50, 50, 50]
N4_SHRINK = 4
N4_TOLERANCE = 1e-7


def pin_one_thread() -> None:
    """One CPU, one ITK thread (SimpleITK and ANTs), one torch thread."""
    import SimpleITK as sitk

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def big_volume(t1: Any) -> Any:
    """The head resampled onto 256^3 voxels of 0.9 mm about its centre (same direction)."""
    from medpipes.core.processing import Grid, resample_onto

    shape = np.array([256, 256, 256], dtype=np.float64)
    centre = t1.voxel_to_world((np.array(t1.spatial_shape) - 1) / 2)
    affine = np.eye(4)
    affine[:3, :3] = t1.direction * 0.9
    affine[:3, 3] = centre - affine[:3, :3] @ ((shape - 1) / 2)
    big = resample_onto(t1.with_array(t1.array.astype(np.float32)), Grid((256, 256, 256), affine), "linear")
    return big.with_array(np.ascontiguousarray(big.array))  # C order, as numpy makes arrays


# --- resample tools ----------------------------------------------------------------------------
def resample_tools(big: Any) -> dict[str, Callable[[], np.ndarray]]:
    import SimpleITK as sitk
    from medpipes.core.image import LPS_TO_RAS
    from medpipes.core.processing import Resample

    step = Resample(spacing=1.0, interpolation="linear")
    grid = step.target_grid(big)
    source = big.to_sitk()
    big_f = big.with_array(np.asfortranarray(big.array))  # as nibabel reads NIfTI
    lps = LPS_TO_RAS @ grid.affine
    spacing = np.array(grid.spacing)
    sitk_filter = sitk.ResampleImageFilter()
    sitk_filter.SetSize([int(n) for n in grid.spatial_shape])
    sitk_filter.SetOutputSpacing(spacing.tolist())
    sitk_filter.SetOutputOrigin(lps[:3, 3].tolist())
    sitk_filter.SetOutputDirection((lps[:3, :3] / spacing).flatten().tolist())
    sitk_filter.SetInterpolator(sitk.sitkLinear)
    sitk_filter.SetDefaultPixelValue(0)

    def sitk_from_numpy() -> np.ndarray:
        image = sitk.GetImageFromArray(np.ascontiguousarray(big.array.transpose(2, 1, 0)))
        image.CopyInformation(source)
        return np.ascontiguousarray(sitk.GetArrayFromImage(sitk_filter.Execute(image)).transpose(2, 1, 0))

    tools: dict[str, Callable[[], np.ndarray]] = {
        "medpipes Resample": lambda: step.apply(big).array,
        "medpipes Resample, F-order in": lambda: step.apply(big_f).array,
        "SimpleITK ResampleImageFilter": lambda: sitk.GetArrayFromImage(sitk_filter.Execute(source)).transpose(2, 1, 0),
        "SimpleITK, (i,j,k) numpy in/out": sitk_from_numpy,
    }
    try:
        import torch
        import torchio as tio

        subject_image = tio.ScalarImage(tensor=torch.from_numpy(big.array[np.newaxis]), affine=big.affine)
        tio_resample = tio.Resample(1.0, image_interpolation="linear")
        tools["TorchIO Resample"] = lambda: tio_resample(subject_image).data[0].numpy()
    except ImportError:
        print("TorchIO not installed (bench extra): its row is skipped", file=sys.stderr)
    return tools


# --- N4 tools ------------------------------------------------------------------------------------
def n4_tools(t1: Any) -> tuple[dict[str, Callable[[], np.ndarray]], np.ndarray]:
    """The four N4 runs, and the fit mask (outputs are compared inside it: outside, ANTs' own output
    is not the input divided by its field, while both medpipes backends divide everywhere)."""
    import ants
    import SimpleITK as sitk
    from medpipes.core.image import LabelMap
    from medpipes.core.processing.bias import N4BiasFieldCorrection
    from medpipes.core.processing.registration import to_ants

    image = t1.with_array(t1.array.astype(np.float32))
    otsu = sitk.GetArrayFromImage(sitk.OtsuThreshold(image.to_sitk(), 0, 1, 200)).transpose(2, 1, 0)
    mask = LabelMap((otsu > 0) & (image.array > 0), image.affine)
    params = dict(mask=mask, shrink_factor=N4_SHRINK, iterations=N4_ITERATIONS, convergence_threshold=N4_TOLERANCE, spline_mesh_size=1)
    ours_sitk = N4BiasFieldCorrection("sitk", **params)
    ours_ants = N4BiasFieldCorrection("ants", **params)

    sitk_image, sitk_mask = image.to_sitk(), mask.to_sitk()

    def sitk_direct() -> np.ndarray:
        small = sitk.Shrink(sitk_image, [N4_SHRINK] * 3)
        small_mask = sitk.Shrink(sitk_mask, [N4_SHRINK] * 3)
        n4 = sitk.N4BiasFieldCorrectionImageFilter()
        n4.SetMaximumNumberOfIterations(N4_ITERATIONS)
        n4.SetConvergenceThreshold(N4_TOLERANCE)
        n4.SetNumberOfControlPoints([4, 4, 4])
        n4.Execute(small, small_mask)
        field = sitk.Exp(n4.GetLogBiasFieldAsImage(sitk_image))
        return sitk.GetArrayFromImage(sitk_image / sitk.Cast(field, sitk_image.GetPixelID())).transpose(2, 1, 0)

    ants_image, ants_mask = to_ants(image), to_ants(mask).clone("float")

    def ants_direct() -> np.ndarray:
        return ants.n4_bias_field_correction(
            ants_image, mask=ants_mask, shrink_factor=N4_SHRINK,
            convergence={"iters": N4_ITERATIONS, "tol": N4_TOLERANCE}, spline_param=[1, 1, 1],
        ).numpy()

    return {
        "medpipes N4 (sitk backend)": lambda: ours_sitk.apply(image).array,
        "SimpleITK N4 direct": sitk_direct,
        "medpipes N4 (ants backend)": lambda: ours_ants.apply(image).array,
        "ANTs n4_bias_field_correction": ants_direct,
    }, mask.array > 0


# --- measuring -----------------------------------------------------------------------------------
def measure(tools: dict[str, Callable[[], np.ndarray]], repeats: int) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """One warm-up round, then ``repeats`` interleaved rounds; the times and each tool's last output."""
    times: dict[str, list[float]] = {name: [] for name in tools}
    outputs: dict[str, np.ndarray] = {}
    for round_index in range(repeats + 1):
        spent = {}
        for name, tool in tools.items():
            gc.collect()
            start = time.perf_counter()
            result = tool()
            spent[name] = time.perf_counter() - start
            outputs[name] = np.asarray(result)
            if round_index:
                times[name].append(spent[name])
        label = "warm-up" if round_index == 0 else f"round {round_index}"
        print(f"  {label}: " + ", ".join(f"{n} {s:.2f}s" for n, s in spent.items()), file=sys.stderr, flush=True)
    return times, outputs


def relative_difference(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """max |a - b| / max |b|, over ``where`` when given."""
    if a.shape != b.shape:
        return math.nan
    a, b = (a, b) if where is None else (a[where], b[where])
    scale = float(np.abs(b).max()) or 1.0
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / scale)


def table(
    title: str,
    times: dict[str, list[float]],
    outputs: dict[str, np.ndarray],
    reference: str,
    pairs: dict[str, str],
    where: np.ndarray | None = None,
) -> str:
    ref = statistics.median(times[reference])
    lines = [title, f"{'tool':<32} {'median s':>9} {'vs ' + reference.split()[0]:>13}  output shape    max rel. diff to"]
    for name, values in times.items():
        median = statistics.median(values)
        partner = pairs.get(name)
        diff = f"{relative_difference(outputs[name], outputs[partner], where):.1e} ({partner})" if partner else ""
        lines.append(f"{name:<32} {median:>9.3f} {median / ref:>13.2f}  {outputs[name].shape!s:<15} {diff}")
    return "\n".join(lines)


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for dist in ("medpipes", "SimpleITK", "antspyx", "torchio", "torch"):
        try:
            found.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            found.append(f"{dist} (not installed)")
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks, print the tables, then ``ratio=...`` as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up (default 3)")
    parser.add_argument("--skip-n4", action="store_true", help="only the resampling benchmark")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    path = find_test_data(*T1)
    if path is None:
        print(f"error: shared test data {'/'.join(T1)} not found under {test_data_root()}; set {ENV_VAR}", file=sys.stderr)
        return 2

    from medpipes.core.io import read_image

    pin_one_thread()
    t1 = read_image(path)
    print(f"Preprocessing benchmark: median of {args.repeats} interleaved rounds after 1 warm-up, one thread, one CPU")
    print(versions())

    big = big_volume(t1)
    print(f"resample input: {big.shape} at {big.spacing[0]:.2f} mm (made from {path.name}), to 1 mm, linear")
    times, outputs = measure(resample_tools(big), args.repeats)
    print(table("Resample 256^3 @ 0.9 mm -> 1 mm", times, outputs, "SimpleITK ResampleImageFilter", {"medpipes Resample": "SimpleITK ResampleImageFilter", "medpipes Resample, F-order in": "SimpleITK ResampleImageFilter", "SimpleITK, (i,j,k) numpy in/out": "SimpleITK ResampleImageFilter"}))
    ratio = statistics.median(times["medpipes Resample"]) / statistics.median(times["SimpleITK ResampleImageFilter"])
    del outputs

    if not args.skip_n4:
        print()
        print(f"N4 on {path.name} {t1.shape}: Otsu mask, shrink {N4_SHRINK}, iterations {N4_ITERATIONS}, tol {N4_TOLERANCE:g}, mesh 1")
        tools, mask = n4_tools(t1)
        times, outputs = measure(tools, args.repeats)
        pairs = {"medpipes N4 (sitk backend)": "SimpleITK N4 direct", "medpipes N4 (ants backend)": "ANTs n4_bias_field_correction"}
        print(table("N4 bias field correction (differences inside the mask)", times, outputs, "SimpleITK N4 direct", pairs, mask))
    print(f"ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
