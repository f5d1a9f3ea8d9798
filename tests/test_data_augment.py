"""Augmentations: labels move with their images, affines stay honest, intensity steps skip labels, seeds reproduce."""

from __future__ import annotations

import numpy as np
import pytest
from medpipes.core.data import (
    ChannelDropout,
    Compose,
    NearestDownsample,
    RandomAffine,
    RandomBiasField,
    RandomBlur,
    RandomElastic,
    RandomFlip,
    RandomGamma,
    RandomNoise,
    RandomRot90,
    RandomScaleShift,
)
from medpipes.core.data.augment import rot90_draw
from medpipes.core.errors import InputError
from medpipes.core.image import Image, LabelMap
from scipy import ndimage

AFFINE = np.array([[-1.5, 0, 0, 30], [0, 1.0, 0, -20], [0, 0, 2.0, 5], [0, 0, 0, 1]])
BRIGHT = 100.0


def _structure_sample(shape=(36, 40, 30)):
    """An image whose bright structure (an off-centre ellipsoid plus a bar) is exactly the label."""
    i, j, k = np.indices(shape)
    ellipsoid = ((i - 14) / 9.0) ** 2 + ((j - 22) / 12.0) ** 2 + ((k - 13) / 7.0) ** 2 <= 1.0
    bar = (i >= 24) & (i < 30) & (j >= 5) & (j < 12) & (k >= 8) & (k < 24)
    label = (ellipsoid | bar).astype(np.uint8)
    image = np.where(label > 0, BRIGHT, 0.0).astype(np.float32)
    return {"image": Image(image[..., None], AFFINE), "label": LabelMap(label[..., None], AFFINE)}


def _mismatch(sample):
    """(voxels where 'image above half brightness' and 'label' disagree, whether all lie on the label's edge,
    number of edge voxels)."""
    bright = sample["image"].array[..., 0] > BRIGHT / 2
    label = sample["label"].array[..., 0] > 0
    wrong = bright != label
    edge = ndimage.binary_dilation(label) & ~ndimage.binary_erosion(label)
    return int(wrong.sum()), bool(np.all(edge[wrong])), int(edge.sum())


@pytest.mark.parametrize("augmentation", [RandomFlip(), RandomRot90(), Compose([RandomFlip(), RandomRot90()])], ids=repr)
def test_flips_and_rot90_keep_image_and_label_exactly_aligned(augmentation):
    sample = _structure_sample()
    compose = augmentation if isinstance(augmentation, Compose) else Compose([augmentation])
    for seed in range(6):
        out = compose(sample, seed)
        assert _mismatch(out)[0] == 0
        assert out["label"].array.sum() == sample["label"].array.sum()


@pytest.mark.parametrize(
    "augmentation",
    [
        RandomAffine(scales=0.15, degrees=25, translation_mm=6),
        RandomElastic(control_points=6, max_displacement_mm=6),
        Compose([RandomFlip(), RandomRot90(), RandomAffine(scales=0.1, degrees=15), RandomElastic(max_displacement_mm=5)]),
    ],
    ids=["affine", "elastic", "flip+rot90+affine+elastic"],
)
def test_deformations_keep_the_label_on_the_bright_structure_up_to_the_edge(augmentation):
    """Measure: the image above half brightness equals the label except at voxels on the label's edge
    (dilation minus erosion), where trilinear (image) and nearest-neighbour (label) interpolation may
    round differently; fewer than 10% of the edge voxels differ (about 5% measured)."""
    sample = _structure_sample()
    compose = augmentation if isinstance(augmentation, Compose) else Compose([augmentation])
    for seed in range(4):
        out = compose(sample, seed)
        wrong, all_on_edge, edge = _mismatch(out)
        assert all_on_edge
        assert wrong < 0.10 * edge
        assert not np.array_equal(out["label"].array, sample["label"].array)


def test_rot90_equals_numpy_rot90_and_keeps_world_positions():
    array = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    sample = {"x": Image(array, AFFINE)}
    for plane in [(0, 1), (0, 2), (1, 2), (2, 0)]:
        for turns in (1, 2, 3):
            drawn = rot90_draw((4, 5, 6), AFFINE, plane, turns)
            state = Compose([]).lazy(sample, 0)
            state.push("x", drawn)
            out = state.materialise()["x"]
            np.testing.assert_array_equal(out.array, np.rot90(array, turns, axes=plane))
            ijk = np.array([1, 2, 3, 1.0])
            np.testing.assert_allclose(out.affine @ ijk, AFFINE @ (drawn.step.matrix @ ijk))


