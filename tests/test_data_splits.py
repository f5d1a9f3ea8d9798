"""Subject-level splits: never a subject in two sets, every subject tested once, strata kept, CSV round trip."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from medpipes.core.data import (
    DataCollection,
    kfold,
    nested_kfold,
    read_splits,
    write_splits,
)
from medpipes.core.data.splits import Split, assign_folds
from medpipes.core.errors import InputError
from medpipes.core.image import Image

SUBJECTS = [f"s{n:02d}" for n in range(50)]
STRATA = {s: ("AD" if n % 5 == 0 else "CN") for n, s in enumerate(SUBJECTS)}  # 10 AD, 40 CN


def _sets(split):
    return [set(split.train), set(split.val), set(split.test)]


def test_kfold_tests_every_subject_exactly_once_and_never_leaks():
    splits = kfold(SUBJECTS, 5, seed=1)
    tested = Counter(s for split in splits for s in split.test)
    assert tested == Counter(SUBJECTS)
    for split in splits:
        train, val, test = _sets(split)
        assert not (train & test) and not val
        assert train | test == set(SUBJECTS)


def test_nested_kfold_is_gandlfs_20_16_64_without_leaks():
    splits = nested_kfold(SUBJECTS, 5, 5, seed=2)
    assert len(splits) == 25
    assert Counter(s for split in splits if split.inner == 0 for s in split.test) == Counter(SUBJECTS)
    for split in splits:
        train, val, test = _sets(split)
        assert not (train & val) and not (train & test) and not (val & test)
        assert train | val | test == set(SUBJECTS)
        assert (len(test), len(val), len(train)) == (10, 8, 32)  # 20% / 16% / 64%
    for outer in range(5):
        inner = [s for s in splits if s.outer == outer]
        assert len({s.test for s in inner}) == 1
        assert Counter(v for s in inner for v in s.val) == Counter(set(SUBJECTS) - set(inner[0].test))


def test_stratification_keeps_the_class_ratio_in_every_set_to_within_one_subject():
    for split in nested_kfold(SUBJECTS, 5, 5, seed=3, strata=STRATA):
        for name, members in (("test", split.test), ("val", split.val), ("train", split.train)):
            ad = sum(STRATA[s] == "AD" for s in members)
            assert abs(ad - 0.2 * len(members)) < 1.0, (split.outer, split.inner, name)
    folds = assign_folds(SUBJECTS, 5, seed=3, strata=STRATA)
    assert [sum(STRATA[s] == "AD" for s in fold) for fold in folds] == [2, 2, 2, 2, 2]


def test_splits_depend_only_on_the_seed():
    assert kfold(SUBJECTS, 5, seed=4) == kfold(SUBJECTS, 5, seed=4)
    assert kfold(SUBJECTS, 5, seed=4) != kfold(SUBJECTS, 5, seed=5)


def test_csv_round_trip_gives_the_same_splits(tmp_path):
    for splits in (kfold(SUBJECTS, 4, seed=0), nested_kfold(SUBJECTS, 5, 3, seed=0, strata=STRATA)):
        path = write_splits(splits, tmp_path / "splits.csv")
        back = read_splits(path)
        assert [(s.outer, s.inner, set(s.train), set(s.val), set(s.test)) for s in back] == [
            (s.outer, s.inner, set(s.train), set(s.val), set(s.test)) for s in splits
        ]


def test_a_split_file_with_a_leaking_subject_names_the_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("subject,outer_fold,inner_fold,set\ns1,0,,train\ns2,0,,test\ns1,0,,test\n")
    with pytest.raises(InputError, match=r"row 4: subject 's1' is already in fold \(0, None\) on row 2"):
        read_splits(path)
    with pytest.raises(InputError, match="subject 's1' is in both 'train' and 'test'"):
        write_splits([Split(0, None, ("s1",), (), ("s1",))], tmp_path / "never.csv")
    assert not (tmp_path / "never.csv").exists()


def test_duplicate_subjects_and_too_many_folds_are_refused():
    with pytest.raises(InputError, match="subject 's01' is listed twice"):
        kfold(["s01", "s02", "s01"], 2)
    with pytest.raises(InputError, match="k=5 folds but only 3 subjects"):
        kfold(["a", "b", "c"], 5)


def test_cases_of_one_subject_always_land_in_the_same_set():
    image = Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
    cases = {f"{s}_tp{t}": {"inputs": {"T1": image}} for s in ("a", "b", "c", "d") for t in (1, 2)}
    collection = DataCollection.from_images(cases, subjects={c: c.split("_")[0] for c in cases})
    assert collection.subjects == ["a", "b", "c", "d"]
    for split in kfold(collection.subjects, 2, seed=0):
        test_cases = collection.subset(split.test).case_ids
        train_cases = collection.subset(split.train).case_ids
        assert not {c.split("_")[0] for c in test_cases} & {c.split("_")[0] for c in train_cases}
        assert len(test_cases) + len(train_cases) == 8
