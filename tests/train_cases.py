"""Generators of tiny training cases and configs for the training-engine tests (loaded by path, not a test module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import yaml


def write_sphere_cases(root: Path, count: int, size: int = 16, seed: int = 0, channels: int = 1) -> list[str]:
    """``count`` cases of a noisy bright sphere (``img/{case}_c{n}.nii.gz``) and its mask (``seg/{case}.nii.gz``)."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "seg").mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), axis=-1).astype(np.float32)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    names = []
    for n in range(count):
        centre = rng.uniform(size * 0.35, size * 0.65, size=3)
        radius = rng.uniform(size * 0.2, size * 0.32)
        mask = (np.linalg.norm(grid - centre, axis=-1) <= radius).astype(np.uint8)
        name = f"case{n:02d}"
        for c in range(channels):
            image = mask * (1.0 + 0.2 * c) + rng.normal(0, 0.35, size=mask.shape)
            nib.save(nib.Nifti1Image(image.astype(np.float32), affine), str(root / "img" / f"{name}_c{c}.nii.gz"))
        nib.save(nib.Nifti1Image(mask, affine), str(root / "seg" / f"{name}.nii.gz"))
        names.append(name)
    return names


def sphere_config(root: Path, output_dir: Path, val: list[str], **sections: Any) -> dict[str, Any]:
    """A small training config over ``write_sphere_cases`` data; ``sections`` update or add top-level sections."""
    config: dict[str, Any] = {
        "data": {"root": str(root), "inputs": {"T1": "img/{case}_c0.nii.gz"}, "labels": "seg/{case}.nii.gz"},
        "splits": {"val": val},
        "model": {
            "architecture": "unet",
            "in_channels": 1,
            "out_channels": 2,
            "depth": 2,
            "base_filters": 4,
            "norm": "instance",
        },
        "loss": {"name": "dice_ce"},
        "optimizer": {"name": "adam", "lr": 0.01},
        "scheduler": {"name": "none"},
        "training": {"epochs": 2, "batch_size": 2, "seed": 3, "device": "cpu"},
        "output_dir": str(output_dir),
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as YAML at ``path``."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
