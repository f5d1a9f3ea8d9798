"""Training data: collections of cases, HDF5 storage, augmentation, patch sampling, torch bridge and splits."""

from medpipes.core.data.augment import (
    Augmentation,
    ChannelDropout,
    Compose,
    IntensityAugmentation,
    LazySample,
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
    SpatialAugmentation,
)
from medpipes.core.data.collection import Case, DataCollection
from medpipes.core.data.group import DataGroup
from medpipes.core.data.sampling import PatchSampler
from medpipes.core.data.splits import (
    Split,
    kfold,
    nested_kfold,
    read_splits,
    write_splits,
)
from medpipes.core.data.torch_bridge import CaseDataset, PatchQueue, image_to_tensor

__all__ = [
    "Augmentation",
    "Case",
    "CaseDataset",
    "ChannelDropout",
    "Compose",
    "DataCollection",
    "DataGroup",
    "IntensityAugmentation",
    "LazySample",
    "NearestDownsample",
    "PatchQueue",
    "PatchSampler",
    "RandomAffine",
    "RandomBiasField",
    "RandomBlur",
    "RandomElastic",
    "RandomFlip",
    "RandomGamma",
    "RandomNoise",
    "RandomRot90",
    "RandomScaleShift",
    "SpatialAugmentation",
    "Split",
    "image_to_tensor",
    "kfold",
    "nested_kfold",
    "read_splits",
    "write_splits",
]
