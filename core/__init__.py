"""medpipes.core: image types, I/O and DICOM, processing, data, models, inference and the model store."""

from medpipes.core.errors import InputError, MedpipesError, ProcessingError
from medpipes.core.image import Image, ImageMeta, LabelMap
from medpipes.core.io import read_image, write_image

__all__ = [
    "Image",
    "ImageMeta",
    "LabelMap",
    "InputError",
    "MedpipesError",
    "ProcessingError",
    "read_image",
    "write_image",
]
