"""Spatial steps: forward then inverse restores the grid exactly, and world positions never move."""

from __future__ import annotations

import numpy as np
import pytest

from medpipes.core import Image, LabelMap, read_image
from medpipes.core.errors import InputError
from medpipes.core.processing import Chain, CropToForeground, Grid, Pad, Reorient, Resample, resample_onto

SHAPE = (10, 20, 30)
SPACING = (1.0, 1.0, 2.0)


def blob(centre=(4.3, 9.6, 15.2), sigma_mm=2.5, spacing=SPACING) -> np.ndarray:
    """A Gaussian blob (float32) with its peak at voxel ``centre`` and zero far from it."""
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in SHAPE], indexing="ij")
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing))
    values = np.exp(-d2 / (2 * sigma_mm**2))
    values[values < 1e-3] = 0.0
    return (100 * values).astype(np.float32)


@pytest.fixture
def image(oblique_affine) -> Image:
    return Image(blob(), oblique_affine())


@pytest.fixture
def noise_image(oblique_affine) -> Image:
    return Image(np.random.default_rng(0).integers(1, 1000, size=SHAPE).astype(np.int16), oblique_affine())


@pytest.fixture
def labels(oblique_affine) -> LabelMap:
    array = np.zeros(SHAPE, np.uint8)
    array[2:7, 3:15, 4:20] = 2
    array[4:9, 10:18, 12:28] = 5
    array[1:3, 1:4, 25:29] = 7
    return LabelMap(array, oblique_affine())


def world_centre_of_mass(image: Image) -> np.ndarray:
    weights = image.array.astype(np.float64)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in image.spatial_shape], indexing="ij"), -1).reshape(-1, 3)
    return image.voxel_to_world((ijk * weights.reshape(-1, 1)).sum(0) / weights.sum())


def assert_same_grid(a: Image, b: Image) -> None:
    assert a.spatial_shape == b.spatial_shape
    assert np.allclose(a.affine, b.affine, atol=1e-6)


# --- reorient ---------------------------------------------------------------------------------
@pytest.mark.parametrize("codes", ["RAS", "LPS", "PIR", "SLA", "LAI"])
def test_reorient_then_inverse_restores_voxels_and_affine_exactly(noise_image: Image, codes: str) -> None:
    step = Reorient(codes)
    out, record = step(noise_image)
    assert out.orientation == codes
    back = step.invert(out, record)
    assert_same_grid(back, noise_image)
    assert np.array_equal(back.array, noise_image.array)
    assert back.dtype == noise_image.dtype


@pytest.mark.parametrize("codes", ["LPS", "PIR", "IPR"])
def test_reorient_keeps_a_bright_voxel_at_the_same_world_position(codes: str, oblique_affine) -> None:
    array = np.zeros(SHAPE, np.float32)
    array[3, 5, 7] = 1.0
    source = Image(array, oblique_affine())
    out = Reorient(codes).apply(source)
    peak = np.unravel_index(np.argmax(out.array), out.shape)
    assert np.allclose(out.voxel_to_world(peak), source.voxel_to_world([3, 5, 7]), atol=1e-6)


def test_reorient_of_a_4d_image_moves_every_volume_alike(oblique_affine) -> None:
    array = np.random.default_rng(1).random(SHAPE + (3,)).astype(np.float32)
    source = Image(array, oblique_affine())
    step = Reorient("PIR")
    out, record = step(source)
    assert out.shape == (20, 30, 10, 3)
    assert np.array_equal(step.invert(out, record).array, array)


@pytest.mark.parametrize("codes", ["RAR", "XYZ", "RA", "RASL"])
def test_reorient_refuses_axis_codes_that_are_not_one_per_axis(codes: str) -> None:
    with pytest.raises(InputError, match="axis codes"):
        Reorient(codes)


def test_reorient_never_shares_memory_with_its_input(noise_image: Image) -> None:
    out = Reorient("RAS").apply(noise_image)
    assert not np.shares_memory(out.array, noise_image.array)


# --- resample ---------------------------------------------------------------------------------
def test_resample_to_spacing_then_inverse_restores_shape_and_affine(image: Image) -> None:
    step = Resample(0.7)
    out, record = step(image)
    assert out.spacing == pytest.approx((0.7, 0.7, 0.7))
    assert out.spatial_shape == (14, 29, 86)  # round(10 / 0.7), round(20 / 0.7), round(60 / 0.7)
    assert np.allclose(out.direction, image.direction)
    assert_same_grid(step.invert(out, record), image)


