"""DataCollection: built from folders and CSVs, lazy, cached derived attributes, clear errors on bad input."""

from __future__ import annotations

import medpipes.core.io as mio
import numpy as np
import pytest
from medpipes.core.data import DataCollection
from medpipes.core.errors import GeometryError, InputError
from medpipes.core.image import Image, LabelMap
from medpipes.core.io import write_image

AFFINE = np.array([[-2.0, 0, 0, 10], [0, 2.0, 0, -20], [0, 0, 2.5, 5], [0, 0, 0, 1]])


def _case_files(root, case_id, shape=(8, 9, 10), label_affine=AFFINE, seed=0):
    rng = np.random.default_rng(seed)
    (root / "t1").mkdir(exist_ok=True)
    (root / "flair").mkdir(exist_ok=True)
    (root / "seg").mkdir(exist_ok=True)
    write_image(Image(rng.random(shape).astype(np.float32), AFFINE), root / "t1" / f"{case_id}_T1.nii.gz")
    write_image(Image(rng.random(shape).astype(np.float32), AFFINE), root / "flair" / f"{case_id}_FLAIR.nii.gz")
    labels = (rng.random(shape) > 0.7).astype(np.uint8)
    write_image(LabelMap(labels, label_affine), root / "seg" / f"{case_id}_seg.nii.gz")


PATTERNS = {
    "inputs": {"FLAIR": "flair/{case}_FLAIR.nii.gz", "T1": "t1/{case}_T1.nii.gz"},
    "ground_truth": "seg/{case}_seg.nii.gz",
}


@pytest.fixture
def folder(tmp_path):
    for n, case_id in enumerate(["sub10", "sub2", "sub1"]):
        _case_files(tmp_path, case_id, seed=n)
    return tmp_path


def test_from_folders_finds_cases_groups_and_channels_in_natural_order(folder):
    collection = DataCollection.from_folders(folder, PATTERNS)
    assert collection.case_ids == ["sub1", "sub2", "sub10"]
    case = collection["sub2"]
    assert list(case) == ["inputs", "ground_truth"]
    assert case["inputs"].channels == ["FLAIR", "T1"]
    assert case["ground_truth"].is_label
    assert isinstance(case["ground_truth"]["ground_truth"], LabelMap)
    t1 = case["inputs"]["T1"]
    assert isinstance(t1, Image) and not t1.is_label
    np.testing.assert_array_equal(t1.affine, AFFINE)


def test_nothing_is_read_until_asked_and_derived_attributes_are_cached(folder, monkeypatch):
    calls = []
    real = mio.read_image
    monkeypatch.setattr(mio, "read_image", lambda path, series=None: calls.append(path) or real(path, series))
    collection = DataCollection.from_folders(folder, PATTERNS)
    group = collection["sub1"]["inputs"]
    assert group.spatial_shape == (8, 9, 10) and group.spacing == (2.0, 2.0, 2.5)
    collection.validate()
    assert calls == []  # shapes and grids come from the NIfTI headers
    ranges = group.intensity_range
    assert len(calls) == 2 and set(ranges) == {"FLAIR", "T1"}
    assert group.intensity_range is ranges and len(calls) == 2  # cached
    low, high = ranges["T1"]
    assert 0.0 <= low < high <= 1.0


def test_stacked_group_puts_channels_on_the_last_axis_in_order(folder):
    group = DataCollection.from_folders(folder, PATTERNS)["sub1"]["inputs"]
    stacked = group.stacked()
    assert stacked.shape == (8, 9, 10, 2)
    np.testing.assert_array_equal(stacked.array[..., 0], group["FLAIR"].array)
    np.testing.assert_array_equal(stacked.array[..., 1], group["T1"].array)
    np.testing.assert_array_equal(stacked.affine, AFFINE)


def test_from_csv_reads_paths_relative_to_the_csv_and_scalar_targets(folder):
    (folder / "cases.csv").write_text(
        "subject,inputs/T1,ground_truth/seg,age,sex\n"
        "sub1,t1/sub1_T1.nii.gz,seg/sub1_seg.nii.gz,71.5,F\n"
        f"sub2,{folder}/t1/sub2_T1.nii.gz,seg/sub2_seg.nii.gz,64,M\n"
    )
    collection = DataCollection.from_csv(folder / "cases.csv")
    assert collection.case_ids == ["sub1", "sub2"]
    assert collection["sub1"].targets == {"age": 71.5, "sex": "F"}
    assert collection["sub2"].targets["age"] == 64
    assert collection["sub2"]["ground_truth"].is_label
    assert collection.target("sex") == {"sub1": "F", "sub2": "M"}


