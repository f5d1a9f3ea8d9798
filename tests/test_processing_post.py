"""Postprocessors: labels from probabilities, components and holes measured in world units."""

from __future__ import annotations

import numpy as np
import pytest

from medpipes.core import Image, LabelMap
from medpipes.core.errors import InputError
from medpipes.core.processing import (
    Argmax,
    Binarise,
    Chain,
    FillHoles,
    KeepLargestComponent,
    OneHot,
    RemoveIslands,
)


def labels_on(array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> LabelMap:
    return LabelMap(array.astype(np.uint8), np.diag(list(spacing) + [1.0]))


def two_cubes() -> np.ndarray:
    """Label 1: a 4x4x4 cube (64 voxels) and a 2x2x2 cube (8 voxels) apart from it."""
    array = np.zeros((16, 16, 16), np.uint8)
    array[2:6, 2:6, 2:6] = 1
    array[10:12, 10:12, 10:12] = 1
    return array


# --- islands: mm3, not voxels -----------------------------------------------------------------
def test_remove_islands_threshold_is_in_mm3_so_the_same_voxels_differ_by_spacing() -> None:
    step = RemoveIslands(min_volume_mm3=20.0)
    fine = step.apply(labels_on(two_cubes(), spacing=(1.0, 1.0, 1.0)))  # small cube: 8 mm3 -> removed
    coarse = step.apply(labels_on(two_cubes(), spacing=(1.0, 1.0, 3.0)))  # small cube: 24 mm3 -> kept
    assert fine.array.sum() == 64
    assert coarse.array.sum() == 72


def test_remove_islands_keeps_components_of_exactly_the_threshold_and_works_per_label() -> None:
    array = two_cubes()
    array[10:12, 2:4, 2:4] = 2  # 8 voxels of label 2, touching nothing else
    out = RemoveIslands(min_volume_mm3=8.0).apply(labels_on(array))
    assert np.array_equal(out.array, array)
    out = RemoveIslands(min_volume_mm3=8.5).apply(labels_on(array))
    assert set(np.unique(out.array)) == {0, 1} and out.array.sum() == 64


def test_remove_islands_counts_diagonal_neighbours_only_when_fully_connected() -> None:
    array = np.zeros((8, 8, 8), np.uint8)
    array[1, 1, 1] = array[2, 2, 2] = array[3, 3, 3] = 1  # a diagonal line: 3 islands of 1 mm3, or one of 3 mm3
    assert RemoveIslands(2.0).apply(labels_on(array)).array.sum() == 0
    assert RemoveIslands(2.0, fully_connected=True).apply(labels_on(array)).array.sum() == 3


# --- holes: 3D vs slice-wise ------------------------------------------------------------------
def open_tube_and_closed_shell() -> np.ndarray:
    """An open-ended square tube along k (x < 10) and a closed hollow box (x >= 12)."""
    array = np.zeros((24, 12, 12), np.uint8)
    array[1:9, 1:9, :] = 1
    array[3:7, 3:7, :] = 0  # the tube's bore runs through every k slice: open at both ends
    array[13:21, 1:9, 1:9] = 1
    array[15:19, 3:7, 3:7] = 0  # a sealed cavity
    return array


def test_fill_holes_3d_fills_a_sealed_cavity_but_not_an_open_tube() -> None:
    array = open_tube_and_closed_shell()
    out = FillHoles(mode="3d").apply(labels_on(array)).array
    assert np.all(out[15:19, 3:7, 3:7] == 1)
    assert np.all(out[3:7, 3:7, :] == 0)


def test_fill_holes_slice_wise_also_fills_the_tube_bore() -> None:
    array = open_tube_and_closed_shell()
    out = FillHoles(mode="slice", axis=2).apply(labels_on(array)).array
    assert np.all(out[15:19, 3:7, 3:7] == 1)
    assert np.all(out[3:7, 3:7, :] == 1)


def test_fill_holes_slice_axis_defaults_to_the_coarsest_spacing() -> None:
    array = open_tube_and_closed_shell()
    along_k = FillHoles(mode="slice").apply(labels_on(array, spacing=(0.5, 0.5, 3.0))).array
    along_i = FillHoles(mode="slice").apply(labels_on(array, spacing=(3.0, 0.5, 0.5))).array
    assert np.all(along_k[3:7, 3:7, :] == 1)
    assert np.all(along_i[3:7, 3:7, :] == 0)  # slices across i see a tube wall, not a ring


def test_fill_holes_never_overwrites_another_label() -> None:
    array = open_tube_and_closed_shell()
    array[16, 4, 4] = 2  # a voxel of label 2 inside the sealed cavity
    out = FillHoles().apply(labels_on(array)).array
    assert out[16, 4, 4] == 2
    assert np.sum(out[15:19, 3:7, 3:7] == 1) == 4 * 4 * 4 - 1


# --- components -------------------------------------------------------------------------------
def test_keep_largest_component_keeps_the_biggest_piece_of_each_label() -> None:
    array = two_cubes()
    array[10:13, 2:5, 2:5] = 2  # 27 voxels of label 2
    array[2, 12, 12] = 2  # and a stray voxel of label 2
    out = KeepLargestComponent().apply(labels_on(array)).array
    assert np.sum(out == 1) == 64 and np.sum(out == 2) == 27
    assert out[10, 10, 10] == 0 and out[2, 12, 12] == 0


def test_keep_largest_component_of_the_whole_foreground_keeps_its_labels() -> None:
    array = two_cubes()
    array[2:6, 2:6, 2] = 3  # one face of the big cube is label 3: same foreground component
    out = KeepLargestComponent(per_label=False).apply(labels_on(array)).array
    assert np.sum(out == 3) == 16 and np.sum(out == 1) == 48
    assert out[10, 10, 10] == 0


# --- probabilities to labels ------------------------------------------------------------------
def test_binarise_marks_voxels_strictly_above_the_threshold() -> None:
    probs = Image(np.array([0.2, 0.5, 0.51, 0.9], np.float32).reshape(1, 2, 2), np.eye(4))
    out = Binarise(0.5).apply(probs)
    assert isinstance(out, LabelMap)
    assert out.array.ravel().tolist() == [0, 0, 1, 1]


def test_argmax_picks_the_best_class_and_maps_it_to_its_label_value() -> None:
    scores = np.zeros((2, 2, 1, 3), np.float32)
    scores[0, 0, 0] = [0.7, 0.2, 0.1]
    scores[0, 1, 0] = [0.1, 0.8, 0.1]
    scores[1, 0, 0] = [0.2, 0.2, 0.6]
    scores[1, 1, 0] = [0.3, 0.6, 0.1]
    image = Image(scores, np.diag([0.5, 0.5, 2.0, 1.0]))
    out = Argmax().apply(image)
    assert out.shape == (2, 2, 1) and np.allclose(out.affine, image.affine)
    assert out.array[..., 0].tolist() == [[0, 1], [2, 1]]
    assert Argmax(labels=[0, 4, 9]).apply(image).array[..., 0].tolist() == [[0, 4], [9, 4]]


def test_one_hot_then_argmax_gives_back_the_labels() -> None:
    array = np.random.default_rng(3).integers(0, 4, size=(5, 6, 7))
    labels = labels_on(array)
    onehot = OneHot(num_classes=5).apply(labels)
    assert onehot.shape == (5, 6, 7, 5) and onehot.array.sum() == array.size
    assert np.array_equal(Argmax().apply(Image(onehot.array.astype(np.float32), onehot.affine)).array, array)


def test_postprocessors_chain_from_probabilities_to_a_clean_mask() -> None:
    probs = np.zeros((16, 16, 16), np.float32)
    probs[two_cubes() > 0] = 0.9
    probs[3:5, 3:5, 3:5] = 0.1  # a hole inside the big cube
    chain = Chain([Binarise(0.5), FillHoles(), KeepLargestComponent()])
    outputs, _ = chain.run({"prediction": Image(probs, np.eye(4))})
    assert np.array_equal(outputs["prediction"].array, _big_cube())


def _big_cube() -> np.ndarray:
    array = np.zeros((16, 16, 16), bool)
    array[2:6, 2:6, 2:6] = True
    return array


# --- refusals ---------------------------------------------------------------------------------
@pytest.mark.parametrize("step", [KeepLargestComponent(), RemoveIslands(1.0), FillHoles()])
def test_component_steps_refuse_4d_label_maps(step) -> None:
    with pytest.raises(InputError, match="3D label map"):
        step.apply(LabelMap(np.zeros((4, 4, 4, 2), np.uint8), np.eye(4)))


def test_argmax_refuses_a_3d_image_and_a_wrong_number_of_labels() -> None:
    with pytest.raises(InputError, match="4D image of class scores"):
        Argmax().apply(Image(np.zeros((4, 4, 4), np.float32), np.eye(4)))
    with pytest.raises(InputError, match="one label per class"):
        Argmax(labels=[1, 2]).apply(Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)))


