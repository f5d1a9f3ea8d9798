"""qc.png: three orthogonal panels with the mask outlined in red, physical aspect kept, written atomically."""

from __future__ import annotations

import numpy as np
import pytest
from medpipes.core.errors import GeometryError
from medpipes.core.image import Image, LabelMap
from medpipes.core.qc import PANEL_HEIGHT, write_qc_png
from PIL import Image as PILImage


def _case(shape=(40, 50, 30), spacing=(1.0, 1.0, 2.0)) -> tuple[Image, LabelMap]:
    affine = np.diag([*spacing, 1.0])
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) / 2)[:, None, None, None]
    radius = np.sqrt((((grid - centre) * np.array(spacing)[:, None, None, None]) ** 2).sum(0))
    image = Image((100.0 - radius).astype(np.float32), affine)
    return image, LabelMap((radius < 12).astype(np.uint8), affine)


def _red(picture: np.ndarray) -> np.ndarray:
    return (picture[..., 0] > 200) & (picture[..., 1] < 80) & (picture[..., 2] < 80)


def test_three_panels_with_a_red_outline_around_the_mask_and_the_title(tmp_path):
    image, mask = _case()
    path = write_qc_png(image, mask, tmp_path / "qc.png", title="case 1")
    picture = np.asarray(PILImage.open(path).convert("RGB"))
    assert picture.shape[0] == 30 + 26 + PANEL_HEIGHT + 12  # title, labels, panels, margin
    red = _red(picture)
    columns = np.flatnonzero(red.any(axis=0))
    gaps = np.flatnonzero(np.diff(columns) > 1)
    assert len(gaps) == 2  # one outline per panel
    assert 0 < red.mean() < 0.05  # an outline, not a filled mask
    # the outline encloses the brighter centre of the sphere: the panel's centre is not red
    assert not red[30 + 26 + PANEL_HEIGHT // 2, columns[0] + (columns[gaps[0]] - columns[0]) // 2]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_the_physical_aspect_is_kept(tmp_path):
    image, mask = _case(shape=(40, 40, 20), spacing=(1.0, 1.0, 2.0))  # 40 x 40 x 40 mm: three square panels
    width = PILImage.open(write_qc_png(image, mask, tmp_path / "a.png")).width
    assert width == 3 * PANEL_HEIGHT + 4 * 12
    image, mask = _case(shape=(40, 20, 20), spacing=(1.0, 1.0, 1.0))  # axial and coronal twice as wide as high
    width = PILImage.open(write_qc_png(image, mask, tmp_path / "b.png")).width
    assert width == (2 + 2 + 1) * PANEL_HEIGHT + 4 * 12


def test_an_empty_mask_gives_grey_panels_without_an_outline(tmp_path):
    image, mask = _case()
    empty = LabelMap(np.zeros(mask.shape, np.uint8), mask.affine)
    picture = np.asarray(PILImage.open(write_qc_png(image, empty, tmp_path / "qc.png")).convert("RGB"))
    assert not _red(picture).any() and picture.max() == 255


def test_a_mask_on_another_grid_is_refused(tmp_path):
    image, mask = _case()
    moved = LabelMap(np.asarray(mask.array), mask.affine @ np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(GeometryError, match="not on the image's grid"):
        write_qc_png(image, moved, tmp_path / "qc.png")
    assert not (tmp_path / "qc.png").exists()
