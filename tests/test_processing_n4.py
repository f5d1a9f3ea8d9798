"""N4 bias field correction, SimpleITK and ANTs backends.

The real-data test's measure: the coefficient of variation (CV = std / mean) inside the white
matter, not the whole brain. Whole-brain CV is dominated by the grey/white/CSF contrast: on
Subj1 it is 0.451 clean and 0.449 with the +-20 % field added, so it cannot see a bias at all.
White matter (DLMUSE's lobar white-matter, internal-capsule and corpus-callosum ROIs, 81-95) is one
tissue, so its CV rises with a bias field and falls when the field is removed. The raw scan also
carries its own scanner bias, which N4 removes too (its white-matter CV falls from ~0.168 to ~0.13),
so the "unbiased" reference is the clean scan after the same N4: the corrected image must come
within 5 % of that (|cv - cv_ref| <= 0.05 * cv_ref), and must not be worse than the raw clean scan
(cv <= 1.05 * cv_clean).
"""

from __future__ import annotations

import numpy as np
import pytest

from medpipes.core.errors import GeometryError, InputError
from medpipes.core.image import Image, LabelMap
from medpipes.core.io import read_image
from medpipes.core.processing import Chain
from medpipes.core.processing.bias import N4BiasFieldCorrection

WHITE_MATTER_LABELS = list(range(81, 96))
BACKENDS = ["sitk", "ants"]


def smooth_field(shape: tuple[int, int, int], amplitude: float = 0.2) -> np.ndarray:
    """A smooth multiplicative field of 1 +- ``amplitude``: linear in i and k, quadratic in j."""
    i, j, k = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    raw = 0.12 * i + 0.08 * k - 0.06 * (j**2 - 1 / 3)
    return 1 - amplitude * raw / np.abs(raw).max()


def cv(array: np.ndarray, mask: np.ndarray) -> float:
    values = array[mask].astype(np.float64)
    return float(values.std() / values.mean())


@pytest.fixture(scope="module")
def phantom() -> tuple[Image, np.ndarray, np.ndarray]:
    """A two-tissue phantom (40, 44, 36) at (2, 2, 2.5) mm, biased by a smooth field; a mask of its outer tissue."""
    rng = np.random.default_rng(3)
    shape = (40, 44, 36)
    i, j, k = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(i**2 + j**2 + k**2)
    clean = np.where(r < 0.45, 300.0, np.where(r < 0.85, 150.0, 0.0)) + rng.normal(0, 5, shape) * (r < 0.85)
    affine = np.diag([2.0, 2.0, 2.5, 1.0])
    outer_tissue = (r > 0.5) & (r < 0.8)
    return Image((clean * smooth_field(shape)).astype(np.float32), affine), clean, outer_tissue


@pytest.mark.parametrize("backend", BACKENDS)
def test_n4_removes_a_smooth_bias_from_a_phantom(phantom, backend):
    biased, clean, inner = phantom
    out = N4BiasFieldCorrection(backend, shrink_factor=2, iterations=(20, 20, 20)).apply(biased)
    assert out.dtype == np.float32 and out.same_grid(biased)
    assert cv(biased.array, inner) > 1.5 * cv(clean, inner)
    assert abs(cv(out.array, inner) - cv(clean, inner)) <= 0.05 * cv(clean, inner)


def test_n4_backends_agree_on_the_phantom(phantom):
    biased, _, inner = phantom
    results = [N4BiasFieldCorrection(b, shrink_factor=2, iterations=(20, 20, 20)).apply(biased).array for b in BACKENDS]
    ratio = results[0][inner] / results[1][inner]
    assert abs(float(np.median(ratio)) - 1) < 0.02 and float(ratio.std()) < 0.02


def test_n4_refuses_label_maps_nan_and_4d(phantom):
    biased, _, _ = phantom
    with pytest.raises(InputError, match="LabelMap"):
        N4BiasFieldCorrection().apply(LabelMap(np.ones((8, 8, 8), np.uint8), np.eye(4)))
    array = biased.array.copy()
    array[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        N4BiasFieldCorrection().apply(biased.with_array(array))
    with pytest.raises(InputError, match="needs a 3D image"):
        N4BiasFieldCorrection().apply(Image(np.ones((8, 8, 8, 2), np.float32), np.eye(4)))


def test_n4_mask_on_another_grid_names_both_grids(phantom):
    biased, _, _ = phantom
    mask = LabelMap(np.ones((20, 22, 18), np.uint8), np.diag([4.0, 4.0, 5.0, 1.0]))
    with pytest.raises(GeometryError) as err:
        N4BiasFieldCorrection(mask=mask).apply(biased)
    assert "(40, 44, 36)" in str(err.value) and "(20, 22, 18)" in str(err.value)


def test_n4_bad_parameters_name_the_valid_choices():
    with pytest.raises(InputError, match="unknown backend 'fsl'; use one of sitk, ants"):
        N4BiasFieldCorrection("fsl")
    with pytest.raises(InputError, match="shrink_factor"):
        N4BiasFieldCorrection(shrink_factor=0)
    with pytest.raises(InputError, match="iterations"):
        N4BiasFieldCorrection(iterations=(50, -1))
    with pytest.raises(InputError, match="mask file .* not found"):
        N4BiasFieldCorrection(mask="/nonexistent/mask.nii.gz")


def test_n4_in_a_chain_skips_label_maps(phantom):
    biased, _, inner = phantom
    seg = LabelMap(inner.astype(np.uint8), biased.affine)
    out, _ = Chain([N4BiasFieldCorrection(shrink_factor=2, iterations=(10,))]).run({"t1": biased, "seg": seg})
    assert out["seg"] is seg and not np.array_equal(out["t1"].array, biased.array)


@pytest.fixture(scope="module")
def real_t1(shared_data):
    folder = shared_data("brain", "nichart")
    t1 = read_image(folder / "t1" / "Subj1_T1.nii.gz")
    seg = read_image(folder / "dlmuse_seg" / "Subj1_T1_DLMUSE.nii.gz")
    clean = t1.array.astype(np.float32)
    biased = t1.with_array(clean * smooth_field(t1.spatial_shape).astype(np.float32))
    white_matter = np.isin(seg.array, WHITE_MATTER_LABELS)
    return t1.with_array(clean), biased, white_matter, seg.array > 0


@pytest.mark.realdata
@pytest.mark.parametrize("backend", BACKENDS)
def test_n4_on_a_real_t1_with_synthetic_bias_restores_white_matter_cv(real_t1, backend):
    clean, biased, white_matter, brain = real_t1
    step = N4BiasFieldCorrection(backend)  # defaults: Otsu mask, shrink 4, 4 x 50 iterations
    corrected = step.apply(biased)
    reference = step.apply(clean)
    cv_clean, cv_biased = cv(clean.array, white_matter), cv(biased.array, white_matter)
    cv_corrected, cv_reference = cv(corrected.array, white_matter), cv(reference.array, white_matter)
    assert cv_biased > 1.25 * cv_reference  # the added field is visible to the measure
    assert abs(cv_corrected - cv_reference) <= 0.05 * cv_reference
    assert cv_corrected <= 1.05 * cv_clean
    assert corrected.same_grid(biased)
    # The whole-brain CV cannot tell a biased scan from a clean one (see the module docstring).
    assert abs(cv(biased.array, brain) - cv(clean.array, brain)) < 0.02 * cv(clean.array, brain)
