"""Score predicted label maps against reference label maps into a CSV (Dice, IoU, sensitivity, specificity, HD95 mm)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from medpipes.core.errors import InputError
from medpipes.core.image import Image, LabelMap
from medpipes.core.models.metrics import segmentation_scores
from medpipes.core.models.tables import write_csv_rows

SCORE_COLUMNS = ("case", "label", "dice", "iou", "sensitivity", "specificity", "hd95_mm")
_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True)
class Pair:
    """One case: its id, the prediction file and the reference label file."""

    case: str
    prediction: Path
    label: Path


def case_name(path: Path) -> str:
    """A file's name without its image suffix (``Subj1_seg.nii.gz`` -> ``Subj1_seg``)."""
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _images_in(folder: Path) -> dict[str, Path]:
    return {case_name(p): p for p in sorted(folder.iterdir()) if p.is_file() and p.name.lower().endswith(_SUFFIXES)}


def pair_files(predictions: Path, label_dir: Path) -> list[Pair]:
    """Pairs from a prediction folder (matched to ``label_dir`` by file name) or a CSV (``case,prediction[,label]``)."""
    if not label_dir.is_dir():
        raise InputError(f"{label_dir}: label folder does not exist; pass the folder of reference label maps")
    labels = _images_in(label_dir)
    if predictions.is_dir():
        found = _images_in(predictions)
        if not found:
            raise InputError(f"{predictions}: no image file ({', '.join(_SUFFIXES)}) in the prediction folder")
        missing = sorted(set(found) - set(labels))
        if missing:
            raise InputError(
                f"{predictions}: prediction {missing[0]!r} has no label file of the same name in {label_dir}; "
                "name predictions like their labels, or list the pairs in a CSV (case,prediction,label)"
            )
        return [Pair(case, path, labels[case]) for case, path in found.items()]
    if predictions.is_file() and predictions.suffix.lower() == ".csv":
        return _pairs_from_csv(predictions, label_dir, labels)
    raise InputError(f"{predictions}: not a folder of predictions or a .csv listing them; check the path")


def _pairs_from_csv(path: Path, label_dir: Path, labels: dict[str, Path]) -> list[Pair]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        if "prediction" not in header:
            raise InputError(f"{path}: no 'prediction' column (header {header}); columns are case, prediction[, label]")
        pairs = []
        for row_number, row in enumerate(reader, start=2):
            pred = Path(row["prediction"].strip())
            pred = pred if pred.is_absolute() else path.parent / pred
            case = (row.get("case") or "").strip() or case_name(pred)
            if (row.get("label") or "").strip():
                label = Path(row["label"].strip())
                label = label if label.is_absolute() else label_dir / label
            elif case in labels:
                label = labels[case]
            else:
                raise InputError(f"{path}: row {row_number}: no label file for case {case!r} in {label_dir}; add a label column")
            for kind, file in (("prediction", pred), ("label", label)):
                if not file.is_file():
                    raise InputError(f"{path}: row {row_number}: {kind} file {file} does not exist; fix the path")
            pairs.append(Pair(case, pred, label))
    if not pairs:
        raise InputError(f"{path}: no rows; list one prediction per line")
    return pairs


def _as_labels(image: Image, path: Path, binarise: bool) -> LabelMap:
    array = np.asarray(image.array)
    if array.ndim != 3:
        raise InputError(f"{path}: a label map must be 3D, got shape {array.shape}; give one label per voxel")
    if array.dtype.kind == "f":
        rounded = np.rint(array)
        if not np.allclose(array, rounded):
            raise InputError(f"{path}: holds non-integer values (probabilities?); threshold or argmax it first")
        array = rounded
    array = (array > 0).astype(np.uint8) if binarise else array.astype(np.int64)
    return LabelMap(array, image.affine, image.meta)


def score_pair(pair: Pair, labels: Sequence[int] | None = None, binarise: bool = False) -> list[dict[str, float | str]]:
    """One row per label for one case (labels: those given, else every non-zero label in either)."""
    from medpipes.core.io import read_image

    prediction = _as_labels(read_image(pair.prediction), pair.prediction, binarise)
    reference = _as_labels(read_image(pair.label), pair.label, binarise)
    if not prediction.same_grid(reference):
        raise InputError(
            f"{pair.prediction}: grid {prediction.spatial_shape} differs from its label {pair.label} "
            f"({reference.spatial_shape}); resample the prediction onto the label's grid first"
        )
    return [{"case": pair.case, **row} for row in segmentation_scores(prediction, reference, labels)]


def evaluate(
    predictions: str | os.PathLike[str],
    label_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    labels: Sequence[int] | None = None,
    binarise: bool = False,
) -> list[dict[str, float | str]]:
    """Score every prediction against its label and write the rows (plus one ``mean`` row per label) to ``out``."""
    pairs = pair_files(Path(predictions), Path(label_dir))
    rows: list[dict[str, float | str]] = []
    for pair in pairs:
        rows.extend(score_pair(pair, labels, binarise))
    rows.extend(mean_rows(rows))
    write_scores_csv(rows, Path(out))
    return rows


def mean_rows(rows: Sequence[dict[str, float | str]]) -> list[dict[str, float | str]]:
    """Per label, the mean of each score over cases (NaN and inf left out of the mean; HD95 inf stays inf if all are)."""
    out = []
    for label in sorted({int(r["label"]) for r in rows}):
        chosen = [r for r in rows if int(r["label"]) == label]
        mean: dict[str, float | str] = {"case": "mean", "label": label}
        for column in SCORE_COLUMNS[2:]:
            values = [float(r[column]) for r in chosen if math.isfinite(float(r[column]))]
            mean[column] = float(np.mean(values)) if values else float(chosen[0][column])
        out.append(mean)
    return out


def write_scores_csv(rows: Sequence[dict[str, float | str]], path: Path) -> Path:
    """The rows as CSV (``SCORE_COLUMNS``), written atomically."""
    return write_csv_rows(rows, SCORE_COLUMNS, path, ".6g")
