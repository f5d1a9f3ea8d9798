"""PyTorch bridge: whole augmented cases as a Dataset, and a bounded, shuffled patch queue fed by worker processes.

Tensors are channel-first (C, I, J, K): float32 for images, integers for label groups (see image_to_tensor). Every random draw is
seeded by (seed, epoch, case position), so a run is reproducible whatever the number of workers.
"""

from __future__ import annotations

import os
import random
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from medpipes.core.data.augment import Compose
from medpipes.core.data.collection import DataCollection
from medpipes.core.data.sampling import PatchSampler
from medpipes.core.errors import InputError
from medpipes.core.image import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

PAIRINGS = ("paired", "unpaired")
_LIVE_QUEUES: weakref.WeakSet[PatchQueue] = weakref.WeakSet()


def _forget_workers_in_child() -> None:
    """In a forked child (e.g. another loader's worker) never try to stop this process's persistent queue workers."""
    for queue in list(_LIVE_QUEUES):
        iterator = getattr(queue._loader, "_iterator", None)
        if iterator is not None:
            iterator._shutdown = True  # torch's own flag: the child's copy then does nothing when collected


os.register_at_fork(after_in_child=_forget_workers_in_child)


_LABEL_DTYPES = {np.dtype(np.uint16): np.int32, np.dtype(np.uint32): np.int64, np.dtype(np.uint64): np.int64}


def image_to_tensor(image: Image) -> torch.Tensor:
    """(i, j, k[, c]) Image -> (C, I, J, K) tensor: float32 for images; labels keep their integer type
    (uint16 becomes int32, uint32 int64: types torch lacks), so a worker ships 1 byte per uint8 label voxel;
    call ``.long()`` where a loss needs int64."""
    array = image.array if image.array.ndim == 4 else image.array[..., np.newaxis]
    array = np.moveaxis(array, 3, 0)
    if image.is_label:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=_LABEL_DTYPES.get(array.dtype, array.dtype)))
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _item(images: Mapping[str, Image], case_ids: Mapping[str, str], targets: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {group: image_to_tensor(image) for group, image in images.items()}
    item["affine"] = {group: torch.from_numpy(image.affine.copy()) for group, image in images.items()}
    item["location"] = {
        group: torch.tensor(image.meta.extra.get("patch_start", (0, 0, 0)), dtype=torch.int64) for group, image in images.items()
    }
    item["case_id"] = dict(case_ids)
    item["targets"] = {k: v for k, v in targets.items() if isinstance(v, (int, float)) and v is not None}
    return item


class _Draws:
    """Which case each group comes from, for one position of an epoch."""

    def __init__(self, collection: DataCollection, groups: Sequence[str], pairing: str, seed: int) -> None:
        if pairing not in PAIRINGS:
            raise InputError(f"pairing={pairing!r}; use 'paired' or 'unpaired'")
        if len(collection) == 0:
            raise InputError(f"{collection.source}: the collection has no cases")
        missing = [g for g in groups if g not in collection.group_names]
        if missing:
            raise InputError(f"{collection.source}: no group(s) {missing}; the groups are {collection.group_names}")
        self.collection, self.groups, self.pairing, self.seed = collection, list(groups), pairing, seed

    def units(self, position: int, case_index: int, epoch: int) -> list[tuple[dict[str, str], list[str]]]:
        """[(group -> case id, groups loaded together)]: one unit when paired, one per group when unpaired."""
        ids = self.collection.case_ids
        if self.pairing == "paired":
            case_id = ids[case_index]
            return [({g: case_id for g in self.groups}, self.groups)]
        rng = np.random.default_rng([self.seed, epoch, position, 1])
        units = []
        for n, group in enumerate(self.groups):
            case_id = ids[case_index] if n == 0 else ids[int(rng.integers(len(ids)))]
            units.append(({group: case_id}, [group]))
        return units


class CaseDataset(Dataset):
    """Whole cases, augmented on the fly: ``dataset[i]`` is {group: tensor, 'affine', 'case_id', 'targets', ...}.

    ``augmentation`` defaults to the collection's own. ``pairing='unpaired'`` draws every group after the first from an independently chosen case (for
    unpaired translation models); call ``set_epoch`` to draw new augmentations each epoch.
    """

    def __init__(
        self,
        collection: DataCollection,
        *,
        groups: Sequence[str] | None = None,
        augmentation: Compose | None = None,
        pairing: str = "paired",
        seed: int = 0,
    ) -> None:
        self.collection = collection
        self.groups = list(groups) if groups is not None else collection.group_names
        self.draws = _Draws(collection, self.groups, pairing, seed)
        self.augmentation = augmentation or collection.augmentation or Compose([])
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s random draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.collection)

    def __getitem__(self, index: int) -> dict[str, Any]:
        images: dict[str, Image] = {}
        case_ids: dict[str, str] = {}
        for unit, (chosen, groups) in enumerate(self.draws.units(index, index, self.epoch)):
            case = self.collection[chosen[groups[0]]]
            rng = np.random.default_rng([self.seed, self.epoch, index, unit])
            images.update(self.augmentation(case.load(groups), rng))
            case_ids.update(chosen)
        first = self.collection[case_ids[self.groups[0]]]
        return _item(images, case_ids, first.targets)


