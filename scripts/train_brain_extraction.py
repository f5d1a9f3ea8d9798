"""Retrain the shipped brain-extraction model with one command.

    python scripts/train_brain_extraction.py            # prepare build/brain_extraction/data, then train
    python scripts/train_brain_extraction.py --prepare-only
    python scripts/train_brain_extraction.py --evaluate brain-extraction-unet [--flair]   # or a checkpoint
    python scripts/train_brain_extraction.py --validate brain-extraction-unet [--tta]     # choose threshold / TTA
    python scripts/train_brain_extraction.py --export build/brain_extraction/run-widen/checkpoints/best.safetensors

Prepares the training folder named by ``pipelines/brain_extraction/train.yaml`` (``data.root``): for
NiChart Subj1-15, the T1 head with its reference brain mask (DLMUSE > 0, closed and hole-filled, by
``medpipes.pipelines.brain_extraction.reference``) and the FLAIR with that mask moved onto it by a rigid
ANTs registration. Subj16-18, the Trio head and the IXI heads are held out for evaluation and never
enter this folder. Then runs ``medpipes train`` on ``train.yaml``, then on ``finetune.yaml``, ``refine.yaml``
and ``widen.yaml`` (each starts from the previous stage's best checkpoint; ``widen.yaml`` widens it from 8 to
12 base filters; the shipped weights are its best, build/brain_extraction/run-widen/checkpoints/best.safetensors).
``--evaluate`` runs
the whole pipeline with a checkpoint on the held-out Subj16-18 (``--flair``: their FLAIRs too) and
prints Dice against their reference masks; ``--export`` copies a checkpoint's weights to
``pipelines/brain_extraction/weights/model.safetensors`` and prints the sha256 and size for the
``models_manifest.yaml`` entry. ``--config`` trains or evaluates with another config.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from medpipes.core.image import Image, LabelMap

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "pipelines" / "brain_extraction" / "train.yaml"
FINETUNE = REPO / "pipelines" / "brain_extraction" / "finetune.yaml"  # second stage, from train.yaml's best
REFINE = REPO / "pipelines" / "brain_extraction" / "refine.yaml"  # third stage, from finetune.yaml's best
WIDEN = REPO / "pipelines" / "brain_extraction" / "widen.yaml"  # fourth stage: 12 base filters, from refine's best
TRAINING_SUBJECTS = tuple(f"Subj{n}" for n in range(1, 16))  # Subj16-18 are held out
HELD_OUT = frozenset({"Subj16", "Subj17", "Subj18"})


def data_root_from_config(config: Path = CONFIG) -> Path:
    """The ``data.root`` folder of the training config, resolved from the config's folder."""
    from medpipes.core.models.train_config import load_train_config

    loaded, base = load_train_config(config)
    return loaded.resolve(loaded.data.root, base).resolve()


def flair_mask(t1: Image, flair: Image, t1_mask: LabelMap) -> LabelMap:
    """The T1's reference mask moved onto the FLAIR's grid through a rigid ANTs registration (same subject)."""
    from medpipes.core.processing.registration import register

    flair_to_t1 = register(t1, flair, transform="rigid", random_seed=1)
    soft = Image(t1_mask.array.astype(np.float32), t1_mask.affine)  # linear, then 0.5: a smooth edge
    moved = flair_to_t1.inverse().apply(soft, onto=flair, interpolation="linear")
    return LabelMap((np.asarray(moved.array) >= 0.5).astype(np.uint8), flair.affine)


def prepare(nichart: Path, root: Path) -> list[str]:
    """Write Subj1-15's T1 and FLAIR cases with their reference masks under ``root``; return the case ids.

    Cases are ``<subject>_T1`` (the T1 and its DLMUSE reference mask) and ``<subject>_FL`` (the FLAIR
    with that mask moved onto it by rigid registration): one modality-agnostic single-channel model.
    """
    from medpipes.core.io import read_image, write_image
    from medpipes.pipelines.brain_extraction.reference import reference_brain_mask

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    cases = []
    for subject in TRAINING_SUBJECTS:
        assert subject not in HELD_OUT
        t1_path = nichart / "t1" / f"{subject}_T1.nii.gz"
        t1_mask_path = root / "masks" / f"{subject}_T1_mask.nii.gz"
        link = root / "images" / f"{subject}_T1.nii.gz"
        if not link.exists():
            link.symlink_to(t1_path)
        if not t1_mask_path.exists():
            dlmuse = read_image(nichart / "dlmuse_seg" / f"{subject}_T1_DLMUSE.nii.gz")
            write_image(reference_brain_mask(dlmuse), t1_mask_path)
        cases.append(f"{subject}_T1")
        flair_path = nichart / "fl" / f"{subject}_FL.nii.gz"
        if not flair_path.exists():
            continue
        link = root / "images" / f"{subject}_FL.nii.gz"
        if not link.exists():
            link.symlink_to(flair_path)
        fl_mask_path = root / "masks" / f"{subject}_FL_mask.nii.gz"
        if not fl_mask_path.exists():
            mask = flair_mask(read_image(t1_path), read_image(flair_path), read_image(t1_mask_path).as_label_map())
            write_image(mask, fl_mask_path)
            print(f"{subject}: FLAIR mask {int(mask.array.sum()) * float(np.prod(mask.spacing)) / 1000:.0f} mL")
        cases.append(f"{subject}_FL")
    return cases


