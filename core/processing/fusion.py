"""Label fusion across models: majority vote, STAPLE (both SimpleITK) and the mean of probabilities.

Every input must lie on one grid (the error names both grids otherwise); inputs are named (a
mapping) or numbered (a sequence: 'model 0', 'model 1', ...) so errors say which one is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from medpipes.core.errors import InputError, ProcessingError
from medpipes.core.image import Image, LabelMap
from medpipes.core.processing.base import check_finite
from medpipes.core.processing.grid import require_one_grid
from medpipes.core.processing._sitk_bridge import array_from_sitk, array_to_sitk, reverses_axes

METHODS = ("majority", "staple", "mean")


def majority_vote(labels: Mapping[str, Image] | Sequence[Image], undecided_label: int = 0) -> LabelMap:
    """Per voxel the label most inputs give (SimpleITK LabelVoting); ties get ``undecided_label``."""
    named = _check(labels, "majority vote", want_labels=True)
    voting = sitk.LabelVotingImageFilter()
    voting.SetLabelForUndecidedPixels(int(undecided_label))
    return _run_label_filter(voting, named, "majority vote")


def staple(
    labels: Mapping[str, Image] | Sequence[Image], undecided_label: int = 0, max_iterations: int | None = None
) -> LabelMap:
    """Multi-label STAPLE (Warfield 2004, Rohlfing's multi-label EM in SimpleITK): inputs weighted by estimated performance."""
    named = _check(labels, "STAPLE", want_labels=True)
    estimator = sitk.MultiLabelSTAPLEImageFilter()
    estimator.SetLabelForUndecidedPixels(int(undecided_label))
    if max_iterations is not None:
        estimator.SetMaximumNumberOfIterations(int(max_iterations))
    return _run_label_filter(estimator, named, "STAPLE")


def mean_probabilities(
    probabilities: Mapping[str, Image] | Sequence[Image], weights: Sequence[float] | None = None
) -> Image:
    """The (weighted) voxel-wise mean of probability maps (3D, or 4D with classes last); float32."""
    named = _check(probabilities, "mean of probabilities", want_labels=False)
    shapes = {name: image.shape for name, image in named.items()}
    if len(set(shapes.values())) > 1:
        raise InputError(f"mean of probabilities: inputs have different shapes {shapes}; give each model's output with the same classes")
    if weights is None:
        w = np.full(len(named), 1.0 / len(named))
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(named),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise InputError(
                f"mean of probabilities: weights {list(weights)} must be {len(named)} non-negative numbers, not all 0 (one per input)"
            )
        w = w / w.sum()
    first = next(iter(named.values()))
    total = np.zeros(first.shape, dtype=np.float64)
    for weight, image in zip(w, named.values()):
        total += weight * image.array
    return Image(total.astype(np.float32), first.affine, first.meta)


def fuse(images: Mapping[str, Image] | Sequence[Image], method: str = "majority") -> Image:
    """Fuse model outputs with ``method``: 'majority' or 'staple' (label maps) or 'mean' (probabilities)."""
    if method == "majority":
        return majority_vote(images)
    if method == "staple":
        return staple(images)
    if method == "mean":
        return mean_probabilities(images)
    raise InputError(f"fusion: unknown method '{method}'; use one of {', '.join(METHODS)}")


def _check(images: Mapping[str, Image] | Sequence[Image], what: str, want_labels: bool) -> dict[str, Image]:
    named = dict(images) if isinstance(images, Mapping) else {f"model {i}": image for i, image in enumerate(images)}
    if len(named) < 2:
        raise InputError(f"{what}: got {len(named)} input(s); fusion needs at least two model outputs")
    for name, image in named.items():
        if not isinstance(image, Image):
            raise InputError(f"{what}: input '{name}' is a {type(image).__name__}, not an Image; wrap arrays with their affine")
        if want_labels and not image.is_label:
            raise InputError(f"{what}: input '{name}' is an intensity Image; fuse label maps (Binarise or Argmax first) or use method 'mean'")
        if not want_labels and image.is_label:
            raise InputError(f"{what}: input '{name}' is a LabelMap; average probabilities, or fuse labels with 'majority' or 'staple'")
        check_finite(image, f"{what} (input '{name}')")
        if want_labels and image.array.ndim != 3:
            raise InputError(f"{what}: input '{name}' has shape {image.shape}; fuse 3D label maps (Argmax a one-hot first)")
        if want_labels and image.array.size and image.array.min() < 0:
            raise InputError(f"{what}: input '{name}' holds negative labels; labels must be 0 or more")
    require_one_grid(named, what)
    return named


def _run_label_filter(label_filter: sitk.ImageFilter, named: Mapping[str, Image], what: str) -> LabelMap:
    first = next(iter(named.values()))
    top = max(int(image.array.max()) if image.array.size else 0 for image in named.values())
    dtype = np.uint16 if top < 65535 else np.uint32
    # Every input takes the first one's geometry (require_one_grid checked they agree) and its axis order.
    reverse = reverses_axes(first.array)
    inputs = [array_to_sitk(image.array.astype(dtype, copy=False), first.affine, reverse)[0] for image in named.values()]
    try:
        result = label_filter.Execute(inputs)
    except RuntimeError as exc:
        message = [line for line in str(exc).splitlines() if line.strip()]
        raise ProcessingError(f"{what}: SimpleITK failed: {message[-1] if message else exc}") from None
    return LabelMap(array_from_sitk(result, reverse), first.affine, first.meta)


__all__ = ["METHODS", "fuse", "majority_vote", "mean_probabilities", "staple"]
