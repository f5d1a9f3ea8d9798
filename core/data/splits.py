"""Subject-level splits: k-fold and nested k-fold (e.g. GaNDLF's 20/16/64), optionally stratified, CSV in and out.

Splits are made over subjects, never cases, so no subject's data is in two sets of one split.
Stratification deals each stratum's shuffled subjects round-robin over the folds (hand-written: it is a
few lines, and it keeps every stratum's share equal in every fold, nested folds included).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from medpipes.core.errors import InputError
from medpipes.core.io.atomic import atomic_write_text

SETS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """One split: outer fold (the test fold), inner fold (the validation fold, or None) and its three sets."""

    outer: int
    inner: int | None
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def role(self, subject: str) -> str | None:
        """'train', 'val', 'test' or None for a subject."""
        for name in SETS:
            if subject in getattr(self, name):
                return name
        return None


def assign_folds(
    subjects: Sequence[str], k: int, *, seed: int = 0, strata: Mapping[str, Any] | None = None
) -> list[list[str]]:
    """``k`` disjoint folds covering ``subjects``; with ``strata`` (subject -> class) each class is spread evenly."""
    subjects = _unique(subjects)
    if k < 2:
        raise InputError(f"k={k}: a k-fold split needs k >= 2")
    if k > len(subjects):
        raise InputError(f"k={k} folds but only {len(subjects)} subjects; lower k or add subjects")
    rng = np.random.default_rng(seed)
    if strata is None:
        groups = {"": list(subjects)}
    else:
        missing = [s for s in subjects if s not in strata]
        if missing:
            raise InputError(f"stratification: no class for subjects {missing[:5]}; give every subject a value")
        groups = {}
        for subject in subjects:
            groups.setdefault(str(strata[subject]), []).append(subject)
    folds: list[list[str]] = [[] for _ in range(k)]
    turn = 0
    for key in sorted(groups):
        members = [groups[key][i] for i in rng.permutation(len(groups[key]))]
        for subject in members:
            folds[turn % k].append(subject)
            turn += 1
    return folds


def kfold(subjects: Sequence[str], k: int = 5, *, seed: int = 0, strata: Mapping[str, Any] | None = None) -> list[Split]:
    """``k`` splits: fold n is the test set, the rest train (no validation set)."""
    folds = assign_folds(subjects, k, seed=seed, strata=strata)
    return [
        Split(n, None, tuple(s for m, f in enumerate(folds) if m != n for s in f), (), tuple(folds[n]))
        for n in range(k)
    ]


def nested_kfold(
    subjects: Sequence[str],
    outer_k: int = 5,
    inner_k: int = 5,
    *,
    seed: int = 0,
    strata: Mapping[str, Any] | None = None,
) -> list[Split]:
    """``outer_k * inner_k`` splits: each outer fold tests, each inner fold of the rest validates.

    With 5 and 5 this is GaNDLF's scheme: 20% test, 16% validation, 64% training.
    """
    outer = assign_folds(subjects, outer_k, seed=seed, strata=strata)
    splits = []
    for n in range(outer_k):
        rest = [s for m, fold in enumerate(outer) if m != n for s in fold]
        inner = assign_folds(rest, inner_k, seed=seed + 1 + n, strata=strata)
        for i in range(inner_k):
            train = tuple(s for m, fold in enumerate(inner) if m != i for s in fold)
            splits.append(Split(n, i, train, tuple(inner[i]), tuple(outer[n])))
    return splits


def write_splits(splits: Sequence[Split], path: str | os.PathLike[str]) -> Path:
    """Write splits as CSV rows ``subject,outer_fold,inner_fold,set`` (atomic); return the path."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["subject", "outer_fold", "inner_fold", "set"])
    for split in splits:
        check_no_leak(split)
        for name in SETS:
            for subject in getattr(split, name):
                writer.writerow([subject, split.outer, "" if split.inner is None else split.inner, name])
    atomic_write_text(path, buffer.getvalue())
    return Path(path)


def read_splits(path: str | os.PathLike[str]) -> list[Split]:
    """Read a file written by ``write_splits``; InputError naming the row when a subject leaks or a value is bad."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: split file does not exist; write it with write_splits")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        needed = {"subject", "outer_fold", "inner_fold", "set"}
        if not needed.issubset(reader.fieldnames or []):
            raise InputError(f"{path}: header {reader.fieldnames}; expected columns {sorted(needed)}")
        table: dict[tuple[int, int | None], dict[str, list[str]]] = {}
        seen: dict[tuple[int, int | None, str], int] = {}
        for row_number, row in enumerate(reader, start=2):
            subject, role = row["subject"].strip(), row["set"].strip()
            if role not in SETS:
                raise InputError(f"{path}: row {row_number}: set '{role}'; use one of {list(SETS)}")
            try:
                outer = int(row["outer_fold"])
                inner = int(row["inner_fold"]) if row["inner_fold"].strip() else None
            except ValueError:
                raise InputError(f"{path}: row {row_number}: fold numbers must be whole numbers") from None
            key = (outer, inner, subject)
            if key in seen:
                raise InputError(
                    f"{path}: row {row_number}: subject '{subject}' is already in fold ({outer}, {inner}) on row "
                    f"{seen[key]}; a subject belongs to one set per split"
                )
            seen[key] = row_number
            table.setdefault((outer, inner), {name: [] for name in SETS})[role].append(subject)
    return [
        Split(outer, inner, tuple(sets["train"]), tuple(sets["val"]), tuple(sets["test"]))
        for (outer, inner), sets in sorted(table.items(), key=lambda kv: (kv[0][0], -1 if kv[0][1] is None else kv[0][1]))
    ]


def check_no_leak(split: Split) -> None:
    """InputError naming the subject when it is in two sets of ``split``."""
    seen: dict[str, str] = {}
    for name in SETS:
        for subject in getattr(split, name):
            if subject in seen:
                raise InputError(
                    f"split ({split.outer}, {split.inner}): subject '{subject}' is in both '{seen[subject]}' and "
                    f"'{name}'; a subject belongs to one set"
                )
            seen[subject] = name


def _unique(subjects: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    for n, subject in enumerate(subjects):
        if subject in seen:
            raise InputError(
                f"subject '{subject}' is listed twice (positions {seen[subject]} and {n}); "
                "split over distinct subjects (DataCollection.subjects)"
            )
        seen[subject] = n
    return list(subjects)
