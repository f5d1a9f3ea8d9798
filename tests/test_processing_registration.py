"""Co-registration with ANTs: Image <-> ANTsImage geometry, transforms, the Coregister step, real-data accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from medpipes.core.errors import InputError
from medpipes.core.image import LPS_TO_RAS, Image, LabelMap
from medpipes.core.processing import Chain, Grid
from medpipes.core.processing import registration as registration_module
from medpipes.core.processing.registration import (
    Coregister,
    RegistrationRecord,
    WorldTransform,
    from_ants,
    to_ants,
)

ants = pytest.importorskip("ants")


def oblique_affine(spacing=(1.0, 1.0, 2.0), origin=(-5.0, 12.0, 30.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("zx", [20, -10], degrees=True).as_matrix() @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def rigid_about(centre: np.ndarray, axis: str, degrees: float, shift_mm) -> np.ndarray:
    """A 4x4 RAS rigid motion: rotate ``degrees`` about ``axis`` through ``centre``, then shift."""
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler(axis, degrees, degrees=True).as_matrix()
    matrix[:3, 3] = centre - matrix[:3, :3] @ centre + np.asarray(shift_mm, dtype=np.float64)
    return matrix


@pytest.fixture
def image() -> Image:
    rng = np.random.default_rng(0)
    return Image(rng.normal(100, 20, size=(10, 20, 30)).astype(np.float32), oblique_affine())


# --- conversions ---------------------------------------------------------------------------
def test_image_to_ants_and_back_round_trips_geometry_and_voxels_exactly(image):
    converted = to_ants(image)
    assert converted.shape == (10, 20, 30)
    back = from_ants(converted, like=image)
    assert np.array_equal(back.array, image.array)
    assert np.allclose(back.affine, image.affine, atol=1e-12, rtol=0)


def test_ants_image_lies_where_the_image_says_in_lps(image):
    converted = to_ants(image)
    for ijk in [(0, 0, 0), (9, 19, 29), (3, 7, 11)]:
        ras = image.voxel_to_world(ijk)
        lps = ants.transform_index_to_physical_point(converted, list(ijk))
        assert np.allclose(lps, LPS_TO_RAS[:3, :3] @ ras, atol=1e-3)


def test_ants_conversion_agrees_with_simpleitk(image):
    via_sitk = ants.from_sitk(image.to_sitk())
    ours = to_ants(image)
    assert np.allclose(ours.origin, via_sitk.origin) and np.allclose(ours.direction, via_sitk.direction)
    assert np.allclose(ours.spacing, via_sitk.spacing) and np.array_equal(ours.numpy(), via_sitk.numpy())


def test_signed_integers_keep_their_sign_in_ants():
    values = np.arange(-500, 500, dtype=np.int16).reshape(10, 10, 10)
    converted = to_ants(Image(values, np.eye(4)))
    assert converted.pixeltype == "float" and np.array_equal(converted.numpy(), values)
    labels = from_ants(to_ants(LabelMap(np.arange(27, dtype=np.uint8).reshape(3, 3, 3), np.eye(4))), like=LabelMap(np.zeros((3, 3, 3), np.uint8), np.eye(4)))
    assert labels.is_label and labels.array.max() == 26


# --- transforms ----------------------------------------------------------------------------
def test_ants_transform_file_is_read_as_moving_to_reference_in_ras(tmp_path):
    matrix = Rotation.from_euler("xyz", [4, -3, 7], degrees=True).as_matrix()
    tx = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, matrix=matrix, translation=(3.0, -2.0, 5.0), center=(10.0, 20.0, -5.0)
    )
    path = str(tmp_path / "fwd.mat")
    ants.write_transform(tx, path)
    transform = WorldTransform.from_ants_file(path, "rigid")
    for fixed_lps in [(0.0, 0.0, 0.0), (50.0, -20.0, 33.0), (-70.0, 10.0, 5.0)]:
        moving_lps = np.asarray(tx.apply_to_point(fixed_lps))
        moving_ras, fixed_ras = LPS_TO_RAS[:3, :3] @ moving_lps, LPS_TO_RAS[:3, :3] @ np.asarray(fixed_lps)
        assert np.allclose(transform.apply_to_points(moving_ras), fixed_ras, atol=1e-5)  # ANTs stores float32
    assert transform.rotation_degrees == pytest.approx(np.degrees(Rotation.from_matrix(matrix).magnitude()), abs=1e-4)


def test_transform_saved_as_json_loads_back_and_applies_to_labels_with_nearest(tmp_path, image):
    motion = WorldTransform(rigid_about(np.zeros(3), "z", 90, [0, 0, 0]), "rigid")
    loaded = WorldTransform.load(motion.save(tmp_path / "t.json"))
    assert np.array_equal(loaded.matrix, motion.matrix) and loaded.kind == "rigid"
    labels = LabelMap((image.array > 100).astype(np.uint8) * 7, image.affine)
    moved = loaded.apply(labels, onto=Grid.of(image))
    assert moved.is_label and set(np.unique(moved.array)) <= {0, 7}
    exact = loaded.apply(labels)  # no grid: only the affine changes
    assert np.array_equal(exact.array, labels.array) and np.allclose(exact.affine, motion.matrix @ labels.affine)
    with pytest.raises(InputError, match="transform file not found"):
        WorldTransform.load(tmp_path / "missing.json")


# --- the step (ANTs replaced by a known transform: the plumbing, not ANTs, is under test) ----------
@pytest.fixture
def known_motion(monkeypatch, image):
    centre = image.voxel_to_world((np.array(image.spatial_shape) - 1) / 2)
    motion = WorldTransform(rigid_about(centre, "y", 3, [1.0, -2.0, 0.5]), "rigid")
    calls = []

    def fake_register(reference, moving, transform="rigid", random_seed=1, metric="mattes"):
        calls.append((reference, moving))
        return motion

    monkeypatch.setattr(registration_module, "register", fake_register)
    return motion, calls


def test_coregister_moves_images_onto_the_reference_grid_and_labels_follow(image, known_motion):
    motion, calls = known_motion
    flair = Image(image.array[:8, :18, :25] * 2, oblique_affine(spacing=(1.2, 1.1, 2.4)))
    seg = LabelMap((flair.array > 200).astype(np.uint8), flair.affine)
    step = Coregister("t1", follow={"seg": "flair"}, on=["t1", "flair", "seg"])
    out, record = Chain([step]).run({"t1": image, "flair": flair, "seg": seg})
    assert len(calls) == 1 and calls[0][1] is flair
    for name in ("flair", "seg"):
        assert out[name].same_grid(image)
        assert np.array_equal(step.transforms[name].matrix, motion.matrix)
    assert out["seg"].is_label and set(np.unique(out["seg"].array)) <= {0, 1}
    assert np.array_equal(out["t1"].array, image.array)
    back = Chain([step]).invert(out["seg"], record, "seg")
    assert back.same_grid(seg) and np.array_equal(back.affine, seg.affine)
    assert isinstance(record.steps[0][1]["flair"], RegistrationRecord)
    restored = RegistrationRecord.from_dict(json.loads(json.dumps(record.steps[0][1]["flair"].to_dict())))
    assert np.array_equal(restored.transform.matrix, motion.matrix)


def test_a_chain_with_coregister_saved_to_json_and_read_back_still_inverts(image, known_motion):
    from medpipes.core.processing import ChainRecord, Resample

    flair = Image(image.array[:8, :18, :25] * 2, oblique_affine(spacing=(1.2, 1.1, 2.4)))
    seg = LabelMap((flair.array > 200).astype(np.uint8), flair.affine)
    chain = Chain([Coregister("t1", follow={"seg": "flair"}, on=["t1", "flair", "seg"]), Resample(1.5)])
    out, record = chain.run({"t1": image, "flair": flair, "seg": seg})
    restored = ChainRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    for name, source in (("flair", flair), ("seg", seg)):
        back = chain.invert(out[name], restored, name)
        direct = chain.invert(out[name], record, name)
        assert back.same_grid(source) and np.array_equal(back.affine, source.affine)
        assert np.array_equal(back.array, direct.array)
    kept = RegistrationRecord.of(restored.steps[0][1]["flair"])
    assert np.array_equal(kept.transform.matrix, known_motion[0].matrix)


def test_a_record_without_its_transform_cannot_undo_coregistration(image, known_motion):
    from medpipes.core.processing import Record

    step = Coregister("t1")
    out, record = Chain([step]).run({"t1": image, "flair": image.with_array(image.array * 2)})
    data = record.steps[0][1]["flair"].to_dict()
    stripped = Record.from_dict({**data, "extra": {}})
    with pytest.raises(InputError, match="holds no transform"):
        step.invert(out["flair"], stripped)


def test_registration_records_in_the_earlier_json_form_are_still_read(known_motion):
    motion = known_motion[0]
    restored = RegistrationRecord.from_dict({"step": "coregister", "input_grid": None, "output_grid": None, "box": None,
                                             "transform": motion.to_dict()})
    assert np.array_equal(restored.transform.matrix, motion.matrix)


def test_coregister_without_resampling_changes_only_affines_and_inverts_exactly(image, known_motion):
    motion, _ = known_motion
    flair = Image(image.array[::-1].copy(), oblique_affine(spacing=(1.2, 1.1, 2.4)))
    chain = Chain([Coregister("t1", resample=False)])
    out, record = chain.run({"t1": image, "flair": flair})
    assert np.array_equal(out["flair"].array, flair.array)
    assert np.allclose(out["flair"].affine, motion.matrix @ flair.affine)
    back = chain.invert(out["flair"], record, "flair")
    assert np.array_equal(back.affine, flair.affine) and np.array_equal(back.array, flair.array)


def test_coregister_bad_inputs_say_what_to_fix(image, known_motion):
    seg = LabelMap((image.array > 100).astype(np.uint8), image.affine)
    with pytest.raises(InputError, match="reference 't2' is not among its inputs"):
        Chain([Coregister("t2")]).run({"t1": image})
    with pytest.raises(InputError, match="a LabelMap cannot be registered; name the image it was drawn on with follow="):
        Chain([Coregister("t1", on=["t1", "seg"])]).run({"t1": image, "seg": seg})
    with pytest.raises(InputError, match="unknown transform 'syn'; use one of rigid, affine"):
        Coregister("t1", transform="syn")
    bad = image.array.copy()
    bad[1, 1, 1] = np.inf
    with pytest.raises(InputError, match="input 'flair'.*NaN or infinite"):
        Chain([Coregister("t1")]).run({"t1": image, "flair": image.with_array(bad)})


# --- real data: ANTs itself ------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from medpipes.core.image import Image
    from medpipes.core.io import read_image
    from medpipes.core.processing import Chain, Grid, resample_onto
    from medpipes.core.processing.registration import Coregister

    def dice(a, b):
        return float(2 * np.sum(a & b) / (np.sum(a) + np.sum(b)))

    t1 = read_image(sys.argv[1])
    seg = read_image(sys.argv[2]).as_label_map()
    motion = np.array(json.loads(sys.argv[3]))
    # The known motion, applied by resampling onto the original grid (so it must be found from voxels).
    moving = resample_onto(Image(t1.array.astype(np.float32), motion @ t1.affine), Grid.of(t1), "linear")
    moving_seg = resample_onto(Image(seg.array, motion @ seg.affine).as_label_map(), Grid.of(t1))
    found = []
    for _ in range(2):
        step = Coregister("t1", transform="rigid", follow={"seg": "moving"}, random_seed=7)
        out, record = Chain([step]).run({"t1": t1, "moving": moving, "seg": moving_seg}, only={"coregister": ["t1", "moving", "seg"]})
        found.append(step.transforms["moving"].matrix.tolist())
    back = Chain([step]).invert(out["seg"], record, "seg")
    print(json.dumps({
        "found": found,
        "dice_registered": dice(out["seg"].array > 0, seg.array > 0),
        "dice_moved": dice(moving_seg.array > 0, seg.array > 0),
        "inverted_on_input_grid": back.same_grid(moving_seg),
    }))
    """
)