def test_resample_to_shape_keeps_the_field_of_view_and_inverse_restores_the_grid(image: Image) -> None:
    step = Resample(shape=(16, 16, 16))
    out, record = step(image)
    assert out.spatial_shape == (16, 16, 16)
    extent_in = np.array(SHAPE) * np.array(image.spacing)
    assert np.allclose(np.array(out.spatial_shape) * np.array(out.spacing), extent_in)
    assert_same_grid(step.invert(out, record), image)


@pytest.mark.parametrize("step", [Resample(0.7), Resample(1.6, interpolation="bspline"), Resample(shape=(16, 16, 16))])
def test_resample_keeps_the_grid_centre_and_a_blob_centre_of_mass_in_world_space(image: Image, step: Resample) -> None:
    out = step.apply(image)
    centre_in = image.voxel_to_world((np.array(SHAPE) - 1) / 2)
    assert np.allclose(out.voxel_to_world((np.array(out.spatial_shape) - 1) / 2), centre_in, atol=1e-6)
    shift_mm = np.linalg.norm(world_centre_of_mass(out) - world_centre_of_mass(image))
    assert shift_mm < min(out.spacing) / 2


def test_resample_inverse_brings_the_voxels_back_close_to_the_original(image: Image) -> None:
    step = Resample(0.7)
    out, record = step(image)
    back = step.invert(out, record)
    assert np.abs(back.array - image.array).max() < 0.1 * image.array.max()


def test_resample_of_4d_class_scores_moves_every_channel_and_inverts_onto_the_input_grid(image: Image) -> None:
    scores = Image(np.stack([image.array, 100 - image.array], axis=-1), image.affine)
    step = Resample(0.7)
    out, record = step(scores)
    assert out.shape == (14, 29, 86, 2)
    assert np.allclose(out.array.sum(axis=-1)[5:-5, 5:-5, 5:-5], 100, atol=1e-3)
    back = step.invert(out, record)
    assert back.shape == SHAPE + (2,) and np.allclose(back.affine, image.affine, atol=1e-6)


@pytest.mark.parametrize("step", [Resample(0.7, interpolation="bspline"), Resample(shape=(7, 33, 41))])
def test_resampled_label_map_holds_only_original_labels(labels: LabelMap, step: Resample) -> None:
    out, record = step(labels)
    assert isinstance(out, LabelMap) and out.dtype == labels.dtype
    assert set(np.unique(out.array)) <= set(np.unique(labels.array))
    assert set(np.unique(out.array)) == {0, 2, 5, 7}
    back = step.invert(out, record)
    assert_same_grid(back, labels)
    assert set(np.unique(back.array)) <= {0, 2, 5, 7}


def test_linear_resample_of_an_integer_image_gives_float32(noise_image: Image) -> None:
    assert Resample(0.7).apply(noise_image).dtype == np.float32


@pytest.mark.parametrize("kwargs", [{}, {"spacing": 1, "shape": (2, 2, 2)}, {"spacing": -1}, {"spacing": (1, 2)},
                                    {"shape": (4, 4)}, {"shape": (4, 4, 2.5)}, {"spacing": 1, "interpolation": "cubic"}])
def test_resample_refuses_an_unclear_target(kwargs) -> None:
    with pytest.raises(InputError, match="resample"):
        Resample(**kwargs)


# --- crop and pad -----------------------------------------------------------------------------
def test_crop_to_foreground_then_inverse_restores_grid_and_voxels(image: Image) -> None:
    step = CropToForeground(margin_vox=1)
    out, record = step(image)
    assert np.prod(out.spatial_shape) < np.prod(SHAPE)
    (i0, _), (j0, _), (k0, _) = record.box
    assert np.allclose(out.voxel_to_world([0, 0, 0]), image.voxel_to_world([i0, j0, k0]), atol=1e-9)
    assert out.array.sum() == pytest.approx(image.array.sum())
    back = step.invert(out, record)
    assert_same_grid(back, image)
    assert np.array_equal(back.array, image.array)


def test_crop_margin_stays_inside_the_image(oblique_affine) -> None:
    array = np.zeros(SHAPE, np.float32)
    array[0, 10, 29] = 1.0
    out, record = CropToForeground(margin_vox=3)(Image(array, oblique_affine()))
    assert record.box == ((0, 4), (7, 14), (26, 30))
    assert out.spatial_shape == (4, 7, 4)


def test_crop_of_several_images_cuts_one_box_around_all_their_foreground(image: Image, labels: LabelMap) -> None:
    results = CropToForeground().apply_all({"t1": image, "mask": labels})
    (t1, t1_record), (mask, mask_record) = results["t1"], results["mask"]
    assert t1_record.box == mask_record.box
    assert_same_grid(t1, mask)
    assert int((mask.array > 0).sum()) == int((labels.array > 0).sum())


