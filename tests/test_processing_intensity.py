"""Intensity steps: z-score, clip, threshold, rescale, CT window, histogram standardisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medpipes.core.errors import GeometryError, InputError, ProcessingError
from medpipes.core.image import Image, LabelMap
from medpipes.core.io import read_image, write_image
from medpipes.core.processing import Chain
from medpipes.core.processing.intensity import (
    Clip,
    CTWindow,
    HistogramLandmarks,
    HistogramStandardisation,
    Rescale,
    Threshold,
    ZScore,
    landmark_percentiles,
    train_histogram_landmarks,
)


@pytest.fixture
def affine(oblique_affine) -> np.ndarray:
    """An oblique voxel-to-RAS affine (rotated about two axes), anisotropic spacing."""
    return oblique_affine(origin=(-5.0, 12.0, 30.0), degrees=(20.0, -10.0))


@pytest.fixture
def mr(affine) -> Image:
    """A (10, 20, 30) image at (1, 1, 2) mm: a bright block with noise inside zero background."""
    rng = np.random.default_rng(0)
    array = np.zeros((10, 20, 30), dtype=np.int16)
    array[2:8, 4:16, 5:25] = rng.normal(500, 50, size=(6, 12, 20)).astype(np.int16)
    return Image(array, affine)


def test_zscore_whole_image_has_mean_0_std_1_and_keeps_grid(mr):
    out = ZScore().apply(mr)
    assert out.dtype == np.float32
    assert abs(float(out.array.mean())) < 1e-5 and abs(float(out.array.std()) - 1) < 1e-5
    assert out.spatial_shape == mr.spatial_shape and np.array_equal(out.affine, mr.affine)
    assert mr.dtype == np.int16 and mr.array.max() > 100  # the input is untouched


def test_zscore_nonzero_uses_only_foreground_and_keeps_background(mr):
    out = ZScore("nonzero").apply(mr).array
    inside = mr.array != 0
    assert abs(out[inside].mean()) < 1e-5 and abs(out[inside].std() - 1) < 1e-4
    assert np.all(out[~inside] == 0)


def test_zscore_with_mask_image_uses_the_mask_statistics(mr):
    mask = np.zeros(mr.spatial_shape, dtype=np.uint8)
    mask[2:5, 4:16, 5:25] = 1
    out = ZScore(LabelMap(mask, mr.affine)).apply(mr).array
    assert abs(out[mask > 0].mean()) < 1e-5 and abs(out[mask > 0].std() - 1) < 1e-4
    assert np.array_equal(out[mask == 0], mr.array[mask == 0])  # outside='keep'
    zeroed = ZScore(LabelMap(mask, mr.affine), outside="zero").apply(mr).array
    assert np.all(zeroed[mask == 0] == 0)


def test_zscore_mask_from_a_file_path(mr, tmp_path):
    mask = np.zeros(mr.spatial_shape, dtype=np.uint8)
    mask[2:8, 4:16, 5:25] = 1
    path = write_image(LabelMap(mask, mr.affine), tmp_path / "mask.nii.gz")
    out = ZScore(str(path)).apply(mr).array
    assert abs(out[mask > 0].std() - 1) < 1e-4


def test_zscore_mask_on_another_grid_names_both_grids(mr):
    other = np.eye(4)
    other[:3, :3] = np.diag([1.0, 1.0, 2.0])
    with pytest.raises(GeometryError) as err:
        ZScore(LabelMap(np.ones(mr.spatial_shape, np.uint8), other)).apply(mr)
    message = str(err.value)
    assert "'image'" in message and "'mask'" in message and message.count("shape (10, 20, 30)") == 2
    assert "orientation" in message and "resample" in message


def test_zscore_of_a_constant_image_is_a_clear_error(mr):
    with pytest.raises(ProcessingError, match="std 0"):
        ZScore().apply(mr.with_array(np.full(mr.spatial_shape, 7.0)))


def test_zscore_unknown_region_names_the_valid_ones():
    with pytest.raises(InputError, match="'image' nor 'nonzero'"):
        ZScore("brain")


def test_4d_image_is_normalised_per_volume(mr):
    stacked = Image(np.stack([mr.array, mr.array * 3 + 100], axis=-1), mr.affine)
    out = ZScore().apply(stacked).array
    for t in range(2):
        assert abs(out[..., t].mean()) < 1e-5 and abs(out[..., t].std() - 1) < 1e-5


def test_clip_values_and_percentiles(mr):
    clipped = Clip(0, 450).apply(mr).array
    assert clipped.min() == 0 and clipped.max() == 450
    by_percentile = Clip(1, 99, percentiles=True).apply(mr).array
    assert by_percentile.max() == pytest.approx(np.percentile(mr.array, 99))
    with pytest.raises(InputError, match="give low=, high= or both"):
        Clip()
    with pytest.raises(InputError, match="percentiles must lie in 0..100"):
        Clip(-1, 99, percentiles=True)


def test_threshold_keeps_above_and_fills_below(mr):
    out = Threshold(480, fill_value=-1).apply(mr).array
    assert np.all(out[mr.array < 480] == -1) and np.array_equal(out[mr.array >= 480], mr.array[mr.array >= 480])
    below = Threshold(480, keep="below").apply(mr).array
    assert np.all(below[mr.array > 480] == 0)


def test_rescale_maps_min_max_onto_range_and_clips_robust_range(mr):
    out = Rescale(-1, 1).apply(mr).array
    assert out.min() == pytest.approx(-1) and out.max() == pytest.approx(1)
    robust = Rescale(0, 1, in_low=0.5, in_high=99.5, percentiles=True).apply(mr).array
    assert robust.min() == 0 and robust.max() == 1
    fixed = Rescale(0, 10, in_low=0, in_high=1000).apply(mr).array
    assert fixed[mr.array == 500].max() == pytest.approx(5)


def test_ct_window_maps_level_and_width_onto_0_1():
    hu = np.array([-1000, 0, 40, 80, 3000], dtype=np.int16).reshape(5, 1, 1)
    ct = Image(hu, np.eye(4))
    out = CTWindow(40, 80).apply(ct).array.ravel()
    assert out.tolist() == pytest.approx([0, 0, 0.5, 1, 1])
    assert CTWindow("brain").apply(ct).array.ravel().tolist() == pytest.approx(out.tolist())
    bone = CTWindow("bone", out_min=-1, out_max=1).apply(ct).array.ravel()
    assert bone[1] == pytest.approx(-1 + 2 * (0 - (400 - 900)) / 1800)
    with pytest.raises(InputError, match="unknown window preset 'lungs'"):
        CTWindow("lungs")


@pytest.mark.parametrize(
    "step",
    [ZScore(), Clip(0, 1), Threshold(0), Rescale(), CTWindow("brain")],
    ids=lambda s: type(s).__name__,
)
def test_intensity_step_refuses_a_label_map_given_explicitly(step):
    labels = LabelMap(np.ones((4, 4, 4), np.uint8), np.eye(4))
    with pytest.raises(InputError, match="LabelMap.*never applies to labels"):
        step.apply(labels)


def test_intensity_steps_skip_label_maps_in_a_chain(mr):
    labels = LabelMap((mr.array > 0).astype(np.uint8), mr.affine)
    out, record = Chain([ZScore(), Clip(-2, 2)]).run({"t1": mr, "seg": labels})
    assert out["seg"] is labels
    assert [list(r) for _, r in record.steps] == [["t1"], ["t1"]]
    with pytest.raises(InputError, match="input 'seg'.*LabelMap"):
        Chain([ZScore(on=["t1", "seg"])]).run({"t1": mr, "seg": labels})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_input_is_refused(mr, bad):
    array = mr.array.astype(np.float32)
    array[3, 3, 3] = bad
    with pytest.raises(InputError, match="1 NaN or infinite voxel"):
        ZScore().apply(mr.with_array(array))


# --- histogram standardisation ---------------------------------------------------------------
def _images(n: int, affine: np.ndarray) -> list[Image]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        scale, shift = 1 + 0.5 * i, 20 * i
        out.append(Image(rng.gamma(2 + i, 50, size=(12, 14, 16)) * scale + shift, affine))
    return out


def test_trained_landmarks_span_the_standard_range_and_save_load_round_trips(tmp_path, affine):
    landmarks = train_histogram_landmarks(_images(3, affine))
    assert landmarks.percentiles == tuple(landmark_percentiles())
    assert landmarks.percentiles == (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)
    assert landmarks.values[0] == pytest.approx(0, abs=1e-9) and landmarks.values[-1] == pytest.approx(100)
    path = landmarks.save(tmp_path / "t1_landmarks.json")
    assert json.loads(path.read_text())["n_images"] == 3
    assert HistogramLandmarks.load(path) == landmarks


def test_standardised_image_lands_its_percentiles_on_the_landmarks(affine):
    images = _images(3, affine)
    landmarks = train_histogram_landmarks(images)
    out = HistogramStandardisation(landmarks).apply(images[1]).array
    assert np.percentile(out, landmarks.percentiles) == pytest.approx(landmarks.values, abs=1e-3)


def test_a_linear_rescaling_of_an_image_standardises_to_the_same_result(affine):
    images = _images(3, affine)
    step = HistogramStandardisation(train_histogram_landmarks(images))
    a = step.apply(images[0]).array
    b = step.apply(images[0].with_array(images[0].array * 3.0 + 40)).array
    assert np.allclose(a, b, atol=1e-3)


def test_landmarks_file_errors_name_the_file_and_fix(tmp_path):
    with pytest.raises(InputError, match="landmarks file not found"):
        HistogramStandardisation(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}')
    with pytest.raises(InputError, match="bad.json: not a medpipes landmarks file"):
        HistogramLandmarks.load(bad)


def test_histogram_training_refuses_label_maps_and_mismatched_masks(affine):
    images = _images(2, affine)
    with pytest.raises(InputError, match="LabelMap"):
        train_histogram_landmarks([LabelMap(np.ones((3, 3, 3), np.uint8), np.eye(4))])
    with pytest.raises(InputError, match="2 images but 1 masks"):
        train_histogram_landmarks(images, masks=[images[0]])


@pytest.mark.realdata
def test_histogram_standardisation_matches_torchio_on_real_heads(shared_data):
    tio = pytest.importorskip("torchio")
    folder = shared_data("brain", "nichart", "t1")
    paths = [str(folder / f"Subj{i}_T1.nii.gz") for i in (1, 2, 3)]
    ours = train_histogram_landmarks(paths, masks=paths)
    theirs = tio.HistogramStandardization.train(paths, masking_function=lambda a: a > 0, progress=False)
    kept = [0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12]  # TorchIO also trains the quartiles, then drops them
    assert np.allclose(ours.values, theirs[kept], atol=1e-4)
    target = str(folder / "Subj4_T1.nii.gz")
    standardised = HistogramStandardisation(ours, region="nonzero").apply(read_image(target)).array
    subject = tio.Subject(t1=tio.ScalarImage(target))
    reference = tio.HistogramStandardization({"t1": theirs}, masking_method=lambda a: a > 0)(subject)["t1"].data[0].numpy()
    assert np.abs(standardised - reference).max() < 1e-3
