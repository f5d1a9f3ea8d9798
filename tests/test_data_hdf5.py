"""HDF5: a collection round-trips arrays, affines, metadata and targets unchanged; writes are atomic."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from medpipes.core.data import DataCollection, RandomAffine, RandomFlip, RandomNoise
from medpipes.core.errors import InputError
from medpipes.core.image import Image, ImageMeta, LabelMap

AFFINE = np.array([[0, 0, 1.5, -30], [-1.2, 0, 0, 40], [0, 2.0, 0, 7], [0, 0, 0, 1]])


def _assert_same_images(a, b):
    assert type(a) is type(b)
    assert a.array.dtype == b.array.dtype
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.meta == b.meta


@pytest.mark.realdata
def test_real_heads_round_trip_arrays_affines_and_metadata(shared_data, tmp_path):
    root = shared_data("brain", "nichart")
    collection = DataCollection.from_folders(
        root, {"inputs": {"T1": "t1/{case}_T1.nii.gz"}, "ground_truth": {"dlmuse": "dlmuse_seg/{case}_T1_DLMUSE.nii.gz"}}
    ).subset(["Subj1", "Subj2", "Subj3"])
    path = collection.to_hdf5(tmp_path / "heads.h5")
    back = DataCollection.from_hdf5(path)
    assert back.case_ids == ["Subj1", "Subj2", "Subj3"]
    for case_id in collection:
        for group in ("inputs", "ground_truth"):
            assert back[case_id][group].channels == collection[case_id][group].channels
            assert back[case_id][group].is_label == collection[case_id][group].is_label
            for channel in collection[case_id][group]:
                _assert_same_images(collection[case_id][group][channel], back[case_id][group][channel])
    with h5py.File(path) as handle:
        data = handle["cases/Subj1/inputs/T1"]
        assert data.compression == "gzip" and data.chunks is not None


def test_metadata_targets_and_subjects_survive_the_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    meta = ImageMeta(modality="MR", series_number=7, source_paths=("a.nii", "b.nii"), extra={"te_ms": 4.92, "tags": ["x"]})
    image = Image(rng.normal(size=(5, 6, 7)).astype(np.float32), AFFINE, meta)
    labels = LabelMap(rng.integers(0, 300, size=(5, 6, 7)).astype(np.uint16), AFFINE)
    collection = DataCollection.from_images(
        {"c1": {"inputs": {"T1": image}, "ground_truth": {"seg": labels}}}, targets={"c1": {"age": 70.5, "dx": "AD"}}
    )
    back = DataCollection.from_hdf5(collection.to_hdf5(tmp_path / "one.h5"))
    _assert_same_images(back["c1"]["inputs"]["T1"], image)
    _assert_same_images(back["c1"]["ground_truth"]["seg"], labels)
    assert back["c1"].targets == {"age": 70.5, "dx": "AD"} and back["c1"].subject == "c1"


def test_reading_is_lazy_and_grids_come_from_attributes(tmp_path, monkeypatch):
    image = Image(np.ones((4, 5, 6), np.float32), AFFINE)
    path = DataCollection.from_images({"c1": {"inputs": {"T1": image}}}).to_hdf5(tmp_path / "lazy.h5")
    back = DataCollection.from_hdf5(path)
    opened = []
    real = h5py.File
    monkeypatch.setattr(h5py, "File", lambda *a, **k: opened.append(a) or real(*a, **k))
    assert back["c1"]["inputs"].spatial_shape == (4, 5, 6)
    np.testing.assert_array_equal(back["c1"]["inputs"].affine, AFFINE)
    assert opened == []
    back["c1"]["inputs"]["T1"]
    assert len(opened) == 1


def test_augmented_copies_are_written_as_cases_of_the_same_subject(tmp_path):
    rng = np.random.default_rng(2)
    image = Image(rng.random((12, 12, 12)).astype(np.float32), AFFINE)
    labels = LabelMap((rng.random((12, 12, 12)) > 0.5).astype(np.uint8), AFFINE)
    collection = DataCollection.from_images({"c1": {"inputs": {"T1": image}, "ground_truth": {"seg": labels}}})
    collection.augmentation = [RandomFlip(), RandomAffine(degrees=15), RandomNoise(std=0.1)]
    first = DataCollection.from_hdf5(collection.to_hdf5(tmp_path / "a.h5", augment=True, copies=2, seed=5))
    again = DataCollection.from_hdf5(
        collection.to_hdf5(tmp_path / "b.h5", augment=True, augmentation=collection.augmentation, copies=2, seed=5)
    )
    assert first.case_ids == ["c1_aug0", "c1_aug1"] and first.subjects == ["c1"]
    np.testing.assert_array_equal(first["c1_aug1"]["inputs"]["T1"].array, again["c1_aug1"]["inputs"]["T1"].array)
    assert not np.array_equal(first["c1_aug0"]["inputs"]["T1"].array, first["c1_aug1"]["inputs"]["T1"].array)
    assert first["c1_aug0"]["ground_truth"]["seg"].array.dtype == np.uint8


def test_a_failed_write_leaves_no_file_behind(tmp_path):
    bad = Image(np.zeros((3, 3, 3), np.float32), AFFINE, ImageMeta(extra={"when": object()}))
    collection = DataCollection.from_images({"c1": {"inputs": {"T1": bad}}})
    with pytest.raises(InputError, match=r"case 'c1', inputs/T1: meta.extra\['when'\] is a object"):
        collection.to_hdf5(tmp_path / "bad.h5")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_ours_is_refused(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["x"] = np.zeros(3)
    with pytest.raises(InputError, match="not a medpipes data file"):
        DataCollection.from_hdf5(tmp_path / "other.h5")
