"""Image and LabelMap: geometry derived from the affine, validated, converted without loss."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medpipes.core import Image, ImageMeta, LabelMap
from medpipes.core.errors import GeometryError


@pytest.fixture
def oblique_image(oblique_affine) -> Image:
    rng = np.random.default_rng(0)
    return Image(rng.integers(0, 1000, size=(10, 20, 30)).astype(np.int16), oblique_affine(),
                 ImageMeta(modality="MR", series_instance_uid="1.2.3"))


def test_geometry_is_derived_from_the_affine(oblique_image: Image) -> None:
    assert oblique_image.spacing == pytest.approx((1.0, 1.0, 2.0))
    assert oblique_image.origin == pytest.approx((-10.0, 20.0, 5.5))
    assert np.allclose(oblique_image.direction.T @ oblique_image.direction, np.eye(3))
    assert oblique_image.orientation == "RAS"


def test_orientation_codes_follow_axis_flips() -> None:
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    assert Image(np.zeros((2, 3, 4)), affine).orientation == "LPS"
    permuted = np.array([[0, 0, -1, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]])
    assert Image(np.zeros((2, 3, 4)), permuted).orientation == "PSL"


@pytest.mark.parametrize(
    "affine, fragment",
    [
        (np.eye(3), "4x4"),
        (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1.0]]), "singular"),
        (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1.0]]), "last row"),
        (np.full((4, 4), np.nan), "NaN"),
    ],
)
def test_invalid_affines_are_refused_with_the_reason(affine, fragment) -> None:
    with pytest.raises(GeometryError, match=fragment):
        Image(np.zeros((2, 2, 2)), affine)


def test_two_dimensional_arrays_are_refused() -> None:
    with pytest.raises(GeometryError, match="3D or 4D"):
        Image(np.zeros((4, 4)), np.eye(4))


def test_with_array_keeps_grid_and_refuses_another_shape(oblique_image: Image) -> None:
    doubled = oblique_image.with_array(oblique_image.array * 2.0)
    assert np.array_equal(doubled.affine, oblique_image.affine)
    assert doubled.meta == oblique_image.meta
    with pytest.raises(GeometryError, match="spatial shape"):
        oblique_image.with_array(np.zeros((10, 20, 29)))


def test_voxel_world_round_trip(oblique_image: Image) -> None:
    ijk = np.array([[0, 0, 0], [9, 19, 29], [3.5, 2.25, 7]])
    assert np.allclose(oblique_image.world_to_voxel(oblique_image.voxel_to_world(ijk)), ijk)


def test_sitk_round_trip_keeps_voxels_and_geometry(oblique_image: Image) -> None:
    itk = oblique_image.to_sitk()
    # SimpleITK is LPS: its origin is ours with x and y negated
    assert np.allclose(itk.GetOrigin(), [10.0, -20.0, 5.5])
    assert itk.GetSize() == (10, 20, 30)
    back = Image.from_sitk(itk)
    assert np.array_equal(back.array, oblique_image.array)
    assert np.allclose(back.affine, oblique_image.affine, atol=1e-9)


def test_sitk_physical_point_matches_our_world_coordinates(oblique_image: Image) -> None:
    itk = oblique_image.to_sitk()
    lps = np.array(itk.TransformContinuousIndexToPhysicalPoint((3.0, 4.0, 5.0)))
    ras = oblique_image.voxel_to_world([3.0, 4.0, 5.0])
    assert np.allclose(lps * [-1, -1, 1], ras)


def test_four_dimensional_images_convert_both_ways(oblique_affine) -> None:
    arr = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    image = Image(arr, oblique_affine())
    back = Image.from_sitk(image.to_sitk())
    assert np.array_equal(back.array, arr)
    assert np.allclose(back.affine, image.affine)
    assert len(image.volumes()) == 5
    assert np.array_equal(image.volumes()[3].array, arr[..., 3])


def test_nibabel_round_trip_sets_sform_and_qform(oblique_image: Image) -> None:
    nii = oblique_image.to_nibabel()
    assert np.allclose(nii.get_sform(), oblique_image.affine)
    assert np.allclose(nii.get_qform(), oblique_image.affine, atol=1e-5)
    back = Image.from_nibabel(nib.Nifti1Image.from_bytes(nii.to_bytes()))
    assert np.array_equal(back.array, oblique_image.array)
    assert np.allclose(back.affine, oblique_image.affine)


def test_label_map_requires_integer_labels() -> None:
    labels = LabelMap(np.array([0.0, 1.0, 2.0, 2.0]).reshape(1, 2, 2), np.eye(4))
    assert labels.array.dtype == np.uint8
    assert labels.labels == [1, 2]
    with pytest.raises(GeometryError, match="integer labels"):
        LabelMap(np.full((2, 2, 2), 0.5), np.eye(4))


def test_label_map_keeps_its_kind_through_copies() -> None:
    labels = LabelMap(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    assert isinstance(labels.with_array(np.ones((2, 2, 2), np.uint8)), LabelMap)
    assert labels.is_label and not Image(np.zeros((2, 2, 2)), np.eye(4)).is_label


def test_repr_shows_shape_spacing_orientation_dtype(oblique_image: Image) -> None:
    text = repr(oblique_image)
    for fragment in ("(10, 20, 30)", "1, 1, 2", "RAS", "int16", "MR"):
        assert fragment in text


def test_from_sitk_reads_a_2d_slice_as_a_single_slice_volume() -> None:
    itk = sitk.GetImageFromArray(np.arange(12, dtype=np.int16).reshape(3, 4))
    itk.SetSpacing((0.5, 0.7))
    image = Image.from_sitk(itk)
    assert image.shape == (4, 3, 1)
    assert image.spacing == pytest.approx((0.5, 0.7, 1.0))