def test_a_flipped_voxel_stays_where_it_was_in_the_world():
    array = np.zeros((6, 7, 8), np.float32)
    array[1, 2, 3] = 1.0
    before = Image(array, AFFINE)
    after = Compose([RandomFlip(axes=(0, 1, 2), flip_probability=1.0)])({"x": before}, 0)["x"]
    assert after.array[4, 4, 4] == 1.0
    np.testing.assert_allclose(after.voxel_to_world([4, 4, 4]), before.voxel_to_world([1, 2, 3]))


def test_random_affine_moves_anatomy_on_the_same_grid_and_scale_above_one_enlarges_it():
    sample = _structure_sample()
    out = Compose([RandomAffine(scales=(1.2, 1.2), degrees=0)])(sample, 0)
    np.testing.assert_array_equal(out["label"].affine, AFFINE)
    assert out["label"].spatial_shape == sample["label"].spatial_shape
    ratio = out["label"].array.sum() / sample["label"].array.sum()
    assert 1.2**3 * 0.93 < ratio < 1.2**3 * 1.07


def test_same_seed_same_output_other_seed_other_output():
    sample = _structure_sample()
    chain = Compose(
        [RandomFlip(), RandomAffine(), RandomElastic(max_displacement_mm=3), RandomNoise(std=5), RandomGamma(), RandomBiasField()]
    )
    a, b, c = chain(sample, 11), chain(sample, 11), chain(sample, 12)
    np.testing.assert_array_equal(a["image"].array, b["image"].array)
    np.testing.assert_array_equal(a["label"].array, b["label"].array)
    assert not np.array_equal(a["image"].array, c["image"].array)


def test_inputs_are_never_modified():
    sample = _structure_sample()
    copies = {g: im.array.copy() for g, im in sample.items()}
    Compose([RandomFlip(flip_probability=1), RandomScaleShift(shift=(1, 2)), RandomNoise(std=1), ChannelDropout(0.9)])(sample, 0)
    for g, im in sample.items():
        np.testing.assert_array_equal(im.array, copies[g])


def test_lazy_box_equals_the_same_box_of_the_whole_result():
    sample = _structure_sample()
    state = Compose([RandomFlip(), RandomRot90(), RandomAffine(scales=0.1, degrees=20)]).lazy(sample, 3)
    whole = state.materialise()
    box = ((5, -3, 4), (16, 16, 16))
    part = state.materialise(box)
    for group in sample:
        padded = np.pad(whole[group].array, ((0, 0), (3, 0), (0, 0), (0, 0)))
        np.testing.assert_array_equal(part[group].array, padded[5:21, 0:16, 4:20])
        np.testing.assert_allclose(part[group].voxel_to_world([0, 0, 0]), whole[group].voxel_to_world([5, -3, 4]))


def test_intensity_augmentations_never_touch_labels_and_refuse_label_groups():
    sample = _structure_sample()
    chain = Compose([RandomScaleShift(shift=(5, 6)), RandomGamma(), RandomNoise(std=3), RandomBlur(), RandomBiasField(), NearestDownsample()])
    out = chain(sample, 0)
    np.testing.assert_array_equal(out["label"].array, sample["label"].array)
    assert not np.array_equal(out["image"].array, sample["image"].array)
    with pytest.raises(InputError, match="never applies to label groups"):
        Compose([RandomNoise(on="label")])(sample, 0)
    with pytest.raises(InputError, match="groups \\['nope'\\] the sample lacks"):
        Compose([RandomFlip(on=["nope"])])(sample, 0)


def test_augmentation_assigned_to_selected_groups_only():
    sample = _structure_sample()
    sample["other"] = Image(sample["image"].array.copy(), AFFINE)
    out = Compose([RandomScaleShift(scale=(2, 2), on=["other"])])(sample, 0)
    np.testing.assert_array_equal(out["image"].array, sample["image"].array)
    np.testing.assert_allclose(out["other"].array, 2 * sample["image"].array)


