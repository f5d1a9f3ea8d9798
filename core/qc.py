"""Quality-control pictures: three orthogonal slices of an image with a mask's outline (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medpipes.core.errors import GeometryError
from medpipes.core.image import Image, LabelMap
from medpipes.core.io.atomic import atomic_path


def _canonical(image: Image) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The 3D array in RAS voxel order (no interpolation) and its spacing, for display."""
    ornt = nib.orientations.io_orientation(image.affine)
    array = nib.orientations.apply_orientation(np.asarray(image.array), ornt)
    spacing = tuple(float(s) for s in np.asarray(image.spacing)[ornt[:, 0].astype(int)])
    return array, spacing  # type: ignore[return-value]


def write_qc_png(image: Image, mask: LabelMap, path: str | Path, title: str = "") -> Path:
    """Axial, coronal and sagittal slices through the mask's centre, the mask outlined in red; written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state, safe in threads and servers

    if not image.same_grid(mask):
        raise GeometryError(f"{path}: the QC mask is not on the image's grid; resample it onto the image first")
    volume, spacing = _canonical(image.volumes()[0])
    labels, _ = _canonical(mask)
    foreground = labels > 0
    centre = (
        [int(round(c)) for c in np.argwhere(foreground).mean(axis=0)]
        if foreground.any()
        else [s // 2 for s in volume.shape]
    )
    finite = volume[np.isfinite(volume)]
    low, high = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    views = (
        ("axial", volume[:, :, centre[2]], foreground[:, :, centre[2]], spacing[1] / spacing[0]),
        ("coronal", volume[:, centre[1], :], foreground[:, centre[1], :], spacing[2] / spacing[0]),
        ("sagittal", volume[centre[0], :, :], foreground[centre[0], :, :], spacing[2] / spacing[1]),
    )
    figure = Figure(figsize=(12, 4.4), dpi=100, facecolor="black")
    for index, (name, plane, outline, aspect) in enumerate(views, start=1):
        axes = figure.add_subplot(1, 3, index)
        axes.imshow(plane.T, cmap="gray", origin="lower", vmin=low, vmax=high if high > low else low + 1, aspect=aspect)
        if outline.any() and not outline.all():
            axes.contour(outline.T.astype(np.uint8), levels=[0.5], colors="red", linewidths=1.0)
        axes.set_title(name, color="white", fontsize=10)
        axes.axis("off")
    if title:
        figure.suptitle(title, color="white", fontsize=11)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", facecolor="black")
    return path