def test_one_hot_refuses_labels_beyond_num_classes() -> None:
    with pytest.raises(InputError, match="num_classes"):
        OneHot(num_classes=2).apply(labels_on(np.full((2, 2, 2), 3)))


@pytest.mark.parametrize("step", [KeepLargestComponent(), RemoveIslands(1.0), FillHoles(), OneHot()])
def test_label_steps_refuse_intensity_images(step) -> None:
    with pytest.raises(InputError, match="needs a LabelMap"):
        step.apply(Image(np.zeros((4, 4, 4), np.float32), np.eye(4)))


# --- undo spatial steps ------------------------------------------------------------------------
def oblique(spacing=(1.0, 1.0, 2.0)) -> np.ndarray:
    a = np.deg2rad(17.0)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag(spacing)
    affine[:3, 3] = (-10.0, 20.0, 5.5)
    return affine


def test_undo_spatial_brings_a_prediction_made_on_preprocessed_files_back_onto_the_input_grid(tmp_path) -> None:
    from medpipes.core import read_image, write_image
    from medpipes.core.processing import CropToForeground, Pad, Reorient, Resample, UndoSpatial

    truth = np.zeros((10, 20, 30), np.uint8)
    truth[2:8, 4:16, 5:25] = 1
    t1 = Image(truth * 100.0 + 10.0, oblique())
    source = write_image(t1, tmp_path / "t1.nii.gz")
    chain = Chain([Reorient("LPS"), Resample(0.7), CropToForeground(margin_vox=2, threshold=50), Pad((40, 40, 40))])
    written, record = chain.run_files([source], tmp_path / "pre")
    record_path = record.save(tmp_path / "record.json")
    preprocessed = read_image(written["t1"])
    probabilities = Image(preprocessed.array / 110.0, preprocessed.affine)  # the "model": bright means foreground
    post = Chain([Binarise(0.5), UndoSpatial(chain, record_path, "t1"), KeepLargestComponent()])
    outputs, _ = post.run({"t1": probabilities})
    back = outputs["t1"]
    assert isinstance(back, LabelMap)
    assert back.spatial_shape == t1.spatial_shape and np.allclose(back.affine, t1.affine, atol=1e-5)
    assert np.mean(back.array == truth) > 0.97
    probabilities_back = UndoSpatial(chain, record, "t1").apply(probabilities)
    assert probabilities_back.dtype.kind == "f" and probabilities_back.spatial_shape == t1.spatial_shape


def test_undo_spatial_refuses_an_unknown_input_or_another_chain(tmp_path) -> None:
    from medpipes.core.processing import Reorient, Resample, UndoSpatial

    chain = Chain([Reorient("LPS"), Resample(0.7)])
    _, record = chain.run({"t1": Image(np.ones((4, 5, 6), np.float32), oblique())})
    with pytest.raises(InputError, match="no input named 'flair' in the record; use one of \\['t1'\\]"):
        UndoSpatial(chain, record, "flair")
    with pytest.raises(InputError, match="not the chain's \\['resample'\\]; pass the chain that made the record"):
        UndoSpatial([Resample(0.7)], record.to_dict(), "t1")
