"""Inferers, apart from networks: whole volume, slice-wise 2D, overlapping patches; flip TTA; Image in, Image out."""

from medpipes.core.inference.slicewise import infer_slices
from medpipes.core.inference.sliding_window import infer_patches
from medpipes.core.inference.whole import infer_whole
from medpipes.core.inference.windows import importance_map, patch_starts

__all__ = ["infer_patches", "infer_slices", "infer_whole", "importance_map", "patch_starts"]
