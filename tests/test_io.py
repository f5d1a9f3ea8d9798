"""read_image / write_image for NIfTI, NRRD and MetaImage: geometry and voxels survive, writes are atomic."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from medpipes.core import Image, InputError, read_image, write_image
from medpipes.core.io import atomic


def make_image() -> Image:
    a = np.deg2rad(23.0)
    affine = np.array(
        [[np.cos(a) * 0.9, -np.sin(a) * 1.1, 0, -40.0], [np.sin(a) * 0.9, np.cos(a) * 1.1, 0, 12.0],
         [0, 0, -2.5, 60.0], [0, 0, 0, 1]]
    )
    rng = np.random.default_rng(1)
    return Image(rng.integers(-1000, 3000, size=(7, 9, 11)).astype(np.int16), affine)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_write_then_read_keeps_voxels_and_affine(tmp_path: Path, suffix: str) -> None:
    image = make_image()
    path = write_image(image, tmp_path / f"img{suffix}")
    back = read_image(path)
    assert back.array.dtype == image.array.dtype
    assert np.array_equal(back.array, image.array)
    assert np.allclose(back.affine, image.affine, atol=1e-5)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_four_dimensional_round_trip(tmp_path: Path, suffix: str) -> None:
    image = Image(np.arange(3 * 4 * 5 * 2, dtype=np.float32).reshape(3, 4, 5, 2), make_image().affine)
    back = read_image(write_image(image, tmp_path / f"img4d{suffix}"))
    assert back.shape == (3, 4, 5, 2)
    assert np.array_equal(back.array, image.array)
    assert np.allclose(back.affine, image.affine, atol=1e-5)


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


def test_reading_never_modifies_the_input(tmp_path: Path) -> None:
    path = write_image(make_image(), tmp_path / "in.nii.gz")
    before = hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns
    read_image(path)
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns) == before


def test_unknown_suffix_names_the_file_and_the_formats(tmp_path: Path) -> None:
    odd = tmp_path / "scan.xyz"
    odd.write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"scan\.xyz.*NIfTI"):
        read_image(odd)
    with pytest.raises(InputError, match=r"\.nii\.gz"):
        write_image(make_image(), tmp_path / "out.png")


def test_missing_input_and_missing_output_folder_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "absent.nii.gz")
    with pytest.raises(InputError, match="does not exist"):
        write_image(make_image(), tmp_path / "no" / "such" / "dir" / "x.nii.gz")


def test_corrupt_nifti_is_an_input_error(tmp_path: Path) -> None:
    path = write_image(make_image(), tmp_path / "cut.nii.gz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="cut.nii.gz"):
        read_image(path)


@pytest.mark.realdata
def test_real_head_reads_as_nibabel_does(shared_data) -> None:
    import nibabel as nib

    path = shared_data("brain", "nichart", "t1", "Subj1_T1.nii.gz")
    image = read_image(path)
    ref = nib.load(str(path))
    assert image.shape == ref.shape
    assert np.allclose(image.affine, ref.affine)
    assert np.array_equal(image.array, np.asanyarray(ref.dataobj))
