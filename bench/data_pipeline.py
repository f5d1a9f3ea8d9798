#!/usr/bin/env python
"""Benchmark: augmented, label-biased 96^3 patches per second, medpipes PatchQueue vs TorchIO Queue.

Inputs (shared real data): the T1 heads Subj1-Subj4 of ``brain/nichart`` (106 x 127 x 135, 2 mm) with
their DLMUSE parcellations; a label voxel is any voxel with label > 0. Both tools read the same NIfTI
files each time a volume is needed and run the same chain, with the same parameters and the same seed:

    flip along array axis 0 (probability 0.5) -> random affine (scales 0.9-1.1, rotations +-10 degrees,
    linear for the T1, nearest neighbour for the labels) -> Gaussian noise (std drawn from 0-5)
    -> 96^3 patches, every patch centred on a label voxel (TorchIO: LabelSampler, label_probabilities=None)

Queue settings alike: ``samples_per_volume`` (table rows 1 and 4), ``max_length`` 16, cases and patches
shuffled, ``--workers`` worker processes (rows 0 and 1; 2 cores here). Threads: torch and SimpleITK
use one thread in every process (TorchIO resamples with SimpleITK). One warm-up pass, then
``--repeats`` timed runs of ``--patches`` patches each, through ``DataLoader(queue, batch_size=2)``;
the table shows each tool's median patches per second; each configuration runs medpipes and TorchIO
alternately so a busy spell of the machine slows both alike.

The last line is ``ratio=<medpipes patches/s divided by TorchIO patches/s>`` for the reference row
(``samples_per_volume`` 4, 1 worker, TorchIO's documented usage): above 1 means medpipes is faster;
the target is >= 1.

Usage: .venv/bin/python bench/data_pipeline.py [--repeats 5] [--patches 32] [--workers 0 1] [--spv 1 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import SimpleITK as sitk
import torch
from medpipes.core.testdata import ENV_VAR, find_test_data, test_data_root

SUBJECTS = ("Subj1", "Subj2", "Subj3", "Subj4")
PATCH = 96
MAX_LENGTH = 16
BATCH = 2
SEED = 0
REFERENCE = (4, 1)  # (samples_per_volume, workers) of the ratio line


def medpipes_batches(root, spv: int, workers: int) -> Iterator[object]:
    """Endless batches from medpipes' PatchQueue."""
    from medpipes.core.data import (
        Compose,
        DataCollection,
        PatchQueue,
        PatchSampler,
        RandomAffine,
        RandomFlip,
        RandomNoise,
    )

    collection = DataCollection.from_folders(
        root, {"t1": "t1/{case}_T1.nii.gz", "seg": "dlmuse_seg/{case}_T1_DLMUSE.nii.gz"}, label_groups=("seg",)
    ).subset(SUBJECTS)
    augmentation = Compose(
        [RandomFlip(axes=(0,), flip_probability=0.5), RandomAffine(scales=0.1, degrees=10), RandomNoise(std=(0, 5))]
    )
    sampler = PatchSampler(PATCH, label_group="seg", label_fraction=1.0)
    queue = PatchQueue(
        collection, sampler, samples_per_volume=spv, max_length=MAX_LENGTH, augmentation=augmentation,
        num_workers=workers, seed=SEED,
    )
    loader = torch.utils.data.DataLoader(queue, batch_size=BATCH, num_workers=0)
    while True:
        for batch in loader:
            assert batch["t1"].shape[-3:] == (PATCH,) * 3
            yield batch


def torchio_batches(root, spv: int, workers: int) -> Iterator[object]:
    """Endless batches from TorchIO's Queue."""
    import torchio as tio

    torch.manual_seed(SEED)
    subjects = [
        tio.Subject(
            t1=tio.ScalarImage(root / "t1" / f"{s}_T1.nii.gz"), seg=tio.LabelMap(root / "dlmuse_seg" / f"{s}_T1_DLMUSE.nii.gz")
        )
        for s in SUBJECTS
    ]
    transform = tio.Compose(
        [tio.RandomFlip(axes=(0,), flip_probability=0.5), tio.RandomAffine(scales=0.1, degrees=10), tio.RandomNoise(std=(0, 5))]
    )
    dataset = tio.SubjectsDataset(subjects, transform=transform)
    sampler = tio.LabelSampler(PATCH, label_name="seg")
    queue = tio.Queue(dataset, max_length=MAX_LENGTH, samples_per_volume=spv, sampler=sampler, num_workers=workers)
    loader = torch.utils.data.DataLoader(queue, batch_size=BATCH, num_workers=0)
    while True:
        for batch in loader:
            assert batch["t1"]["data"].shape[-3:] == (PATCH,) * 3
            yield batch


def rate(batches: Iterator[object], patches: int) -> float:
    """Patches per second over ``patches`` patches."""
    start = time.perf_counter()
    for _ in range(patches // BATCH):
        next(batches)
    return (patches // BATCH) * BATCH / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--patches", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--spv", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    root = find_test_data("brain", "nichart")
    if root is None:
        print(f"shared data brain/nichart not found under {test_data_root()}; set {ENV_VAR}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(1)
    import torchio

    print(f"# {len(SUBJECTS)} nichart T1 heads 106x127x135 + DLMUSE labels; {PATCH}^3 patches; torch threads 1; "
          f"torchio {torchio.__version__}; repeats {args.repeats} x {args.patches} patches")
    print(f"{'samples_per_volume':>18} {'workers':>7} {'medpipes p/s':>13} {'TorchIO p/s':>12} {'ratio':>6}")
    results = {}
    for spv in args.spv:
        for workers in args.workers:
            tools: dict[str, Callable[..., Iterator[object]]] = {"medpipes": medpipes_batches, "torchio": torchio_batches}
            streams = {name: make(root, spv, workers) for name, make in tools.items()}
            for stream in streams.values():  # warm-up: workers started, one pass over the volumes
                rate(stream, len(SUBJECTS) * spv)
            rates: dict[str, list[float]] = {name: [] for name in streams}
            for _ in range(args.repeats):
                for name, stream in streams.items():
                    rates[name].append(rate(stream, args.patches))
            ours, theirs = statistics.median(rates["medpipes"]), statistics.median(rates["torchio"])
            results[(spv, workers)] = ours / theirs
            print(f"{spv:>18} {workers:>7} {ours:>13.1f} {theirs:>12.1f} {ours / theirs:>6.2f}")
            for stream in streams.values():
                stream.close()
    reference = REFERENCE if REFERENCE in results else next(iter(results))
    print(f"# ratio row: samples_per_volume {reference[0]}, workers {reference[1]}")
    print(f"ratio={results[reference]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
