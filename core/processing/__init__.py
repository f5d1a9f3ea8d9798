"""Processing steps on Images: preprocessors, postprocessors and chains that record and undo geometry."""

from medpipes.core.processing.base import Box, Preprocessor, Record, check_finite
from medpipes.core.processing.bias import N4BiasFieldCorrection
from medpipes.core.processing.chain import Chain, ChainRecord
from medpipes.core.processing.external import ExternalProgram
from medpipes.core.processing.fusion import fuse, majority_vote, mean_probabilities, staple
from medpipes.core.processing.grid import Grid, require_one_grid
from medpipes.core.processing.intensity import (
    CT_WINDOWS,
    Clip,
    CTWindow,
    HistogramLandmarks,
    HistogramStandardisation,
    Rescale,
    Threshold,
    ZScore,
    train_histogram_landmarks,
)
from medpipes.core.processing.post import (
    Argmax,
    Binarise,
    FillHoles,
    KeepLargestComponent,
    OneHot,
    Postprocessor,
    RemoveIslands,
    UndoSpatial,
)
from medpipes.core.processing.registration import Coregister, RegistrationRecord, WorldTransform, register
from medpipes.core.processing.spatial import CropToForeground, Pad, Reorient, Resample, extract_box, resample_onto

__all__ = [
    "CT_WINDOWS",
    "Argmax",
    "Binarise",
    "Box",
    "CTWindow",
    "Chain",
    "ChainRecord",
    "Clip",
    "Coregister",
    "CropToForeground",
    "ExternalProgram",
    "FillHoles",
    "Grid",
    "HistogramLandmarks",
    "HistogramStandardisation",
    "KeepLargestComponent",
    "N4BiasFieldCorrection",
    "OneHot",
    "Pad",
    "Postprocessor",
    "Preprocessor",
    "Record",
    "RegistrationRecord",
    "RemoveIslands",
    "Reorient",
    "Resample",
    "Rescale",
    "Threshold",
    "UndoSpatial",
    "WorldTransform",
    "ZScore",
    "check_finite",
    "extract_box",
    "fuse",
    "majority_vote",
    "mean_probabilities",
    "register",
    "require_one_grid",
    "resample_onto",
    "staple",
    "train_histogram_landmarks",
]
