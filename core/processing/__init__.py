"""Processing steps on Images: preprocessors, postprocessors and chains that record and undo geometry."""

from medpipes.core.processing.base import Box, Preprocessor, Record, check_finite
from medpipes.core.processing.chain import Chain, ChainRecord
from medpipes.core.processing.grid import Grid, require_one_grid
from medpipes.core.processing.post import (
    Argmax,
    Binarise,
    FillHoles,
    KeepLargestComponent,
    OneHot,
    Postprocessor,
    RemoveIslands,
)
from medpipes.core.processing.spatial import CropToForeground, Pad, Reorient, Resample, extract_box, resample_onto

__all__ = [
    "Argmax",
    "Binarise",
    "Box",
    "Chain",
    "ChainRecord",
    "CropToForeground",
    "FillHoles",
    "Grid",
    "KeepLargestComponent",
    "OneHot",
    "Pad",
    "Postprocessor",
    "Preprocessor",
    "Record",
    "RemoveIslands",
    "Reorient",
    "Resample",
    "check_finite",
    "extract_box",
    "require_one_grid",
    "resample_onto",
]
