"""Torch bridge: whole-case Dataset (paired / unpaired) and the bounded patch queue with worker processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medpipes.core.data import (
    CaseDataset,
    Compose,
    DataCollection,
    PatchQueue,
    PatchSampler,
    RandomAffine,
    RandomFlip,
    RandomNoise,
)
from medpipes.core.errors import InputError
from medpipes.core.image import Image, LabelMap

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _collection(n=4, shape=(20, 18, 16)):
    cases, targets = {}, {}
    for c in range(n):
        rng = np.random.default_rng(c)
        label = np.zeros(shape, np.uint8)
        label[5 + c : 10 + c, 6:12, 4:9] = c + 1
        t1 = Image((rng.random(shape) + c).astype(np.float32), AFFINE)
        t2 = Image((rng.random(shape) - c).astype(np.float32), AFFINE)
        cases[f"case{c}"] = {"inputs": {"T1": t1, "T2": t2}, "ground_truth": {"seg": LabelMap(label, AFFINE)}}
        targets[f"case{c}"] = {"age": 60.0 + c}
    return DataCollection.from_images(cases, targets=targets)


def test_case_dataset_gives_channel_first_tensors_of_one_case():
    dataset = CaseDataset(_collection(), augmentation=Compose([RandomFlip()]))
    item = dataset[2]
    assert item["inputs"].shape == (2, 20, 18, 16) and item["inputs"].dtype == torch.float32
    assert item["ground_truth"].shape == (1, 20, 18, 16) and item["ground_truth"].dtype == torch.uint8
    assert item["case_id"] == {"inputs": "case2", "ground_truth": "case2"}
    assert item["targets"] == {"age": 62.0}
    assert set(item["ground_truth"].unique().tolist()) == {0, 3}
    # the T1 channel of case 2 holds values in [2, 3): the label moved with it, and it came from the same case
    assert 2.0 <= float(item["inputs"][0].min()) and float(item["inputs"][0].max()) < 3.0


def test_unpaired_draws_groups_from_independent_cases_reproducibly():
    dataset = CaseDataset(_collection(6), pairing="unpaired", seed=3)
    pairs = [tuple(dataset[i]["case_id"].values()) for i in range(6)]
    assert any(a != b for a, b in pairs)
    assert pairs == [tuple(dataset[i]["case_id"].values()) for i in range(6)]
    for i, (inputs_case, truth_case) in enumerate(pairs):
        item = dataset[i]
        assert int(item["ground_truth"].max()) == int(truth_case[-1]) + 1


def test_case_dataset_batches_through_a_dataloader():
    loader = torch.utils.data.DataLoader(CaseDataset(_collection()), batch_size=2)
    batch = next(iter(loader))
    assert batch["inputs"].shape == (2, 2, 20, 18, 16)
    assert batch["case_id"]["inputs"] == ["case0", "case1"]


class _WatchedQueue(PatchQueue):
    def _take(self, buffer, pick):
        self.largest = max(getattr(self, "largest", 0), len(buffer))
        return super()._take(buffer, pick)


def _queue(workers, **kwargs):
    chain = Compose([RandomFlip(), RandomAffine(degrees=10), RandomNoise(std=(0, 0.1))])
    sampler = PatchSampler(8, label_group="ground_truth", label_fraction=0.5)
    return _WatchedQueue(
        _collection(), sampler, samples_per_volume=3, max_length=5, augmentation=chain, num_workers=workers, seed=7, **kwargs
    )


def _patches(queue, epochs=1):
    return [patch for _ in range(epochs) for patch in queue]


def test_queue_yields_samples_per_volume_patches_of_every_case_with_a_bounded_buffer():
    queue = _queue(0)
    patches = _patches(queue)
    assert len(patches) == len(queue) == 12
    ids = [p["case_id"]["inputs"] for p in patches]
    assert sorted(ids) == sorted([f"case{c}" for c in range(4) for _ in range(3)])
    assert all(p["inputs"].shape == (2, 8, 8, 8) for p in patches)
    assert queue.largest <= 5 + 3 - 1


def test_queue_is_reproducible_and_the_same_with_a_worker_process():
    in_process = _patches(_queue(0), epochs=2)
    again = _patches(_queue(0), epochs=2)
    worker_queue = _queue(1)
    with_worker = _patches(worker_queue, epochs=2)
    worker_queue.close()
    for a, b, c in zip(in_process, again, with_worker):
        assert a["case_id"] == b["case_id"] == c["case_id"]
        assert torch.equal(a["inputs"], b["inputs"]) and torch.equal(a["inputs"], c["inputs"])
        assert torch.equal(a["ground_truth"], c["ground_truth"])
    first_epoch, second_epoch = in_process[:12], in_process[12:]
    assert any(not torch.equal(a["inputs"], b["inputs"]) for a, b in zip(first_epoch, second_epoch))


def test_queue_batches_through_a_dataloader():
    loader = torch.utils.data.DataLoader(_queue(0), batch_size=4)
    batch = next(iter(loader))
    assert batch["inputs"].shape == (4, 2, 8, 8, 8) and batch["location"]["inputs"].shape == (4, 3)


def test_queue_settings_are_checked():
    sampler = PatchSampler(8)
    with pytest.raises(InputError, match="max_length=2 is below samples_per_volume=3"):
        PatchQueue(_collection(), sampler, samples_per_volume=3, max_length=2)
    with pytest.raises(InputError, match="pairing='sideways'"):
        PatchQueue(_collection(), sampler, samples_per_volume=1, max_length=2, pairing="sideways")
    with pytest.raises(InputError, match=r"no group\(s\) \['nope'\]"):
        CaseDataset(_collection(), groups=["nope"])


def test_unpaired_queue_takes_each_group_from_its_own_case_and_the_collection_augmentation():
    collection = _collection(5)
    collection.augmentation = [RandomFlip()]
    queue = PatchQueue(collection, PatchSampler(6), samples_per_volume=2, max_length=4, pairing="unpaired", seed=1)
    assert queue.augmentation is collection.augmentation
    patches = list(queue)
    assert len(patches) == 10
    assert any(p["case_id"]["inputs"] != p["case_id"]["ground_truth"] for p in patches)
    for p in patches:
        case = int(p["case_id"]["ground_truth"][-1])
        assert set(p["ground_truth"].unique().tolist()) <= {0, case + 1}
