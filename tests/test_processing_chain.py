"""Chains: each step on the inputs it is meant for, undone in reverse, on files; bad input refused clearly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medpipes.core import Image, LabelMap, read_image, write_image
from medpipes.core.errors import GeometryError, InputError, ProcessingError
from medpipes.core.processing import (
    Binarise,
    Chain,
    ChainRecord,
    CropToForeground,
    Grid,
    Pad,
    Reorient,
    Resample,
)

SHAPE = (10, 20, 30)


@pytest.fixture
def case(oblique_affine) -> dict[str, Image]:
    rng = np.random.default_rng(7)
    t1 = np.zeros(SHAPE, np.float32)
    t1[2:8, 4:16, 5:25] = rng.random((6, 12, 20)).astype(np.float32) + 0.5
    mask = np.zeros(SHAPE, np.uint8)
    mask[3:7, 6:14, 8:20] = 1
    return {
        "t1": Image(t1, oblique_affine()),
        "flair": Image(t1 * 2, oblique_affine()),
        "mask": LabelMap(mask, oblique_affine()),
    }


# --- which inputs a step touches --------------------------------------------------------------
def test_a_step_configured_on_named_inputs_never_touches_the_others(case) -> None:
    chain = Chain([Resample(0.7, on=["t1", "flair"])])
    outputs, record = chain.run(case)
    assert outputs["t1"].spacing == pytest.approx((0.7,) * 3) and outputs["flair"].spacing == pytest.approx((0.7,) * 3)
    assert outputs["mask"] is case["mask"]
    assert set(record.steps[0][1]) == {"t1", "flair"}


def test_only_overrides_the_inputs_a_step_is_configured_on(case) -> None:
    chain = Chain([Resample(0.7, on=["t1", "flair"])])
    outputs, _ = chain.run(case, only={"resample": ["mask"]})
    assert outputs["mask"].spacing == pytest.approx((0.7,) * 3)
    assert outputs["t1"] is case["t1"]


def test_an_intensity_step_skips_label_maps_unless_they_are_named(case) -> None:
    outputs, record = Chain([Binarise(0.9)]).run(case)
    assert outputs["mask"] is case["mask"]
    assert isinstance(outputs["t1"], LabelMap)
    assert set(record.steps[0][1]) == {"t1", "flair"}


def test_a_label_map_named_for_an_intensity_step_is_refused_naming_it(case) -> None:
    with pytest.raises(InputError, match=r"input 'mask': binarise: got a LabelMap.*on=\[\.\.\.\]"):
        Chain([Binarise(0.5, on=["t1", "mask"])]).run(case)
    with pytest.raises(InputError, match="got a LabelMap"):
        Binarise(0.5)(case["mask"])


def test_unknown_inputs_or_steps_are_refused(case) -> None:
    with pytest.raises(InputError, match=r"resample: set to run on \['pd'\].*not among the inputs"):
        Chain([Resample(0.7, on=["t1", "pd"])]).run(case)
    with pytest.raises(InputError, match=r"only= names step\(s\) \['n4'\]"):
        Chain([Resample(0.7)]).run(case, only={"n4": ["t1"]})
    with pytest.raises(InputError, match="two steps are named 'resample'"):
        Chain([Resample(0.7), Resample(1.0)])
    Chain([Resample(0.7), Resample(1.0, name="resample_again")])


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_voxels_are_refused_naming_the_input(case, bad) -> None:
    t1 = case["t1"].array.copy()
    t1[1, 2, 3] = bad
    with pytest.raises(InputError, match=r"input 't1': reorient: input has 1 NaN or infinite voxel\(s\); replace"):
        Chain([Reorient("LPS")]).run({**case, "t1": Image(t1, case["t1"].affine)})


def test_images_on_different_grids_given_to_a_one_grid_step_name_both_grids(case) -> None:
    flair = Resample(spacing=(1.0, 1.0, 1.5)).apply(case["flair"])
    flair = Reorient("LPS").apply(flair)
    with pytest.raises(GeometryError) as caught:
        Chain([CropToForeground()]).run({"t1": case["t1"], "flair": flair})
    message = str(caught.value)
    assert "\n" not in message
    for fragment in ("'t1'", "'flair'", "shape (10, 20, 30)", "spacing (1, 1, 2) mm", "orientation RAS",
                     f"shape {flair.spatial_shape}", "spacing (1, 1, 1.5) mm", "orientation LPS", "co-register"):
        assert fragment in message


def test_crop_of_an_empty_image_says_what_to_change(oblique_affine) -> None:
    with pytest.raises(ProcessingError, match="no voxel above 0.*lower threshold="):
        CropToForeground()(Image(np.zeros(SHAPE, np.float32), oblique_affine()))


def test_inverting_an_image_on_another_grid_is_refused_naming_both(case) -> None:
    step = Resample(0.7)
    _, record = step(case["t1"])
    with pytest.raises(GeometryError, match=r"cannot invert an image on shape \(10, 20, 30\).*produced shape \(14, 29, 86\)"):
        step.invert(case["t1"], record)


def test_inverting_with_another_steps_record_is_refused(case) -> None:
    _, record = Reorient("LPS")(case["t1"])
    with pytest.raises(InputError, match="made by step 'reorient'"):
        Pad((12, 20, 30)).invert(case["t1"], record)


# --- undoing a chain --------------------------------------------------------------------------
def test_chain_invert_brings_a_prediction_back_onto_the_input_grid(case) -> None:
    chain = Chain([Reorient("LPS"), Resample(0.7), Binarise(0.9, on="t1"), CropToForeground(margin_vox=1), Pad((40, 40, 40))])
    outputs, record = chain.run(case)
    prediction = LabelMap((outputs["flair"].array > 1.0).astype(np.uint8), outputs["flair"].affine)
    back = chain.invert(prediction, record, "t1")
    assert isinstance(back, LabelMap)
    assert Grid.of(back).matches(Grid.of(case["t1"]), atol_mm=1e-6)
    assert np.mean(back.array == (case["flair"].array > 1.0)) > 0.97


def test_chain_invert_of_an_input_no_spatial_step_touched_gives_the_image_back(case) -> None:
    chain = Chain([Resample(0.7, on="t1")])
    outputs, record = chain.run(case)
    assert record.for_input("mask") == []
    assert chain.invert(outputs["mask"], record, "mask") is case["mask"]


def test_chain_record_survives_json_and_still_inverts(case) -> None:
    chain = Chain([Reorient("PIR"), Resample(shape=(12, 12, 12)), CropToForeground(), Pad((16, 16, 16))])
    outputs, record = chain.run(case)
    loaded = ChainRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    back = chain.invert(outputs["mask"], loaded, "mask")
    assert back.spatial_shape == SHAPE and np.allclose(back.affine, case["mask"].affine, atol=1e-6)


def test_chain_invert_refuses_unknown_names_and_a_record_from_another_chain(case) -> None:
    outputs, record = Chain([Reorient("LPS")]).run(case)
    with pytest.raises(InputError, match="no input named 'pd'"):
        Chain([Reorient("LPS")]).invert(outputs["t1"], record, "pd")
    with pytest.raises(InputError, match="invert with the chain that made the record"):
        Chain([Resample(0.7)]).invert(outputs["t1"], record, "t1")


def test_running_a_chain_never_modifies_its_inputs(case) -> None:
    before = {name: image.array.copy() for name, image in case.items()}
    affines = {name: image.affine.copy() for name, image in case.items()}
    outputs, _ = Chain([Reorient("RAS"), Pad((10, 20, 30)), CropToForeground()]).run(case)
    for image in outputs.values():
        image.array[...] = 0
    for name, image in case.items():
        assert np.array_equal(image.array, before[name]) and np.array_equal(image.affine, affines[name])


# --- files ------------------------------------------------------------------------------------
def test_run_files_reads_writes_each_output_and_leaves_the_inputs_unchanged(case, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    paths = {name: write_image(image, inputs / f"{name}.nii.gz") for name, image in case.items()}
    digests = {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in paths.items()}
    chain = Chain([Reorient("LPS"), Resample(0.7), CropToForeground(margin_vox=1)])
    written, record = chain.run_files(list(paths.values()), tmp_path / "out", labels=["mask"])
    assert sorted(written) == ["flair", "mask", "t1"]
    for name, path in written.items():
        assert path == tmp_path / "out" / f"{name}.nii.gz"
        out = read_image(path)
        assert out.orientation == "LPS" and out.spacing == pytest.approx((0.7,) * 3)
        assert hashlib.sha256(paths[name].read_bytes()).hexdigest() == digests[name]
    assert np.asanyarray(nib.load(written["mask"]).dataobj).dtype == np.uint8
    assert set(np.unique(read_image(written["mask"]).array)) == {0, 1}
    back = chain.invert(read_image(written["mask"]).as_label_map(), record, "mask")
    assert back.spatial_shape == SHAPE and np.allclose(back.affine, case["mask"].affine, atol=1e-5)
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_run_files_refuses_to_overwrite_an_input(case, tmp_path: Path) -> None:
    path = write_image(case["t1"], tmp_path / "t1.nii.gz")
    with pytest.raises(InputError, match="would overwrite an input"):
        Chain([Reorient("LPS")]).run_files({"t1": path}, tmp_path)
    assert read_image(path).orientation == "RAS"


# --- records carry step-specific data ---------------------------------------------------------
def test_record_extra_survives_json_and_pickle_and_is_a_private_copy() -> None:
    import pickle

    from medpipes.core.processing import Record

    data = {"transform": {"matrix": [[1.0, 0.0], [0.0, 1.0]]}, "note": "n4 on t1"}
    record = Record("custom", extra=data)
    data["transform"]["matrix"][0][0] = 5.0
    expected = {"transform": {"matrix": [[1.0, 0.0], [0.0, 1.0]]}, "note": "n4 on t1"}
    assert Record.from_dict(json.loads(json.dumps(record.to_dict()))).extra == expected
    assert pickle.loads(pickle.dumps(record)).extra == expected  # records may cross to worker processes
    record.to_dict()["extra"]["note"] = "changed"
    assert record.extra["note"] == "n4 on t1"


def test_record_extra_that_is_not_json_data_is_refused() -> None:
    from medpipes.core.processing import Record

    with pytest.raises(ProcessingError, match="custom: record extra is not JSON data.*tolist"):
        Record("custom", extra={"matrix": np.eye(2)})


# --- in memory or on disk, either way -----------------------------------------------------------
def test_a_step_applies_to_a_file_path_and_returns_the_image(case, tmp_path: Path) -> None:
    from medpipes.core.processing import OneHot

    path = write_image(case["t1"], tmp_path / "t1.nii.gz")
    out, record = Resample(0.7)(path)
    direct, _ = Resample(0.7)(case["t1"])
    # The NIfTI file stores the affine in float32, hence not bit-equal voxels.
    assert np.allclose(out.array, direct.array, atol=1e-4) and np.allclose(out.affine, direct.affine, atol=1e-5)
    assert record.input_grid is not None and record.input_grid.matches(Grid.of(case["t1"]))
    mask_path = write_image(case["mask"], tmp_path / "mask.nii.gz")
    assert OneHot(2).apply(mask_path).shape == SHAPE + (2,)  # a label-only step reads the file as labels


def test_a_chain_runs_on_paths_and_images_mixed_and_returns_images(case, tmp_path: Path) -> None:
    paths = {name: write_image(image, tmp_path / f"{name}.nii.gz") for name, image in case.items()}
    chain = Chain([Reorient("LPS"), Resample(0.7)])
    from_files, _ = chain.run({"t1": paths["t1"], "mask": paths["mask"]}, labels=["mask"])
    in_memory, _ = chain.run({"t1": case["t1"], "mask": case["mask"]})
    assert isinstance(from_files["mask"], LabelMap) and not from_files["t1"].is_label
    assert np.allclose(from_files["t1"].array, in_memory["t1"].array, atol=1e-4)  # affines stored in float32
    assert np.mean(from_files["mask"].array == in_memory["mask"].array) > 0.999
    with pytest.raises(InputError, match="input 't1': .*missing.nii.gz: no such file or folder"):
        chain.run({"t1": tmp_path / "missing.nii.gz"})
    with pytest.raises(InputError, match=r"labels= names \['seg'\], which are not inputs \['mask', 't1'\]"):
        chain.run({"t1": paths["t1"], "mask": paths["mask"]}, labels=["seg"])


def test_run_files_writes_images_given_in_memory(case, tmp_path: Path) -> None:
    chain = Chain([Resample(0.7)])
    written, record = chain.run_files({"t1": case["t1"], "mask": case["mask"]}, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mask.nii.gz", "t1.nii.gz"]
    assert read_image(written["t1"]).spacing == pytest.approx((0.7,) * 3)
    assert set(np.unique(read_image(written["mask"]).array)) == {0, 1}
    assert record.inputs == ("t1", "mask")


def test_chain_record_saved_and_loaded_from_a_file_still_inverts(case, tmp_path: Path) -> None:
    chain = Chain([Reorient("PIR"), Resample(0.7), CropToForeground()])
    outputs, record = chain.run(case)
    path = record.save(tmp_path / "record.json")
    back = chain.invert(outputs["mask"], ChainRecord.load(path), "mask")
    assert np.array_equal(back.array, chain.invert(outputs["mask"], record, "mask").array)
    (tmp_path / "bad.json").write_text('{"inputs": ["t1"]}')
    with pytest.raises(InputError, match=r"bad.json: not a chain record.*ChainRecord.save"):
        ChainRecord.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="nope.json: chain record not found"):
        ChainRecord.load(tmp_path / "nope.json")
