"""`medpipes preprocess`: the step-spec parser, its errors, and real heads through the command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from medpipes.core.cli.main import main
from medpipes.core.cli.preprocess import parse_config, preprocess
from medpipes.core.errors import InputError
from medpipes.core.image import Image
from medpipes.core.io import read_image, write_image
from medpipes.core.processing import Reorient, Resample
from medpipes.core.processing.bias import N4BiasFieldCorrection
from medpipes.core.processing.intensity import CTWindow, ZScore
from medpipes.core.processing.spec import StepSpec, build_steps, parse_steps, step_factories


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- parsing ---------------------------------------------------------------------------------
def test_the_issue_example_parses_into_four_steps():
    specs = parse_steps("reorient:RAS,resample:1,n4,zscore:nonzero")
    assert specs == [
        StepSpec("reorient", ("RAS",)),
        StepSpec("resample", (1,)),
        StepSpec("n4"),
        StepSpec("zscore", ("nonzero",)),
    ]
    steps = build_steps(specs)
    assert [type(s) for s in steps] == [Reorient, Resample, N4BiasFieldCorrection, ZScore]
    assert steps[1].spacing_mm == (1.0, 1.0, 1.0) and steps[3].region == "nonzero"


def test_lists_keywords_and_repeated_steps():
    specs = parse_steps("resample:[1, 1, 2]:interpolation=bspline")
    assert specs == [StepSpec("resample", ([1, 1, 2],), (("interpolation", "bspline"),))]
    assert parse_steps("resample:1x1x2.5")[0].args == ([1, 1, 2.5],)
    steps = build_steps(parse_steps("clip:0:100,clip:low=1:percentiles=true,ctwindow:brain,n4:backend=ants:shrink_factor=2"))
    assert [s.name for s in steps] == ["clip", "clip_2", "ctwindow", "n4"]
    assert steps[1].percentiles is True and isinstance(steps[2], CTWindow) and steps[2].width == 80
    assert steps[3].backend == "ants" and steps[3].shrink_factor == 2


def test_unknown_step_names_it_and_the_valid_ones():
    with pytest.raises(InputError) as err:
        build_steps(parse_steps("reorient:RAS,normalise"))
    message = str(err.value)
    assert "unknown step 'normalise'" in message and "valid steps: reorient, resample" in message and "\n" not in message


def test_unknown_argument_names_it_and_the_valid_ones():
    with pytest.raises(InputError, match="step 'resample' has no argument 'spacng'; valid: spacing, shape, interpolation, on"):
        build_steps(parse_steps("resample:spacng=1"))
    with pytest.raises(InputError, match="step 'reorient' takes at most 1 positional value"):
        build_steps(parse_steps("reorient:RAS:LPS"))
    with pytest.raises(InputError, match="positional value 'x' follows a key=value"):
        parse_steps("clip:low=1:x")
    with pytest.raises(InputError, match="empty step"):
        parse_steps("reorient,,zscore")


def test_step_errors_come_through_with_the_step_message():
    with pytest.raises(InputError, match="reorient: axis codes 'XYZ'"):
        build_steps(parse_steps("reorient:XYZ"))


def test_yaml_config_gives_the_same_steps(tmp_path):
    config = tmp_path / "steps.yaml"
    config.write_text("steps:\n  - reorient: RAS\n  - resample: {spacing: [1, 1, 2]}\n  - n4\n  - zscore: nonzero\n  - clip: [-3, 3]\n")
    specs = parse_config(config)
    assert specs[1] == StepSpec("resample", (), (("spacing", [1, 1, 2]),))
    assert specs[4] == StepSpec("clip", (-3, 3))
    assert [s.name for s in build_steps(specs)] == ["reorient", "resample", "n4", "zscore", "clip"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - {reorient: RAS, zscore: nonzero}\n")
    with pytest.raises(InputError, match="bad.yaml: step 1"):
        parse_config(bad)


def test_help_lists_every_known_step():
    listed = re.search(r"Steps: (.*?)\. Write", " ".join(preprocess.__doc__.split())).group(1)
    assert [s.strip() for s in listed.split(",")] == list(step_factories())


# --- the command -------------------------------------------------------------------------------
@pytest.fixture
def head(shared_data) -> tuple[Path, Path]:
    folder = shared_data("brain", "nichart")
    return folder / "t1" / "Subj1_T1.nii.gz", folder / "dlmuse_seg" / "Subj1_T1_DLMUSE.nii.gz"


@pytest.mark.realdata
def test_preprocess_writes_outputs_whose_geometry_is_what_the_steps_say(head, tmp_path, capsys):
    t1_path, seg_path = head
    t1 = read_image(t1_path)
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys, "preprocess", t1_path, seg_path, out, "--steps", "reorient:RAS,resample:1x1.5x3,n4:iterations=[20,20],zscore:nonzero",
        "--label", "Subj1_T1_DLMUSE", "--record", tmp_path / "record.json",
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["Subj1_T1.nii.gz", "Subj1_T1_DLMUSE.nii.gz"]
    result, labels = read_image(out / "Subj1_T1.nii.gz"), read_image(out / "Subj1_T1_DLMUSE.nii.gz")
    extent_mm = np.array(t1.spatial_shape) * np.array(t1.spacing)  # 2 mm voxels; no axis is permuted
    expected_shape = tuple(int(np.floor(e / s + 0.5)) for e, s in zip(extent_mm, (1.0, 1.5, 3.0)))
    centre = t1.voxel_to_world((np.array(t1.spatial_shape) - 1) / 2)
    for image in (result, labels):
        assert image.orientation == "RAS"
        assert np.allclose(image.spacing, (1.0, 1.5, 3.0))
        assert image.spatial_shape == expected_shape
        assert np.allclose(image.voxel_to_world((np.array(image.spatial_shape) - 1) / 2), centre, atol=1e-3)
        assert np.allclose(image.direction, np.eye(3), atol=1e-9)
    inside = result.array != 0
    assert abs(float(result.array[inside].mean())) < 0.05 and abs(float(result.array[inside].std()) - 1) < 0.05
    assert set(np.unique(labels.array)) <= set(np.unique(read_image(seg_path).array))
    assert "Subj1_T1.nii.gz" in stdout and "spacing 1 x 1.5 x 3 mm" in stdout and "RAS" in stdout
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["inputs"] == ["Subj1_T1", "Subj1_T1_DLMUSE"]
    assert [s["step"] for s in record["steps"]] == ["reorient", "resample", "n4", "zscore"]
    assert list(record["steps"][2]["records"]) == list(record["steps"][3]["records"]) == ["Subj1_T1"]  # labels skipped


@pytest.mark.realdata
def test_a_failure_on_any_input_writes_nothing(head, tmp_path, capsys):
    t1_path, _ = head
    flat = write_image(Image(np.full((20, 20, 20), 5.0, np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
    out = tmp_path / "out"
    code, _, err = run(capsys, "preprocess", t1_path, flat, out, "--steps", "reorient:RAS,zscore")
    assert code == 1
    assert err.count("\n") == 1 and "input 'flat'" in err and "std 0" in err
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("already here")
    code, _, _ = run(capsys, "preprocess", t1_path, flat, out, "--steps", "zscore")
    assert code == 1 and sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_bad_command_lines_are_one_line_errors_with_exit_2(tmp_path, capsys):
    image = write_image(Image(np.arange(64, dtype=np.float32).reshape(4, 4, 4), np.eye(4)), tmp_path / "a.nii.gz")
    code, _, err = run(capsys, "preprocess", image, tmp_path / "out", "--steps", "reorient:RAS,normalise")
    assert code == 2 and err.count("\n") == 1 and "unknown step 'normalise'" in err
    code, _, err = run(capsys, "preprocess", image, tmp_path / "out")
    assert code == 2 and "give exactly one of --steps" in err
    code, _, err = run(capsys, "preprocess", image, tmp_path, "--steps", "clip:0:10")
    assert code == 2 and "would overwrite an input" in err
    code, _, err = run(capsys, "preprocess", image, tmp_path / "out", "--steps", "zscore", "--label", "b")
    assert code == 2 and "--label names ['b']" in err
    code, _, err = run(capsys, "preprocess", tmp_path / "missing.nii.gz", tmp_path / "out", "--steps", "zscore")
    assert code == 2 and "no such file" in err
    assert not (tmp_path / "out").exists()


def test_nan_input_through_the_command_is_refused(tmp_path, capsys):
    array = np.ones((4, 4, 4), np.float32)
    array[1, 1, 1] = np.nan
    image = write_image(Image(array, np.eye(4)), tmp_path / "nan.nii.gz")
    code, _, err = run(capsys, "preprocess", image, tmp_path / "out", "--steps", "rescale")
    assert code == 2 and "NaN or infinite" in err and not (tmp_path / "out").exists()