def test_crop_by_a_reference_input_uses_only_its_foreground(image: Image, labels: LabelMap) -> None:
    step = CropToForeground(reference="mask")
    results = step.apply_all({"t1": image, "mask": labels})
    assert results["t1"][1].box == step.foreground_box(labels)


def test_pad_then_inverse_restores_grid_and_voxels(noise_image: Image) -> None:
    step = Pad((16, 21, 24), fill_value=-5)
    out, record = step(noise_image)
    assert out.spatial_shape == (16, 21, 30)  # the longer k axis is kept
    assert record.box == ((-3, 13), (0, 21), (0, 30))
    assert np.array_equal(out.array[3:13, 0:20], noise_image.array)
    assert np.all(out.array[:3] == -5) and np.all(out.array[:, 20] == -5)
    assert np.allclose(out.voxel_to_world([3, 0, 0]), noise_image.voxel_to_world([0, 0, 0]), atol=1e-9)
    back = step.invert(out, record)
    assert_same_grid(back, noise_image)
    assert np.array_equal(back.array, noise_image.array)


def test_pad_fills_label_maps_with_background(labels: LabelMap) -> None:
    out = Pad((14, 20, 30), fill_value=9).apply(labels)
    assert set(np.unique(out.array)) == {0, 2, 5, 7}


# --- a chain of all of them -------------------------------------------------------------------
def test_chain_of_every_spatial_step_then_inverse_restores_each_input_grid(image: Image, labels: LabelMap) -> None:
    chain = Chain([Reorient("PIR"), Resample(0.7), CropToForeground(margin_vox=2), Pad((48, 48, 48))])
    outputs, record = chain.run({"t1": image, "mask": labels})
    assert outputs["t1"].orientation == "PIR"
    assert outputs["t1"].spatial_shape[0] >= 48 and outputs["mask"].spatial_shape == outputs["t1"].spatial_shape
    for name, source in (("t1", image), ("mask", labels)):
        back = chain.invert(outputs[name], record, name)
        assert_same_grid(back, source)
        assert type(back) is type(source)
    mask_back = chain.invert(outputs["mask"], record, "mask")
    assert np.mean(mask_back.array == labels.array) > 0.97
    assert [step for step, _ in record.for_input("mask")] == ["reorient", "resample", "crop_to_foreground", "pad"]
    assert Grid.of(chain.invert(outputs["t1"], record, "t1")).matches(Grid.of(image), atol_mm=1e-6)


@pytest.mark.realdata
def test_real_head_reorient_resample_crop_and_inverse_gives_back_the_input_grid(shared_data) -> None:
    head = read_image(shared_data("brain", "nichart", "t1", "Subj1_T1.nii.gz"))
    brain = read_image(shared_data("brain", "nichart", "dlmuse_seg", "Subj1_T1_DLMUSE.nii.gz")).as_label_map()
    chain = Chain([Reorient("RAS"), Resample(1.5), CropToForeground(margin_vox=2, reference="brain")])
    outputs, record = chain.run({"t1": head, "brain": brain})
    out = outputs["t1"]
    assert head.orientation == "LPS" and out.orientation == "RAS"
    assert out.spacing == pytest.approx((1.5, 1.5, 1.5))
    assert np.prod(out.spatial_shape) < 0.6 * np.prod(Resample(1.5).target_grid(head).spatial_shape)  # cropped to the brain
    for name, source in (("t1", head), ("brain", brain)):
        back = chain.invert(outputs[name], record, name)
        assert_same_grid(back, source)
    back = chain.invert(out, record, "t1")
    inside = brain.array > 0
    correlation = np.corrcoef(back.array[inside].astype(np.float64), head.array[inside].astype(np.float64))[0, 1]
    assert correlation > 0.95
    brain_back = chain.invert(outputs["brain"], record, "brain")
    assert np.mean(brain_back.array[inside] == brain.array[inside]) > 0.99


# --- SimpleITK without transposed copies ---------------------------------------------------------
def resample_through_to_sitk(image: Image, grid: Grid, mode: str) -> np.ndarray:
    """The reference: ``Image.to_sitk`` (voxels transposed so SimpleITK's x is i), filter, transpose back."""
    import SimpleITK as sitk
    from medpipes.core.image import LPS_TO_RAS
    from medpipes.core.processing.spatial import INTERPOLATORS

    lps = LPS_TO_RAS @ grid.affine
    spacing = np.array(grid.spacing)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(list(grid.spatial_shape))
    resampler.SetOutputSpacing(spacing.tolist())
    resampler.SetOutputOrigin(lps[:3, 3].tolist())
    resampler.SetOutputDirection((lps[:3, :3] / spacing).flatten().tolist())
    resampler.SetInterpolator(INTERPOLATORS[mode])
    array = image.array if mode == "nearest" else image.array.astype(np.float32)
    return sitk.GetArrayFromImage(resampler.Execute(Image(array, image.affine).to_sitk())).transpose(2, 1, 0)


