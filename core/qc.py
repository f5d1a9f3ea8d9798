"""Quality-control pictures: three orthogonal slices of an image with a mask's outline (Pillow).

Pillow rather than matplotlib: the picture is three resized grey panels, a red outline and four labels,
and matplotlib's import and layout cost about a second of every pipeline run on a CPU, where a fresh
process is the unit a clinic script pays for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from medpipes.core.errors import GeometryError
from medpipes.core.image import Image, LabelMap
from medpipes.core.io.atomic import atomic_path

if TYPE_CHECKING:  # Pillow is imported when a picture is drawn
    from PIL.Image import Image as Picture

PANEL_HEIGHT = 360  # pixels; every panel is scaled to this height, its width following the physical aspect
_RED = (255, 40, 40)


def _canonical(image: Image) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The 3D array in RAS voxel order (no interpolation) and its spacing, for display."""
    ornt = nib.orientations.io_orientation(image.affine)
    array = nib.orientations.apply_orientation(np.asarray(image.array), ornt)
    spacing = tuple(float(s) for s in np.asarray(image.spacing)[ornt[:, 0].astype(int)])
    return array, spacing  # type: ignore[return-value]


def _outline(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels: inside, with at least one 4-neighbour outside (or on the picture's edge)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def _panel(plane: np.ndarray, mask: np.ndarray, spacing: tuple[float, float], window: tuple[float, float]) -> Picture:
    """One slice as an RGB Pillow image: superior/anterior up, the physical aspect kept, the outline in red."""
    from PIL import Image as PILImage

    low, high = window
    grey = np.clip((np.nan_to_num(plane.astype(np.float32), nan=low) - low) / (high - low), 0.0, 1.0)
    grey = np.flipud((grey * 255).astype(np.uint8).T)  # rows: second axis, increasing upwards
    mask = np.flipud(mask.T)
    height_mm, width_mm = grey.shape[0] * spacing[1], grey.shape[1] * spacing[0]
    size = (max(1, round(PANEL_HEIGHT * width_mm / height_mm)), PANEL_HEIGHT)
    picture = PILImage.fromarray(grey).resize(size, PILImage.Resampling.BILINEAR).convert("RGB")
    if mask.any() and not mask.all():
        big = np.asarray(PILImage.fromarray(mask.astype(np.uint8) * 255).resize(size, PILImage.Resampling.NEAREST)) > 0
        edge = _outline(big)
        edge[1:] |= edge[:-1]  # two pixels wide: visible at a glance on a large screen and in a report
        pixels = np.asarray(picture).copy()
        pixels[edge] = _RED
        picture = PILImage.fromarray(pixels)
    return picture


def write_qc_png(image: Image, mask: LabelMap, path: str | Path, title: str = "") -> Path:
    """Axial, coronal and sagittal slices through the mask's centre, the mask outlined in red; written atomically."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

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
    low, high = (float(v) for v in np.percentile(finite, [0.5, 99.5])) if finite.size else (0.0, 1.0)
    window = (low, high if high > low else low + 1.0)
    views = (
        ("axial", volume[:, :, centre[2]], foreground[:, :, centre[2]], (spacing[0], spacing[1])),
        ("coronal", volume[:, centre[1], :], foreground[:, centre[1], :], (spacing[0], spacing[2])),
        ("sagittal", volume[centre[0], :, :], foreground[centre[0], :, :], (spacing[1], spacing[2])),
    )
    panels = [(name, _panel(plane, outline, pixel, window)) for name, plane, outline, pixel in views]
    font = ImageFont.load_default(size=16)
    gap, label_height, title_height = 12, 26, 30 if title else 0
    width = sum(p.width for _, p in panels) + gap * (len(panels) + 1)
    sheet = PILImage.new("RGB", (width, title_height + label_height + PANEL_HEIGHT + gap), "black")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((width // 2, 6), title, fill="white", font=font, anchor="ma")
    x = gap
    for name, panel in panels:
        draw.text((x + panel.width // 2, title_height + 4), name, fill="white", font=font, anchor="ma")
        sheet.paste(panel, (x, title_height + label_height))
        x += panel.width + gap
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
