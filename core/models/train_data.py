"""The data side of a training config: collection, preprocessing, train/validation split, augmentation, checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from medpipes.core.data import DataCollection, read_splits
from medpipes.core.data.augment import (
    Augmentation,
    ChannelDropout,
    Compose,
    NearestDownsample,
    RandomAffine,
    RandomBiasField,
    RandomBlur,
    RandomElastic,
    RandomFlip,
    RandomGamma,
    RandomNoise,
    RandomRot90,
    RandomScaleShift,
)
from medpipes.core.errors import InputError
from medpipes.core.image import Image, LabelMap
from medpipes.core.models.train_config import TrainConfig

AUGMENTATIONS: dict[str, type[Augmentation]] = {
    "flip": RandomFlip,
    "rot90": RandomRot90,
    "affine": RandomAffine,
    "elastic": RandomElastic,
    "scale_shift": RandomScaleShift,
    "gamma": RandomGamma,
    "noise": RandomNoise,
    "bias_field": RandomBiasField,
    "blur": RandomBlur,
    "channel_dropout": ChannelDropout,
    "downsample": NearestDownsample,
}


@dataclass
class TrainingData:
    """Preprocessed train and validation collections, the groups to read, and the split that made them."""

    train: DataCollection
    val: DataCollection
    input_group: str
    label_group: str
    channels: list[str]
    train_subjects: list[str]
    val_subjects: list[str]
    source: str


def load_collection(config: TrainConfig, base: Path) -> DataCollection:
    """The collection the config's ``data`` section names (folders, CSV or HDF5)."""
    data = config.data
    label_groups = (data.label_group,)
    if data.root is not None:
        patterns = {data.input_group: dict(data.inputs), data.label_group: data.labels}
        return DataCollection.from_folders(config.resolve(data.root, base), patterns, label_groups=label_groups)
    if data.csv is not None:
        return DataCollection.from_csv(config.resolve(data.csv, base), label_groups=label_groups)
    return DataCollection.from_hdf5(config.resolve(data.hdf5, base))


def split_subjects(config: TrainConfig, base: Path, subjects: Sequence[str], where: str) -> tuple[list[str], list[str]]:
    """(train, val) subjects from the split file, the explicit lists, or a seeded validation fraction."""
    s = config.splits
    if s.file is not None:
        splits = read_splits(config.resolve(s.file, base))
        chosen = [sp for sp in splits if sp.outer == s.outer and sp.inner == s.inner]
        if not chosen:
            have = sorted({(sp.outer, sp.inner) for sp in splits}, key=str)
            raise InputError(f"{where}: splits: no split (outer {s.outer}, inner {s.inner}) in {s.file}; it has {have}")
        train, val = list(chosen[0].train), list(chosen[0].val)
    elif s.train or s.val:
        val = list(s.val)
        train = list(s.train) if s.train else [x for x in subjects if x not in set(val)]
    else:
        order = [subjects[i] for i in np.random.default_rng(s.seed).permutation(len(subjects))]
        n_val = max(1, round(len(subjects) * s.val_fraction))
        if n_val >= len(subjects):
            raise InputError(f"{where}: splits: {len(subjects)} subject(s) cannot give both training and validation sets")
        val, train = sorted(order[:n_val]), sorted(order[n_val:])
    unknown = sorted(set(train + val) - set(subjects))
    if unknown:
        raise InputError(f"{where}: splits: subjects {unknown[:5]} are not in the data (it has {list(subjects)[:5]}...)")
    overlap = sorted(set(train) & set(val))
    if overlap:
        raise InputError(f"{where}: splits: subject {overlap[0]!r} is in both train and val; a subject belongs to one set")
    if not train or not val:
        raise InputError(f"{where}: splits: the training and the validation set each need at least one subject")
    return train, val


def build_augmentation(items: Sequence[Any], where: str) -> Compose | None:
    """A Compose from ``[name, {name: {parameters}}, ...]`` (None when empty)."""
    transforms = []
    for index, item in enumerate(items, start=1):
        name, params = (item, {}) if isinstance(item, str) else next(iter(item.items()))
        params = dict(params or {})
        cls = AUGMENTATIONS[name]
        try:
            transforms.append(cls(**params))
        except TypeError as exc:
            raise InputError(f"{where}: augmentation {index} ({name}): {exc}; check its parameters") from None
    return Compose(transforms) if transforms else None