@pytest.fixture
def other_oblique_grid(oblique_affine) -> Grid:
    """A target rotated against the input and anisotropic the other way, so no axis lines up."""
    affine = oblique_affine(spacing=(0.8, 1.3, 0.6), origin=(-12.0, 18.5, 3.0))
    tilt = np.deg2rad(11.0)
    ry = np.array([[np.cos(tilt), 0, np.sin(tilt)], [0, 1, 0], [-np.sin(tilt), 0, np.cos(tilt)]])
    affine[:3, :3] = ry @ affine[:3, :3]
    return Grid((13, 17, 41), affine)


def assert_equal_but_at_ties(out: np.ndarray, expected: np.ndarray, source: Image, grid: Grid) -> None:
    """Nearest-neighbour results agree except where a voxel centre falls halfway between two input voxels.

    There either neighbour is equally near and float rounding of the index (different with the
    axes in another order) picks one: such voxels must hold one of the tied neighbours' values.
    """
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in grid.spatial_shape], indexing="ij"), -1).reshape(-1, 3)
    index = source.world_to_voxel(ijk @ grid.affine[:3, :3].T + grid.affine[:3, 3]).reshape(grid.spatial_shape + (3,))
    tie = np.abs(np.abs(index - np.floor(index)) - 0.5) < 1e-6
    differ = out != expected
    assert not np.any(differ & ~tie.any(axis=-1))
    for voxel in np.argwhere(differ):
        low = np.floor(index[tuple(voxel)]).astype(int)
        choices = {
            source.array[tuple(np.clip(low + offset, 0, np.array(source.spatial_shape) - 1))]
            for offset in np.ndindex(2, 2, 2)
        }
        assert out[tuple(voxel)] in choices and expected[tuple(voxel)] in choices


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("mode", ["linear", "bspline", "nearest"])
def test_resample_without_transposed_copies_equals_the_to_sitk_path(
    noise_image: Image, order: str, mode: str, other_oblique_grid: Grid
) -> None:
    source = Image(np.asarray(noise_image.array, order=order), noise_image.affine)
    for grid in (Resample(0.7).target_grid(source), other_oblique_grid):
        out = resample_onto(source, grid, mode)
        expected = resample_through_to_sitk(source, grid, mode)
        assert out.dtype == expected.dtype and out.spatial_shape == grid.spatial_shape
        assert out.array.flags[f"{order}_CONTIGUOUS"]  # the input's memory order: no transposed copy was made
        if mode == "nearest":
            assert_equal_but_at_ties(out.array, expected, source, grid)
        else:
            assert np.abs(out.array.astype(np.float64) - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("order", ["C", "F"])
def test_resampled_labels_without_transposed_copies_equal_the_to_sitk_path(
    labels: LabelMap, order: str, other_oblique_grid: Grid
) -> None:
    source = LabelMap(np.asarray(labels.array, order=order), labels.affine)
    for grid in (Resample(0.7).target_grid(source), other_oblique_grid):
        out = resample_onto(source, grid, "bspline")  # labels are always resampled with nearest neighbour
        assert_equal_but_at_ties(out.array, resample_through_to_sitk(source, grid, "nearest"), source, grid)
        assert isinstance(out, LabelMap) and out.dtype == labels.dtype


@pytest.mark.parametrize("order", ["C", "F"])
def test_resample_of_a_4d_image_equals_the_to_sitk_path_volume_by_volume(
    image: Image, order: str, other_oblique_grid: Grid
) -> None:
    source = Image(np.asarray(np.stack([image.array, 100 - image.array], axis=-1), order=order), image.affine)
    grid = other_oblique_grid
    out = resample_onto(source, grid, "linear")
    for t in range(2):
        expected = resample_through_to_sitk(Image(source.array[..., t], source.affine), grid, "linear")
        assert np.abs(out.array[..., t] - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("dtype", [">i2", ">f4", "float16"])
def test_resample_takes_pixel_types_simpleitk_lacks(image: Image, dtype: str) -> None:
    source = Image(image.array.astype(dtype), image.affine)
    grid = Resample(0.7).target_grid(source)
    out = resample_onto(source, grid, "linear")
    expected = resample_through_to_sitk(Image(image.array.astype(dtype).astype(np.float32), image.affine), grid, "linear")
    assert out.dtype == np.float32 and np.abs(out.array - expected).max() <= 1e-5 * np.abs(expected).max()