def _channels(n=3, shape=(20, 22, 24)):
    rng = np.random.default_rng(4)
    return {"image": Image((rng.random(shape + (n,)) * 50 + 10).astype(np.float32), AFFINE)}


def test_noise_has_the_drawn_standard_deviation():
    sample = _channels()
    out = Compose([RandomNoise(std=(2.0, 2.0))])(sample, 0)
    residual = out["image"].array - sample["image"].array
    assert abs(residual.std() - 2.0) < 0.05 and abs(residual.mean()) < 0.05


def test_gamma_keeps_the_intensity_range_and_changes_the_middle():
    sample = _channels()
    out = Compose([RandomGamma(log_gamma=(0.5, 0.5))])(sample, 0)["image"].array
    source = sample["image"].array
    np.testing.assert_allclose(out.max(axis=(0, 1, 2)), source.max(axis=(0, 1, 2)), rtol=1e-5)
    assert out.mean() < source.mean()


def test_scale_shift_bias_blur_and_downsample_do_what_they_say():
    sample = _channels(n=1)
    source = sample["image"].array
    scaled = Compose([RandomScaleShift(scale=(2, 2), shift=(3, 3))])(sample, 0)["image"].array
    np.testing.assert_allclose(scaled, source * 2 + 3, rtol=1e-6)
    field = Compose([RandomBiasField(coefficients=0.3)])(sample, 0)["image"].array / source
    assert field.min() > 0 and field.max() / field.min() > 1.2  # positive and not constant
    smoothed = ndimage.uniform_filter(field, size=(3, 3, 3, 1))
    np.testing.assert_allclose(field[1:-1, 1:-1, 1:-1], smoothed[1:-1, 1:-1, 1:-1], rtol=0.02)  # smooth: locally linear
    blurred = Compose([RandomBlur(std_mm=(2, 2))])(sample, 0)["image"].array
    assert blurred.std() < 0.6 * source.std()
    low = Compose([NearestDownsample(factor=(2, 2))])(sample, 0)["image"].array
    np.testing.assert_array_equal(low[1::2, :, :], low[0::2, :, :][: low[1::2].shape[0]])
    np.testing.assert_array_equal(low[0::2, 0::2, 0::2], source[0::2, 0::2, 0::2])


def test_channel_dropout_zeroes_channels_but_never_all():
    sample = _channels(n=3)
    for seed in range(20):
        out = Compose([ChannelDropout(drop_probability=0.9)])(sample, seed)["image"].array
        zeroed = [c for c in range(3) if not out[..., c].any()]
        kept = [c for c in range(3) if c not in zeroed]
        assert len(kept) >= 1
        for c in kept:
            np.testing.assert_array_equal(out[..., c], sample["image"].array[..., c])


def test_three_d_images_come_back_three_d():
    sample = {"x": Image(np.random.default_rng(0).random((8, 9, 10)).astype(np.float32), AFFINE)}
    out = Compose([RandomAffine(), RandomNoise(std=1), RandomBlur()])(sample, 0)
    assert out["x"].shape == (8, 9, 10)


def test_bad_parameters_are_refused_with_the_fix():
    with pytest.raises(InputError, match="p=1.5 is not a probability"):
        RandomFlip(p=1.5)
    with pytest.raises(InputError, match="low end is above the high end"):
        RandomAffine(scales=(1.2, 0.8))
    with pytest.raises(InputError, match="axes"):
        RandomFlip(axes=(3,))


def test_random_affine_translation_moves_the_anatomy_by_that_many_millimetres_in_world_space():
    array = np.zeros((20, 20, 20), np.float32)
    array[10, 5, 6] = 1.0
    before = Image(array, AFFINE)  # x = -1.5 i, y = j, z = 2 k (mm)
    after = Compose([RandomAffine(scales=0.0, degrees=0.0, translation_mm=(6.0, 6.0))])({"x": before}, 0)["x"]
    moved = np.argwhere(after.array > 0.5)
    assert moved.tolist() == [[6, 11, 9]]  # i - 4, j + 6, k + 3: +6 mm along x, y and z
    np.testing.assert_allclose(after.voxel_to_world([6, 11, 9]) - before.voxel_to_world([10, 5, 6]), [6.0, 6.0, 6.0])
