"""Label fusion across models: majority vote, STAPLE, mean of probabilities; one grid required."""

from __future__ import annotations

import numpy as np
import pytest

from medpipes.core.errors import GeometryError, InputError
from medpipes.core.image import Image, LabelMap
from medpipes.core.processing.fusion import fuse, majority_vote, mean_probabilities, staple

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def labels(values) -> LabelMap:
    return LabelMap(np.asarray(values, dtype=np.uint8).reshape(len(values), 1, 1), AFFINE)


def test_majority_vote_takes_the_most_common_label_and_ties_go_to_undecided():
    a, b, c = labels([0, 1, 2, 2, 1]), labels([0, 1, 2, 1, 2]), labels([1, 1, 0, 1, 0])
    assert majority_vote({"unet": a, "segresnet": b, "swin": c}).array.ravel().tolist() == [0, 1, 2, 1, 0]
    tie = majority_vote([labels([1, 2]), labels([2, 1])], undecided_label=9)
    assert tie.array.ravel().tolist() == [9, 9]
    assert majority_vote([labels([1, 2]), labels([2, 1])]).array.ravel().tolist() == [0, 0]


def test_staple_outweighs_a_poor_rater():
    rng = np.random.default_rng(0)
    truth = np.zeros((30, 30, 10), np.uint8)
    truth[8:22, 8:22, 2:8] = 1
    good = [np.where(rng.random(truth.shape) < 0.03, 1 - truth, truth) for _ in range(3)]
    poor = np.where(rng.random(truth.shape) < 0.45, 1 - truth, truth)
    inputs = [LabelMap(a, AFFINE) for a in [*good, poor]]
    fused = staple(inputs)
    assert fused.is_label and np.mean(fused.array == truth) > 0.995
    assert np.mean(majority_vote(inputs).array == truth) < np.mean(fused.array == truth)


def test_mean_of_probabilities_is_weighted_and_float32():
    p = Image(np.full((2, 2, 2, 3), 0.2, np.float32), AFFINE)
    q = Image(np.full((2, 2, 2, 3), 0.8, np.float32), AFFINE)
    assert np.allclose(mean_probabilities([p, q]).array, 0.5)
    weighted = mean_probabilities({"a": p, "b": q}, weights=[3, 1])
    assert weighted.dtype == np.float32 and np.allclose(weighted.array, 0.35)
    with pytest.raises(InputError, match="2 non-negative numbers"):
        mean_probabilities([p, q], weights=[1])


def test_inputs_on_different_grids_name_both_grids():
    moved = AFFINE.copy()
    moved[:3, 3] = (0.0, 0.0, 5.0)
    with pytest.raises(GeometryError) as err:
        majority_vote({"unet": labels([0, 1]), "swin": LabelMap(np.zeros((2, 1, 1), np.uint8), moved)})
    message = str(err.value)
    assert "'unet'" in message and "'swin'" in message and "origin (0, 0, 5)" in message and "origin (0, 0, 0)" in message
    with pytest.raises(GeometryError, match="different grids"):
        mean_probabilities([Image(np.zeros((2, 1, 1)), AFFINE), Image(np.zeros((3, 1, 1)), AFFINE)])


def test_kind_and_value_errors_are_clear():
    with pytest.raises(InputError, match="input 'model 1' is an intensity Image"):
        majority_vote([labels([0, 1]), Image(np.zeros((2, 1, 1), np.float32), AFFINE)])
    with pytest.raises(InputError, match="input 'model 0' is a LabelMap; average probabilities"):
        mean_probabilities([labels([0, 1]), labels([1, 1])])
    with pytest.raises(InputError, match="at least two"):
        staple([labels([0, 1])])
    nan = np.zeros((2, 1, 1), np.float32)
    nan[0] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        mean_probabilities([Image(nan, AFFINE), Image(np.zeros((2, 1, 1), np.float32), AFFINE)])
    with pytest.raises(InputError, match="unknown method 'vote'; use one of majority, staple, mean"):
        fuse([labels([0]), labels([1])], "vote")
    assert fuse([labels([1, 0]), labels([1, 1]), labels([1, 0])], "majority").array.ravel().tolist() == [1, 0]


@pytest.mark.parametrize("orders", ["CCC", "FFF", "CFC", "FCF"])
def test_fused_labels_stay_at_their_voxels_whatever_the_inputs_memory_order(orders):
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 4, size=(6, 7, 8)).astype(np.uint8)
    noise = rng.integers(0, 4, size=truth.shape).astype(np.uint8)
    inputs = [LabelMap(np.asarray(a, order=o), AFFINE) for a, o in zip((truth, noise, truth), orders)]
    assert np.array_equal(majority_vote(inputs).array, truth)
    assert np.array_equal(staple([inputs[0], inputs[2]]).array, truth)
