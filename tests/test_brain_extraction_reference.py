"""The reference brain mask: DLMUSE label > 0, closed with a 4 mm ball, holes filled, on the same grid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medpipes.core.errors import InputError
from medpipes.core.image import ImageMeta, LabelMap
from medpipes.core.io import read_image
from medpipes.pipelines.brain_extraction.reference import reference_brain_mask


def _labels(array: np.ndarray, spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)) -> LabelMap:
    return LabelMap(array.astype(np.uint8), np.diag([*spacing, 1.0]), ImageMeta(source_paths=("seg.nii.gz",)))


def _two_slabs(gap_voxels: int, axis: int = 0) -> np.ndarray:
    """Two 6-voxel-thick slabs facing each other across ``gap_voxels`` empty planes along ``axis``."""
    size = 12 + gap_voxels + 8
    array = np.zeros((size, 16, 16), dtype=np.uint8)
    array[4:10, 4:12, 4:12] = 7
    array[10 + gap_voxels : 16 + gap_voxels, 4:12, 4:12] = 12
    return np.moveaxis(array, 0, axis)


@pytest.mark.realdata
def test_nichart_mask_holds_every_labelled_voxel_on_the_parcellation_grid(shared_data) -> None:
    dlmuse = read_image(shared_data("brain", "nichart", "dlmuse_seg", "Subj16_T1_DLMUSE.nii.gz"))
    mask = reference_brain_mask(dlmuse)
    labelled = dlmuse.array > 0
    assert mask.same_grid(dlmuse) and mask.array.dtype == np.uint8
    assert set(np.unique(mask.array)) == {0, 1}
    assert np.all(mask.array[labelled] == 1)
    assert np.array_equal(ndimage.binary_fill_holes(mask.array), mask.array.astype(bool))
    added = (mask.array.sum() - labelled.sum()) / labelled.sum()
    assert 0 < added < 0.01  # clefts closed, no skull swallowed


def test_closing_bridges_a_4_mm_cleft_but_not_a_12_mm_gap() -> None:
    bridged = reference_brain_mask(_labels(_two_slabs(gap_voxels=2)))  # 2 voxels x 2 mm
    apart = reference_brain_mask(_labels(_two_slabs(gap_voxels=6)))  # 6 voxels x 2 mm
    assert ndimage.label(bridged.array)[1] == 1 and bridged.array[10:12, 6:10, 6:10].all()
    assert ndimage.label(apart.array)[1] == 2 and not apart.array[10:16].any()


def test_closing_radius_is_in_millimetres_on_an_anisotropic_grid() -> None:
    # 1 mm along k: a 6-voxel cleft is 6 mm, bridged; along i at 2 mm the same 6 voxels are 12 mm, not.
    across_k = reference_brain_mask(_labels(_two_slabs(gap_voxels=6, axis=2), spacing=(2.0, 2.0, 1.0)))
    across_i = reference_brain_mask(_labels(_two_slabs(gap_voxels=6, axis=0), spacing=(2.0, 2.0, 1.0)))
    assert ndimage.label(across_k.array)[1] == 1
    assert ndimage.label(across_i.array)[1] == 2


def test_enclosed_cavity_is_filled_and_a_brain_on_the_grid_edge_is_not_eroded() -> None:
    array = np.zeros((20, 20, 20), dtype=np.uint8)
    array[0:14, 2:18, 2:18] = 3  # touches the i = 0 face of the grid
    array[4:10, 6:14, 6:14] = 0  # a cavity wider than the closing ball can bridge
    mask = reference_brain_mask(_labels(array))
    expected = np.zeros_like(array)
    expected[0:14, 2:18, 2:18] = 1
    assert np.array_equal(mask.array, expected)


def test_empty_parcellation_is_refused_naming_the_file() -> None:
    with pytest.raises(InputError, match=r"seg\.nii\.gz: no label > 0"):
        reference_brain_mask(_labels(np.zeros((8, 8, 8))))


def test_mask_keeps_the_affine_and_meta_and_leaves_the_input_unchanged() -> None:
    array = _two_slabs(gap_voxels=2)
    labels = _labels(array)
    before = labels.array.copy()
    mask = reference_brain_mask(labels)
    assert np.array_equal(mask.affine, labels.affine) and mask.meta == labels.meta
    assert np.array_equal(labels.array, before)
