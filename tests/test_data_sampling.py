"""Patch sampling: label-biased centres, patches placed honestly on the grid, same seed -> same patches."""

from __future__ import annotations

import numpy as np
import pytest
from medpipes.core.data import (
    Compose,
    PatchSampler,
    RandomAffine,
    RandomElastic,
    RandomFlip,
    RandomNoise,
)
from medpipes.core.errors import InputError
from medpipes.core.image import Image, LabelMap

AFFINE = np.array([[1.2, 0, 0, -10], [0, 1.0, 0, 4], [0, 0, 1.5, 9], [0, 0, 0, 1]])


def _sample(shape=(40, 44, 36)):
    rng = np.random.default_rng(0)
    label = np.zeros(shape, np.uint8)
    label[30:34, 5:9, 25:29] = 3  # one small structure far from the centre
    label[2:4, 40:42, 2:4] = 7
    image = rng.random(shape).astype(np.float32) + 10 * (label > 0)
    return {"image": Image(image, AFFINE), "label": LabelMap(label, AFFINE)}


def test_every_label_biased_patch_holds_label_voxels_even_near_the_border():
    sampler = PatchSampler(12, label_group="label", label_fraction=1.0)
    patches = sampler(_sample(), 20, np.random.default_rng(1))
    for patch in patches:
        assert patch["label"].array.shape == (12, 12, 12)
        assert patch["label"].array.any()


def test_a_label_biased_patch_is_centred_on_a_label_voxel_away_from_the_border():
    sample = _sample()
    label = np.zeros((40, 44, 36), np.uint8)
    label[18:22, 20:23, 15:19] = 1
    sample["label"] = LabelMap(label, AFFINE)
    for patch in PatchSampler(12, label_group="label", label_fraction=1.0)(sample, 10, 6):
        assert patch["label"].array[6, 6, 6] == 1


def test_label_values_restrict_the_centres():
    sampler = PatchSampler(6, label_group="label", label_fraction=1.0, label_values=[7])
    for patch in sampler(_sample(), 10, 2):
        assert (patch["label"].array == 7).any() and not (patch["label"].array == 3).any()


def test_label_fraction_sets_the_share_of_label_centred_patches():
    sample = _sample()
    sampler = PatchSampler(4, label_group="label", label_fraction=0.5)
    patches = sampler(sample, 400, 3)
    share = np.mean([p["label"].array.any() for p in patches])
    assert 0.4 < share < 0.6  # the labels cover under 0.2% of the volume: uniform patches almost never hit them


def test_patch_affine_places_the_patch_on_the_grid():
    sample = _sample()
    patch = PatchSampler((10, 12, 8))(sample, 1, 5)[0]
    start = patch["image"].meta.extra["patch_start"]
    np.testing.assert_allclose(patch["image"].voxel_to_world([0, 0, 0]), sample["image"].voxel_to_world(start))
    i, j, k = start
    np.testing.assert_array_equal(patch["image"].array, sample["image"].array[i : i + 10, j : j + 12, k : k + 8])


def test_same_seed_gives_identical_patches_through_an_augmentation_chain():
    chain = Compose([RandomFlip(), RandomAffine(degrees=20), RandomNoise(std=(0, 1))])
    sampler = PatchSampler(16, label_group="label", label_fraction=0.7)
    first = sampler(_sample(), 6, 42, chain)
    again = sampler(_sample(), 6, 42, chain)
    other = sampler(_sample(), 6, 43, chain)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["image"].array, b["image"].array)
        np.testing.assert_array_equal(a["label"].array, b["label"].array)
        np.testing.assert_array_equal(a["image"].affine, b["image"].affine)
    assert any(not np.array_equal(a["image"].array, c["image"].array) for a, c in zip(first, other))


def test_patches_of_an_augmented_volume_agree_with_the_whole_augmented_volume():
    sample = _sample()
    chain = Compose([RandomFlip(), RandomAffine(degrees=20, scales=0.1)])
    sampler = PatchSampler(14, label_group="label", label_fraction=0.5)
    patches = sampler.patches(chain.lazy(sample, 9), 3, np.random.default_rng(9))
    whole = chain(sample, 9)
    for patch in patches:
        i, j, k = patch["image"].meta.extra["patch_start"]
        for group in sample:
            np.testing.assert_array_equal(patch[group].array, whole[group].array[i : i + 14, j : j + 14, k : k + 14])


def test_label_centres_after_an_elastic_deformation_still_hit_labels():
    sampler = PatchSampler(8, label_group="label", label_fraction=1.0)
    chain = Compose([RandomElastic(max_displacement_mm=4)])
    for patch in sampler(_sample(), 5, 4, chain):
        assert patch["label"].array.any()


def test_an_axis_shorter_than_the_patch_is_padded_with_zeros():
    image = Image(np.ones((5, 30, 30), np.float32), AFFINE)
    patch = PatchSampler(9)({"image": image}, 1, 0)[0]["image"]
    assert patch.shape == (9, 9, 9)
    assert patch.array[2:7].min() == 1.0 and patch.array[:2].max() == 0.0 and patch.array[7:].max() == 0.0


def test_sampler_settings_are_checked():
    with pytest.raises(InputError, match="needs label_group"):
        PatchSampler(8, label_fraction=0.5)
    with pytest.raises(InputError, match="patch_size"):
        PatchSampler((8, 8))
    with pytest.raises(InputError, match="label_group 'seg' is not in the sample"):
        PatchSampler(8, label_group="seg", label_fraction=1.0)(_sample(), 1, 0)


def test_groups_left_on_different_grids_by_a_selective_spatial_step_are_refused():
    from medpipes.core.data import RandomRot90
    from medpipes.core.errors import GeometryError

    chain = Compose([RandomRot90(planes=[(0, 1)], on=["image"], p=1.0)])
    sampler = PatchSampler(4)
    for seed in range(8):
        state = chain.lazy(_sample(), seed)
        if state.shapes["image"] != state.shapes["label"]:
            with pytest.raises(GeometryError, match="different grids after augmentation"):
                sampler.patches(state, 1, np.random.default_rng(0))
            return
    pytest.fail("no seed turned the image by an odd multiple of 90 degrees")