def test_csv_subject_column_groups_several_cases_of_one_subject(folder):
    (folder / "cases.csv").write_text(
        "case,subject,inputs/T1\nsub1_a,s1,t1/sub1_T1.nii.gz\nsub1_b,s1,t1/sub2_T1.nii.gz\nsub2_a,s2,t1/sub10_T1.nii.gz\n"
    )
    collection = DataCollection.from_csv(folder / "cases.csv")
    assert collection.subjects == ["s1", "s2"]
    assert collection.subset(["s1"]).case_ids == ["sub1_a", "sub1_b"]


def test_csv_row_whose_file_is_missing_is_named(folder):
    (folder / "cases.csv").write_text(
        "subject,inputs/T1\nsub1,t1/sub1_T1.nii.gz\nsub2,t1/missing_T1.nii.gz\n"
    )
    with pytest.raises(InputError, match=r"row 3 \(case 'sub2'\), column 'inputs/T1': file .*missing_T1.nii.gz does not exist"):
        DataCollection.from_csv(folder / "cases.csv")


def test_csv_duplicate_subject_ids_name_both_rows(folder):
    (folder / "cases.csv").write_text(
        "subject,inputs/T1\nsub1,t1/sub1_T1.nii.gz\nsub2,t1/sub2_T1.nii.gz\nsub1,t1/sub10_T1.nii.gz\n"
    )
    with pytest.raises(InputError, match=r"row 4: id 'sub1' already on row 2"):
        DataCollection.from_csv(folder / "cases.csv")


def test_csv_without_image_columns_says_how_to_name_them(folder):
    (folder / "cases.csv").write_text("subject,t1\nsub1,t1/sub1_T1.nii.gz\n")
    with pytest.raises(InputError, match="group/channel"):
        DataCollection.from_csv(folder / "cases.csv")


def test_groups_on_different_grids_in_one_case_name_the_case_and_groups(tmp_path):
    shifted = AFFINE.copy()
    shifted[0, 3] += 4.0
    _case_files(tmp_path, "good")
    _case_files(tmp_path, "bad", label_affine=shifted)
    collection = DataCollection.from_folders(tmp_path, PATTERNS)
    collection["good"].load()
    with pytest.raises(GeometryError, match=r"case 'bad': group 'inputs' .* and group 'ground_truth' .* different grids"):
        collection.validate()
    with pytest.raises(GeometryError, match="case 'bad'"):
        collection["bad"].load()


def test_channels_on_different_grids_in_one_group_are_refused(tmp_path):
    _case_files(tmp_path, "a")
    write_image(Image(np.zeros((8, 9, 11), np.float32), AFFINE), tmp_path / "flair" / "a_FLAIR.nii.gz")
    group = DataCollection.from_folders(tmp_path, PATTERNS)["a"]["inputs"]
    with pytest.raises(GeometryError, match="case 'a': group 'inputs' channels 'FLAIR' .* and 'T1'"):
        group.stacked()


def test_from_folders_names_the_case_lacking_a_channel_or_skips_it(folder):
    (folder / "t1" / "sub2_T1.nii.gz").unlink()
    with pytest.raises(InputError, match=r"case 'sub2' has no file for inputs/T1 \(t1/\{case\}_T1.nii.gz\)"):
        DataCollection.from_folders(folder, PATTERNS)
    assert DataCollection.from_folders(folder, PATTERNS, missing="skip").case_ids == ["sub1", "sub10"]


def test_pattern_without_case_placeholder_is_refused(folder):
    with pytest.raises(InputError, match=r"must contain '\{case\}' exactly once"):
        DataCollection.from_folders(folder, {"inputs": "t1/*_T1.nii.gz"})


def test_from_images_keeps_images_in_memory_untouched():
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    image = Image(array, AFFINE)
    collection = DataCollection.from_images({"c1": {"inputs": {"T1": image}}}, targets={"c1": {"y": 1.0}})
    assert collection["c1"]["inputs"]["T1"] is image
    assert collection["c1"].targets == {"y": 1.0}
