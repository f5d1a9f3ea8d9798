#!/usr/bin/env python
"""Benchmark: 3D U-Net patch inference, medpipes ``infer_patches`` vs MONAI ``sliding_window_inference``.

Input: a real head (NiChart Subj1 T1, 2 mm, 106x127x135, shared data) resampled to 1.7 mm isotropic
(linear interpolation, scipy.ndimage.zoom), centred and zero-padded to 192x192x160, z-scored over the
head. Network: medpipes' U-Net, depth 4, 16 base filters (16-32-64-128), instance norm, 1 input
channel, 2 outputs, random weights from a fixed seed, eval mode. Both inferers: 96^3 patches,
overlap 0.5, Gaussian blending with sigma = 0.125 x patch size (medpipes uses MONAI's Gaussian
definition and patch placement, so the outputs are comparable voxel for voxel), the same
``sw_batch_size``, both under ``torch.no_grad()``, the same ``torch.set_num_threads`` (default 2,
the two cores of the development machine; ``--threads``).

Same process, same input, same network: one warm-up of each inferer on a 96^3 crop, then
``--repeats`` rounds (default 3: a full run takes about a minute per tool on 2 cores) in which each
tool runs once, alternating which goes first; the table shows each tool's median and min wall-clock
seconds and its median CPU seconds (process time: on a shared machine, other processes' load shows
in wall-clock time but hardly in CPU time), and each round's paired ratio is printed.
The outputs of every round must agree within 1e-5 (the max abs difference is printed); otherwise
the exit status is 1.

The last line is ``ratio=<medpipes median seconds / MONAI median seconds>``: below 1 means medpipes
is faster; the target is <= 1.

Usage: .venv/bin/python bench/patch_inference.py [--repeats 3] [--threads 2] [--sw-batch-size 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from medpipes.core.inference import infer_patches, patch_starts
from medpipes.core.models import UNet, UNetConfig, resolve_device
from medpipes.core.testdata import ENV_VAR, find_test_data

SHAPE = (192, 192, 160)
PATCH = (96, 96, 96)
OVERLAP = 0.5
SIGMA_SCALE = 0.125
SPACING_MM = 1.7
TOLERANCE = 1e-5


def load_head() -> torch.Tensor:
    """The real head, resampled and padded to SHAPE, z-scored over the head: (1, 1, *SHAPE) float32."""
    path = find_test_data("brain", "nichart", "t1", "Subj1_T1.nii.gz")
    if path is None:
        sys.exit(f"shared data brain/nichart/t1/Subj1_T1.nii.gz not found; set {ENV_VAR} to the shared data folder")
    img = nib.load(path)
    array = np.asarray(img.dataobj, dtype=np.float32)
    zoom = np.array(img.header.get_zooms()[:3]) / SPACING_MM
    resampled = ndimage.zoom(array, zoom, order=1)
    if any(r > s for r, s in zip(resampled.shape, SHAPE)):
        sys.exit(f"resampled head {resampled.shape} does not fit {SHAPE}; raise SPACING_MM")
    volume = np.zeros(SHAPE, dtype=np.float32)
    offset = [(s - r) // 2 for r, s in zip(resampled.shape, SHAPE)]
    volume[tuple(slice(o, o + r) for o, r in zip(offset, resampled.shape))] = resampled
    head = volume > 0
    volume[head] = (volume[head] - volume[head].mean()) / volume[head].std()
    return torch.from_numpy(volume)[None, None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sw-batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args()

    from monai.inferers import sliding_window_inference  # the bench extra

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    network = (
        UNet(UNetConfig(spatial_dims=3, in_channels=1, out_channels=2, depth=4, base_filters=16)).to(device).eval()
    )
    volume = load_head().to(device)

    def run_medpipes(x: torch.Tensor) -> torch.Tensor:
        return infer_patches(
            network, x, PATCH, overlap=OVERLAP, blend="gaussian", sigma_scale=SIGMA_SCALE, batch_size=args.sw_batch_size
        )

    def run_monai(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return sliding_window_inference(
                x, PATCH, args.sw_batch_size, network, overlap=OVERLAP, mode="gaussian", sigma_scale=SIGMA_SCALE
            )

    tools = {"medpipes": run_medpipes, "MONAI": run_monai}
    warm = volume[(..., *(slice(0, p) for p in PATCH))].contiguous()
    for run in tools.values():
        run(warm)

    times: dict[str, list[float]] = {name: [] for name in tools}
    cpu_times: dict[str, list[float]] = {name: [] for name in tools}
    max_diff = 0.0
    for round_index in range(args.repeats):
        order = list(tools) if round_index % 2 == 0 else list(reversed(tools))
        outputs = {}
        for name in order:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
            outputs[name] = tools[name](volume)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
        max_diff = max(max_diff, float((outputs["medpipes"] - outputs["MONAI"]).abs().max()))
        del outputs

    n_patches = len(patch_starts(SHAPE, PATCH, (OVERLAP,) * 3))
    print(
        f"3D U-Net depth 4, base 16 filters; volume {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]}, "
        f"patch {PATCH[0]}^3, overlap {OVERLAP}, "
        f"gaussian (sigma {SIGMA_SCALE} x patch), {n_patches} patches, sw_batch_size {args.sw_batch_size}, "
        f"device {device}, {args.threads} thread(s), median of {args.repeats}"
    )
    print(f"{'tool':<10} {'median s':>10} {'min s':>10} {'CPU s':>10}")
    for name, values in times.items():
        cpu = statistics.median(cpu_times[name])
        print(f"{name:<10} {statistics.median(values):>10.2f} {min(values):>10.2f} {cpu:>10.2f}")
    paired = [m / o for m, o in zip(times["medpipes"], times["MONAI"])]
    print("per-round ratios medpipes/MONAI: " + ", ".join(f"{r:.3f}" for r in paired))
    print(f"max abs difference medpipes vs MONAI: {max_diff:.3g} (tolerance {TOLERANCE:g})")
    ratio = statistics.median(times["medpipes"]) / statistics.median(times["MONAI"])
    print(f"ratio={ratio:.3f}")
    return 0 if max_diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