def evaluate(checkpoint: str | Path, nichart: Path, work: Path, config: Path = CONFIG, threads: int = 2, flair: bool = False) -> dict[str, float]:
    """Dice of the pipeline's mask (with ``checkpoint``) against the reference mask, per held-out subject.

    The pipeline runs with the shipped ``pipeline.yaml`` whose preprocessing is replaced by the training
    config's, so a candidate trained at another spacing is measured as it would ship. With ``flair`` the
    held-out FLAIRs are scored too, against the T1 reference mask moved onto them by rigid registration.
    """
    import dataclasses

    from medpipes.core.io import read_image
    from medpipes.core.models.train_config import load_train_config
    from medpipes.core.pipeline import run_pipeline
    from medpipes.pipelines.brain_extraction import spec
    from medpipes.pipelines.brain_extraction.reference import reference_brain_mask

    plan = dataclasses.replace(spec(), preprocessing=load_train_config(config)[0].preprocessing)
    scores = {}
    for subject in sorted(HELD_OUT):
        t1_path = nichart / "t1" / f"{subject}_T1.nii.gz"
        reference = reference_brain_mask(read_image(nichart / "dlmuse_seg" / f"{subject}_T1_DLMUSE.nii.gz"))
        cases = [(f"{subject}_T1", t1_path, reference)]
        if flair:
            flair_path = nichart / "fl" / f"{subject}_FL.nii.gz"
            cases.append((f"{subject}_FL", flair_path, flair_mask(read_image(t1_path), read_image(flair_path), reference)))
        for case, path, truth in cases:
            result = run_pipeline(plan, [path], work / case, model=checkpoint, device="cpu", threads=threads)
            mask = np.asarray(read_image(result.outputs["mask"]).array) > 0
            expected = np.asarray(truth.array) > 0
            scores[case] = _dice(mask, expected)
            print(f"{case}: Dice {scores[case]:.4f}")
    for kind in ("T1", "FL"):
        values = [v for k, v in scores.items() if k.endswith(kind)]
        if values:
            print(f"mean Dice {kind} {np.mean(values):.4f}")
    return scores


def validate(checkpoint: str | Path, work: Path, config: Path = CONFIG, thresholds: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8),
             threads: int = 2, tta: bool = False) -> dict[float, float]:
    """Mean Dice over the config's validation cases per threshold of the brain probability (model selection only).

    Runs the shipped plan (the config's preprocessing; flip TTA when ``tta``) on each validation case of
    ``data.root`` and thresholds the probability on the case's own grid, so a threshold or TTA is chosen
    on the validation heads, never on the held-out ones. Also prints the Dice of the plan's own mask.
    """
    import dataclasses

    from medpipes.core.io import read_image
    from medpipes.core.models.train_config import load_train_config
    from medpipes.core.pipeline import run_pipeline
    from medpipes.pipelines.brain_extraction import spec

    loaded, _ = load_train_config(config)
    inference = {k: v for k, v in spec().inference.items() if k != "tta_flip_axes"} | ({"tta_flip_axes": [0]} if tta else {})
    plan = dataclasses.replace(spec(), preprocessing=loaded.preprocessing, inference=inference)
    root = data_root_from_config(config)
    rows, plan_scores = [], []
    for case in loaded.splits.val:
        result = run_pipeline(plan, [root / "images" / f"{case}.nii.gz"], work / case, model=checkpoint, device="cpu",
                              threads=threads, probabilities=True)
        probability = np.asarray(read_image(result.outputs["probability"]).array)
        truth = np.asarray(read_image(root / "masks" / f"{case}_mask.nii.gz").array) > 0
        rows.append([_dice(probability >= t, truth) for t in thresholds])
        plan_scores.append(_dice(np.asarray(read_image(result.outputs["mask"]).array) > 0, truth))
    means = dict(zip(thresholds, np.mean(rows, axis=0).tolist(), strict=True))
    print("validation", ", ".join(loaded.splits.val), "TTA" if tta else "no TTA")
    print("  " + "  ".join(f"{t}: {d:.4f}" for t, d in means.items()) + f"  plan's mask: {np.mean(plan_scores):.4f}")
    return means


def _dice(mask: np.ndarray, truth: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(mask & truth) / (np.count_nonzero(mask) + np.count_nonzero(truth))


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
    parser.add_argument("--config", type=Path, default=CONFIG, help="training config (default: the shipped model's)")
    parser.add_argument("--flair", action="store_true", help="with --evaluate: also score the held-out FLAIRs")
    parser.add_argument("--nichart", type=Path, default=test_data_root() / "brain" / "nichart")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument(
        "--evaluate", metavar="MODEL", help="Dice on the held-out Subj16-18 with this checkpoint or manifest id (brain-extraction-unet)"
    )
    parser.add_argument(
        "--validate", metavar="MODEL", help="Dice per threshold on the config's validation cases (choosing a threshold or TTA)"
    )
    parser.add_argument("--tta", action="store_true", help="with --validate: flip TTA")
    parser.add_argument("--export", type=Path, metavar="CHECKPOINT", help="copy this checkpoint to the shipped weights")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "brain_extraction" / "evaluation")
    args = parser.parse_args(argv)
    if args.evaluate is not None:
        evaluate(args.evaluate, args.nichart, args.work, config=args.config.resolve(), flair=args.flair)
        return 0
    if args.validate is not None:
        validate(args.validate, args.work / "validation", config=args.config.resolve(), tta=args.tta)
        return 0
    if args.export is not None:
        export(args.export)
        return 0
    root = data_root_from_config(args.config.resolve())
    subjects = prepare(args.nichart, root)
    print(f"training data: {root} ({len(subjects)} subjects: {', '.join(subjects)})")
    if args.prepare_only:
        return 0
    medpipes = Path(sys.executable).with_name("medpipes")
    stages = [args.config.resolve()]
    if stages[0] == CONFIG:
        stages += [stage for stage in (FINETUNE, REFINE, WIDEN) if stage.is_file()]
    for stage in stages:
        status = subprocess.call([str(medpipes), "train", str(stage)])
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
