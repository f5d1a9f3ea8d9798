"""core/pipeline.py on synthetic heads: a ball on oblique, anisotropic grids and a network that thresholds intensity.

The network is exact (brain = rescaled intensity above 0.5), so what is tested is the pipeline: the
preprocessing chain, inference, the inverse spatial steps onto each input's grid, postprocessing,
plausibility, the report and the all-or-nothing outputs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medpipes.core.errors import GeometryError, InputError, ProcessingError
from medpipes.core.image import Image
from medpipes.core.io import read_image, write_image
from medpipes.core.pipeline import Pipeline, load_pipeline_spec, parse_pipeline_spec

RADIUS_MM = 62.0
CENTRE_MM = np.array([3.0, -8.0, 12.0])
BALL_ML = 4.0 / 3.0 * math.pi * RADIUS_MM**3 / 1000.0  # 998 mL

SPEC = {
    "name": "ball_extraction",
    "inputs": {"modality": "MR", "min_slices": 16},
    "preprocessing": [
        {"reorient": "RAS"},
        {"resample": {"spacing": 2}},
        {"rescale": {"in_low": 0.5, "in_high": 99.5, "percentiles": True}},
    ],
    "inference": {"mode": "whole", "activation": "softmax", "combine": "mean", "foreground": 1},
    "postprocessing": [{"binarise": 0.5}, "keep_largest", "fill_holes"],
    "outputs": {"mask": "brain_mask", "masked_image": "brain", "seg": "brain_mask_seg", "segment": "brain"},
    "plausibility": {"volume_ml": [800, 2200]},
}


class ThresholdNet(nn.Module):
    """Two-class logits from intensity: foreground where the (rescaled) input exceeds ``level``."""

    in_channels = 1
    out_channels = 2
    spatial_dims = 3
    size_divisor = (1, 1, 1)

    def __init__(self, level: float = 0.5) -> None:
        super().__init__()
        self.level = level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), (x - self.level) * 40.0], dim=1)


def oblique_affine(spacing: tuple[float, float, float], degrees: float, shape: tuple[int, int, int]) -> np.ndarray:
    """An LPS-like grid rotated about z, centred on the ball."""
    t = math.radians(degrees)
    rotation = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1.0]])
    direction = rotation @ np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(spacing)
    affine[:3, 3] = CENTRE_MM - affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return affine


def ball_image(spacing=(1.5, 1.7, 2.2), degrees=20.0, shape=(104, 96, 72), radius_mm=RADIUS_MM) -> Image:
    """A bright ball (intensity 100-120) in a dark field (5), as an MR-like image on an oblique grid."""
    affine = oblique_affine(spacing, degrees, shape)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    distance = np.linalg.norm(world - CENTRE_MM, axis=1).reshape(shape)
    array = np.where(distance <= radius_mm, 100.0 + 20.0 * distance / radius_mm, 5.0).astype(np.float32)
    return Image(array, affine)


def true_ball(image: Image, radius_mm: float = RADIUS_MM) -> np.ndarray:
    """The analytic ball on ``image``'s grid."""
    shape = image.spatial_shape
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    world = ijk @ image.affine[:3, :3].T + image.affine[:3, 3]
    return (np.linalg.norm(world - CENTRE_MM, axis=1) <= radius_mm).reshape(shape)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean arrays."""
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def ball_path(tmp_path_factory) -> Path:
    return write_image(ball_image(), tmp_path_factory.mktemp("ball") / "ball_t1.nii.gz")


def pipeline(**changes) -> Pipeline:
    return Pipeline(parse_pipeline_spec({**SPEC, **changes}, "test spec"), network=ThresholdNet(), threads=1)


def test_mask_lies_on_the_oblique_native_grid_and_matches_the_ball(ball_path: Path, tmp_path: Path) -> None:
    result = pipeline().run([ball_path], tmp_path / "out")
    source = read_image(ball_path)
    mask = read_image(result.outputs["mask"])
    assert mask.spatial_shape == source.spatial_shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
    assert dice(np.asarray(mask.array) > 0, true_ball(source)) >= 0.98
    assert result.report["volume_ml"] == pytest.approx(BALL_ML, rel=0.03)


def test_masked_image_keeps_the_input_inside_and_zero_outside(ball_path: Path, tmp_path: Path) -> None:
    result = pipeline().run([ball_path], tmp_path / "out")
    source = np.asarray(read_image(ball_path).array)
    inside = np.asarray(read_image(result.outputs["mask"]).array) > 0
    brain = np.asarray(read_image(result.outputs["masked_image"]).array)
    np.testing.assert_array_equal(brain[inside], source[inside])
    assert not brain[~inside].any()


def test_report_names_versions_model_inputs_steps_volume_and_checks(ball_path: Path, tmp_path: Path) -> None:
    result = pipeline().run([ball_path], tmp_path / "out")
    report = json.loads(result.outputs["report"].read_text())
    assert report["status"] == "ok" and report["pipeline"] == "ball_extraction"
    assert {"python", "numpy", "torch", "medpipes"} <= set(report["versions"])
    assert report["model"]["id"] == "in-memory" and report["device"] == "cpu" and report["precision"] == "float32"
    assert report["inputs"][0]["path"] == str(ball_path) and report["inputs"][0]["shape"] == [104, 96, 72]
    steps = {s["step"]: s for s in report["steps"]}
    assert {"read_inputs", "preprocess:reorient", "preprocess:resample", "inference", "invert_spatial", "postprocess"} <= set(steps)
    assert all(s["seconds"] >= 0 and s["peak_rss_mb"] > 0 for s in report["steps"])
    assert report["brain_volume_ml"] == pytest.approx(BALL_ML, rel=0.03)
    assert any("native grid" in check for check in report["geometry_checks_passed"])
    assert report["warnings"] == []
    assert (tmp_path / "out" / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_second_input_on_another_grid_is_coregistered_and_gets_its_own_mask(tmp_path: Path) -> None:
    first_path = write_image(ball_image(spacing=(2.5, 2.5, 2.5), shape=(60, 60, 60)), tmp_path / "ball_t1.nii.gz")
    other = ball_image(spacing=(3.2, 3.0, 3.0), degrees=-10.0, shape=(48, 50, 50))
    other_path = write_image(other, tmp_path / "ball_flair.nii.gz")
    result = pipeline().run([first_path, other_path], tmp_path / "out")
    assert set(result.outputs) >= {"mask", "ball_t1_mask", "ball_flair_mask"}
    flair_mask = read_image(result.outputs["ball_flair_mask"])
    assert flair_mask.same_grid(other)
    assert dice(np.asarray(flair_mask.array) > 0, true_ball(other)) >= 0.95


def test_registered_inputs_on_different_grids_are_refused(ball_path: Path, tmp_path: Path) -> None:
    other_path = write_image(ball_image(spacing=(2.0, 2.0, 2.0), shape=(70, 70, 70)), tmp_path / "other.nii.gz")
    with pytest.raises(GeometryError, match="drop --registered"):
        pipeline().run([ball_path, other_path], tmp_path / "out", registered=True)
    assert not (tmp_path / "out" / "brain_mask.nii.gz").exists()


def test_empty_mask_fails_leaving_only_the_report_that_says_why(ball_path: Path, tmp_path: Path) -> None:
    empty = Pipeline(parse_pipeline_spec(SPEC, "test spec"), network=ThresholdNet(level=5.0))
    out = tmp_path / "out"
    with pytest.raises(ProcessingError, match="empty"):
        empty.run([ball_path], out)
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed" and "empty" in report["warnings"][0]


def test_implausible_volume_is_a_warning_and_the_mask_is_still_written(tmp_path: Path) -> None:
    small = write_image(ball_image(radius_mm=35.0), tmp_path / "small.nii.gz")  # 180 mL
    result = pipeline().run([small], tmp_path / "out")
    assert result.outputs["mask"].is_file()
    assert any("outside the plausible range 800-2200 mL" in w for w in result.report["warnings"])


def test_failure_mid_run_leaves_no_partial_output(ball_path: Path, tmp_path: Path) -> None:
    class Broken(ThresholdNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ProcessingError("network exploded")

    out = tmp_path / "out"
    with pytest.raises(ProcessingError, match="exploded"):
        Pipeline(parse_pipeline_spec(SPEC, "test spec"), network=Broken()).run([ball_path], out)
    assert list(out.iterdir()) == []


def test_ct_in_hounsfield_units_is_refused_as_mr(tmp_path: Path) -> None:
    ct = ball_image()
    ct = ct.with_array(np.where(np.asarray(ct.array) > 50, 40.0, -1000.0).astype(np.float32))
    path = write_image(ct, tmp_path / "head_ct.nii.gz")
    with pytest.raises(InputError, match="CT"):
        pipeline().run([path], tmp_path / "out")


def test_single_slice_and_4d_inputs_are_refused_with_one_line(tmp_path: Path) -> None:
    image = ball_image()
    one_slice = write_image(Image(np.asarray(image.array)[:, :, 36:37], image.affine), tmp_path / "slice.nii.gz")
    with pytest.raises(InputError, match="at least 16 slices") as info:
        pipeline().run([one_slice], tmp_path / "out1")
    assert "\n" not in str(info.value)
    four_d = write_image(Image(np.stack([image.array] * 3, axis=-1), image.affine), tmp_path / "fmri.nii.gz")
    with pytest.raises(InputError, match="4D image"):
        pipeline().run([four_d], tmp_path / "out2")


def test_missing_input_and_output_inside_an_input_folder_are_refused(ball_path: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input not found"):
        pipeline().run([tmp_path / "nope.nii.gz"], tmp_path / "out")
    folder = tmp_path / "dicom_folder"
    folder.mkdir()
    with pytest.raises(InputError, match="inside the input folder"):
        pipeline().run([folder], folder / "out")


def test_spec_refuses_unknown_keys_and_bad_plausibility(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown key.*'modle'.*valid keys"):
        parse_pipeline_spec({**SPEC, "modle": "x"}, "p.yaml")
    with pytest.raises(InputError, match="volume_ml"):
        parse_pipeline_spec({**SPEC, "plausibility": {"volume_ml": [2200, 800]}}, "p.yaml")
    with pytest.raises(InputError, match="p.yaml: inference: precision = 'fp8'"):
        parse_pipeline_spec({**SPEC, "inference": {"mode": "whole", "precision": "fp8"}}, "p.yaml")
    with pytest.raises(InputError, match="not found"):
        load_pipeline_spec(tmp_path / "missing.yaml")


def test_probabilities_and_intermediates_are_written_when_asked(ball_path: Path, tmp_path: Path) -> None:
    result = pipeline().run([ball_path], tmp_path / "out", probabilities=True, save_intermediates=True)
    probability = read_image(result.outputs["probability"])
    assert probability.same_grid(read_image(ball_path))
    assert 0.0 <= float(np.min(probability.array)) and float(np.max(probability.array)) <= 1.0
    assert result.outputs["chain_record"].is_file()
    assert read_image(result.outputs["ball_t1_preprocessed"]).spacing == pytest.approx((2.0, 2.0, 2.0), abs=0.05)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".medpipes-staging-")]


def test_chain_puts_coregistration_first_and_n4_after_reorientation() -> None:
    chain = pipeline().build_chain(["t1", "flair"], n4=True, registered=False)
    assert [step.name for step in chain.steps] == ["coregister", "reorient", "n4", "resample", "rescale"]
    chain = pipeline().build_chain(["t1", "flair"], n4=False, registered=True)
    assert [step.name for step in chain.steps] == ["reorient", "resample", "rescale"]