class _VolumePatches(Dataset):
    """(position, case index, epoch) -> the ``samples_per_volume`` patches of that volume (run in workers)."""

    def __init__(self, queue: PatchQueue) -> None:
        self.queue = queue

    def __len__(self) -> int:
        return len(self.queue.collection)

    def __getitem__(self, key: tuple[int, int, int]) -> list[dict[str, Any]]:
        return self.queue.volume_patches(*key)


class _EpochOrder(Sampler):
    """Keys of the queue's current epoch, in its (seeded) case order; read in the main process."""

    def __init__(self, queue: PatchQueue) -> None:
        self.queue = queue

    def __len__(self) -> int:
        return len(self.queue.collection)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        epoch = self.queue.current_epoch
        order = list(range(len(self.queue.collection)))
        if self.queue.shuffle_cases:
            order = [int(i) for i in np.random.default_rng([self.queue.seed, epoch, 2]).permutation(len(order))]
        return iter([(position, case_index, epoch) for position, case_index in enumerate(order)])


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(1)


class PatchQueue(IterableDataset):
    """TorchIO-style patch queue: workers load and augment volumes, each gives ``samples_per_volume`` patches.

    Patches wait in a buffer of at most ``max_length`` (plus one volume's patches); with
    ``shuffle_patches`` a random waiting patch is handed out, so patches of one volume are spread out.
    One pass yields ``len(collection) * samples_per_volume`` patches, then the epoch advances.
    ``augmentation`` defaults to the collection's own; ``pairing='unpaired'`` as in CaseDataset.
    Wrap it in a ``DataLoader(queue, batch_size=..., num_workers=0)``: the workers are the queue's own.
    """

    def __init__(
        self,
        collection: DataCollection,
        sampler: PatchSampler,
        *,
        samples_per_volume: int,
        max_length: int,
        augmentation: Compose | None = None,
        groups: Sequence[str] | None = None,
        num_workers: int = 0,
        shuffle_cases: bool = True,
        shuffle_patches: bool = True,
        pairing: str = "paired",
        seed: int = 0,
    ) -> None:
        if samples_per_volume < 1:
            raise InputError(f"samples_per_volume={samples_per_volume}; take at least one patch per volume")
        if max_length < samples_per_volume:
            raise InputError(
                f"max_length={max_length} is below samples_per_volume={samples_per_volume}; "
                "the queue must hold at least one volume's patches"
            )
        self.collection = collection
        self.sampler = sampler
        self.samples_per_volume = int(samples_per_volume)
        self.max_length = int(max_length)
        self.augmentation = augmentation or collection.augmentation or Compose([])
        self.groups = list(groups) if groups is not None else collection.group_names
        self.draws = _Draws(collection, self.groups, pairing, seed)
        self.num_workers = int(num_workers)
        self.shuffle_cases = shuffle_cases
        self.shuffle_patches = shuffle_patches
        self.seed = int(seed)
        self.epoch = 0
        self.current_epoch = 0
        self._loader: DataLoader | None = None
        _LIVE_QUEUES.add(self)

    def __len__(self) -> int:
        return len(self.collection) * self.samples_per_volume

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_loader"] = None  # workers receive the queue's settings, never its loader
        return state

    def volume_patches(self, position: int, case_index: int, epoch: int) -> list[dict[str, Any]]:
        """The patches of one volume (deterministic in seed, epoch and position)."""
        per_unit: list[list[dict[str, Image]]] = []
        case_ids: dict[str, str] = {}
        for unit, (chosen, groups) in enumerate(self.draws.units(position, case_index, epoch)):
            case = self.collection[chosen[groups[0]]]
            rng = np.random.default_rng([self.seed, epoch, position, unit])
            state = self.augmentation.lazy(case.load(groups), rng)
            per_unit.append(self.sampler.patches(state, self.samples_per_volume, rng))
            case_ids.update(chosen)
        targets = self.collection[case_ids[self.groups[0]]].targets
        out = []
        for n in range(self.samples_per_volume):
            images: dict[str, Image] = {}
            for patches in per_unit:
                images.update(patches[n])
            out.append(_item(images, case_ids, targets))
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.current_epoch = self.epoch
        self.epoch += 1
        if self._loader is None:
            # Workers persist across epochs (starting them costs more than a volume); the sampler says which epoch.
            self._loader = DataLoader(
                _VolumePatches(self),
                batch_size=None,
                sampler=_EpochOrder(self),
                num_workers=self.num_workers,
                worker_init_fn=_one_thread if self.num_workers > 0 else None,
                persistent_workers=self.num_workers > 0,
            )
        pick = random.Random(self.seed * 1_000_003 + epoch)
        buffer: list[dict[str, Any]] = []
        for patches in self._loader:
            buffer.extend(patches)
            while len(buffer) >= self.max_length:
                yield self._take(buffer, pick)
        while buffer:
            yield self._take(buffer, pick)

    def close(self) -> None:
        """Stop the worker processes (they also stop when the queue is garbage collected)."""
        self._loader = None

    def _take(self, buffer: list[dict[str, Any]], pick: random.Random) -> dict[str, Any]:
        if not self.shuffle_patches:
            return buffer.pop(0)
        index = pick.randrange(len(buffer))
        buffer[index], buffer[-1] = buffer[-1], buffer[index]
        return buffer.pop()