def build_preprocessing(items: Sequence[Any], where: str) -> Any:
    """A processing Chain from ``[reorient: RAS, resample: {spacing: 2}, ...]`` (None when empty)."""
    if not items:
        return None
    from medpipes.core.processing import Chain
    from medpipes.core.processing.spec import build_steps, parse_step_list

    source = f"{where}: preprocessing"
    return Chain(build_steps(parse_step_list(items, source), source=source))


def preprocess_collection(
    collection: DataCollection, chain: Any, input_group: str, label_group: str, binarise: bool
) -> DataCollection:
    """Every case loaded, its labels binarised if asked, run through ``chain``, held in memory.

    For sets too large for memory, preprocess once into HDF5 (``DataCollection.to_hdf5``) and train from ``data.hdf5``.
    """
    cases: dict[str, dict[str, dict[str, Image]]] = {}
    subjects = {}
    targets = {}
    for case_id, case in collection.items():
        images: dict[str, Image] = {}
        for group in (input_group, label_group):
            for channel, image in case[group].images().items():
                if group == label_group:
                    array = np.asarray(image.array)
                    if binarise:
                        array = (array > 0).astype(np.uint8)
                    image = LabelMap(array, image.affine, image.meta)
                images[f"{group}/{channel}"] = image
        if chain is not None:
            images, _ = chain.run(images)
        grouped: dict[str, dict[str, Image]] = {}
        for key, image in images.items():
            group, channel = key.split("/", 1)
            grouped.setdefault(group, {})[channel] = image
        cases[case_id] = grouped
        subjects[case_id] = case.subject
        targets[case_id] = case.targets
    return DataCollection.from_images(cases, subjects=subjects, targets=targets)


def check_against_network(data: DataCollection, input_group: str, label_group: str, in_channels: int, out_channels: int, where: str) -> None:
    """InputError naming both numbers when the data's channels or label values do not fit the network."""
    for case_id, case in data.items():
        channels = case[input_group].channels
        if len(channels) != in_channels:
            raise InputError(
                f"{where}: the data has {len(channels)} input channel(s) ({', '.join(channels)}) but model.in_channels is "
                f"{in_channels}; set model.in_channels: {len(channels)} or change data.inputs"
            )
        top = max(int(np.max(image.array)) for image in case[label_group].images().values())
        low = min(int(np.min(image.array)) for image in case[label_group].images().values())
        if low < 0 or top >= max(out_channels, 2):
            raise InputError(
                f"{where}: case {case_id!r} has label values up to {top} but model.out_channels is {out_channels} "
                f"(labels 0..{max(out_channels, 2) - 1}); set model.out_channels: {top + 1} or data.binarise_labels: true"
            )


def prepare_training_data(config: TrainConfig, base: Path, where: str) -> TrainingData:
    """Load, check, preprocess and split the config's data; augmentation is set on the training set."""
    d = config.data
    collection = load_collection(config, base)
    for group in (d.input_group, d.label_group):
        if group not in collection.group_names:
            raise InputError(
                f"{where}: data has no group {group!r} (groups: {collection.group_names}); "
                "set data.input_group / data.label_group"
            )
    train_subjects, val_subjects = split_subjects(config, base, collection.subjects, where)
    chain = build_preprocessing(config.preprocessing, where)
    augmentation = build_augmentation(config.augmentation, where)
    collection = collection.subset(train_subjects + val_subjects)
    if chain is None and not d.binarise_labels:
        processed = collection  # nothing to change: cases stay on disk and load when asked
    else:
        processed = preprocess_collection(collection, chain, d.input_group, d.label_group, d.binarise_labels)
    model = config.model
    check_against_network(
        processed, d.input_group, d.label_group, int(model.get("in_channels", 1)), int(model.get("out_channels", 2)), where
    )
    train, val = processed.subset(train_subjects), processed.subset(val_subjects)
    train.augmentation = augmentation
    channels = processed[processed.case_ids[0]][d.input_group].channels
    return TrainingData(train, val, d.input_group, d.label_group, channels, train_subjects, val_subjects, collection.source)