@pytest.mark.realdata
def test_rigid_coregistration_recovers_a_known_motion_of_a_real_head(shared_data):
    folder = shared_data("brain", "nichart")
    t1_path, seg_path = folder / "t1" / "Subj1_T1.nii.gz", folder / "dlmuse_seg" / "Subj1_T1_DLMUSE.nii.gz"
    from medpipes.core.io import read_image

    t1, seg = read_image(t1_path), read_image(seg_path)
    centre = t1.voxel_to_world((np.array(t1.spatial_shape) - 1) / 2)
    motion = rigid_about(centre, "x", 5.0, [0.0, 4.0, 0.0])  # 5 degrees about L-R, 4 mm anterior
    # One ITK thread and a fixed seed make ANTs repeatable; the thread count is read once per process,
    # so the registration runs in a child process that starts with it.
    env = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(t1_path), str(seg_path), json.dumps(motion.tolist())],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["found"][0] == result["found"][1], "two seeded single-thread runs differ"
    found = np.array(result["found"][0])
    residual = WorldTransform(found @ motion)  # found undoes the motion: residual ~ identity
    assert residual.rotation_degrees < 1.0
    landmarks = np.array([t1.voxel_to_world(np.argwhere(seg.array == label).mean(axis=0)) for label in np.unique(seg.array)[1:]])
    errors = np.linalg.norm(residual.apply_to_points(landmarks) - landmarks, axis=1)
    assert errors.mean() < 1.0 and errors.max() < 1.5
    assert np.linalg.norm(residual.apply_to_points(centre) - centre) < 1.0
    assert WorldTransform(found).rotation_degrees == pytest.approx(5.0, abs=1.0)
    assert result["dice_registered"] > 0.99 and result["dice_moved"] < 0.96, result  # measured 0.999 and 0.946
    assert result["inverted_on_input_grid"]
