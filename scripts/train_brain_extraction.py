"""Retrain the shipped brain-extraction model with one command.

    python scripts/train_brain_extraction.py            # prepare build/brain_extraction/data, then train
    python scripts/train_brain_extraction.py --prepare-only
    python scripts/train_brain_extraction.py --evaluate build/brain_extraction/run/checkpoints/best.safetensors
    python scripts/train_brain_extraction.py --export build/brain_extraction/run/checkpoints/best.safetensors

Prepares the training folder named by ``pipelines/brain_extraction/train.yaml`` (``data.root``):
links to the NiChart T1 heads Subj1-15 and their reference brain masks (DLMUSE > 0, closed and
hole-filled, by ``medpipes.pipelines.brain_extraction.reference``). Subj16-18, the Trio head and the
IXI heads are held out for evaluation and never enter this folder. Then runs
``medpipes train pipelines/brain_extraction/train.yaml``. ``--evaluate`` runs the whole pipeline with a
checkpoint on the held-out Subj16-18 and prints Dice against their reference masks; ``--export`` copies a
checkpoint's weights to ``pipelines/brain_extraction/weights/model.safetensors`` and prints the
sha256 and size for the ``models_manifest.yaml`` entry.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "pipelines" / "brain_extraction" / "train.yaml"
TRAINING_SUBJECTS = tuple(f"Subj{n}" for n in range(1, 16))  # Subj16-18 are held out
HELD_OUT = frozenset({"Subj16", "Subj17", "Subj18"})


def data_root_from_config(config: Path = CONFIG) -> Path:
    """The ``data.root`` folder of the training config, resolved from the config's folder."""
    import yaml

    root = Path(yaml.safe_load(config.read_text(encoding="utf-8"))["data"]["root"])
    return root if root.is_absolute() else (config.parent / root).resolve()


def prepare(nichart: Path, root: Path) -> list[str]:
    """Link Subj1-15's T1 into ``root/t1`` and write their reference masks to ``root/masks``; return the subjects."""
    from medpipes.core.io import read_image, write_image
    from medpipes.pipelines.brain_extraction.reference import reference_brain_mask

    (root / "t1").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for subject in TRAINING_SUBJECTS:
        assert subject not in HELD_OUT
        link = root / "t1" / f"{subject}_T1.nii.gz"
        if not link.exists():
            link.symlink_to(nichart / "t1" / f"{subject}_T1.nii.gz")
        mask_path = root / "masks" / f"{subject}_mask.nii.gz"
        if not mask_path.exists():
            dlmuse = read_image(nichart / "dlmuse_seg" / f"{subject}_T1_DLMUSE.nii.gz")
            write_image(reference_brain_mask(dlmuse), mask_path)
    return list(TRAINING_SUBJECTS)


def evaluate(checkpoint: Path, nichart: Path, work: Path, threads: int = 2) -> dict[str, float]:
    """Dice of the pipeline's mask (with ``checkpoint``) against the reference mask, per held-out subject."""
    import numpy as np

    from medpipes.core.io import read_image
    from medpipes.pipelines.brain_extraction import run
    from medpipes.pipelines.brain_extraction.reference import reference_brain_mask

    scores = {}
    for subject in sorted(HELD_OUT):
        outputs = run([nichart / "t1" / f"{subject}_T1.nii.gz"], work / subject, model=checkpoint, device="cpu", threads=threads)
        mask = np.asarray(read_image(outputs["mask"]).array) > 0
        reference = np.asarray(reference_brain_mask(read_image(nichart / "dlmuse_seg" / f"{subject}_T1_DLMUSE.nii.gz")).array) > 0
        scores[subject] = 2.0 * np.count_nonzero(mask & reference) / (np.count_nonzero(mask) + np.count_nonzero(reference))
        print(f"{subject}: Dice {scores[subject]:.4f}")
    print(f"mean Dice {np.mean(list(scores.values())):.4f}")
    return scores


def export(checkpoint: Path, target: Path = REPO / "pipelines" / "brain_extraction" / "weights" / "model.safetensors") -> Path:
    """Copy the checkpoint's weights (safetensors) to the shipped place; print sha256, size and network config."""
    import json
    import shutil

    from medpipes.core.models import load_checkpoint
    from medpipes.core.store import sha256_file

    network = load_checkpoint(checkpoint)  # refuses a damaged or mismatched checkpoint before anything is copied
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, target)
    print(f"{target}: sha256 {sha256_file(target)} size {target.stat().st_size}")
    print(json.dumps(network.network_config()))
    return target


def main(argv: list[str] | None = None) -> int:
    """Prepare the data folder and run ``medpipes train`` on the shipped config."""
    from medpipes.core.testdata import test_data_root

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nichart", type=Path, default=test_data_root() / "brain" / "nichart")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--evaluate", type=Path, metavar="CHECKPOINT", help="Dice on the held-out Subj16-18 with this checkpoint")
    parser.add_argument("--export", type=Path, metavar="CHECKPOINT", help="copy this checkpoint to the shipped weights")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "brain_extraction" / "evaluation")
    args = parser.parse_args(argv)
    if args.evaluate is not None:
        evaluate(args.evaluate, args.nichart, args.work)
        return 0
    if args.export is not None:
        export(args.export)
        return 0
    root = data_root_from_config()
    subjects = prepare(args.nichart, root)
    print(f"training data: {root} ({len(subjects)} subjects: {', '.join(subjects)})")
    if args.prepare_only:
        return 0
    medpipes = Path(sys.executable).with_name("medpipes")
    return subprocess.call([str(medpipes), "train", str(CONFIG)])


if __name__ == "__main__":
    raise SystemExit(main())
