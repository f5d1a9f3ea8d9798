#!/usr/bin/env python
"""Write the bundled demo case: the IXI012 T1 head as an axial DICOM MR series in a deterministic zip.

The source is the one real head the project may redistribute: IXI012-HH-1211 (IXI dataset,
https://brain-development.org/ixi-dataset/, CC BY-SA 3.0), 120x120x90 voxels of 2 mm, stored as
uint8 with a NIfTI scale factor. Nothing is resampled: the array's axes are only permuted and
flipped (nibabel orientation tools) so that slices are axial, rows run right->left and columns
anterior->posterior, the usual axial DICOM layout. The stored integers are kept exactly and the
NIfTI scale goes into RescaleSlope/Intercept, so a DICOM reader gives back the NIfTI's values.

UIDs come from fixed entropy sources and the zip has fixed entry timestamps and sorted names, so a
rerun writes a byte-identical zip. Files are named by a hash of their SOPInstanceUID, not in slice
order, so readers must sort by ImagePositionPatient. After writing, the zip is read back with
SimpleITK (and medpipes' own DICOM reader when it is installed) and compared with the source.

Usage: .venv/bin/python scripts/make_demo_dicom.py [--input IXI012-HH-1211_T1.nii.gz] [--output demo/ixi012_t1_dicom.zip]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from medpipes.core.image import LPS_TO_RAS, Image
from medpipes.core.io import read_image
from medpipes.core.io.atomic import atomic_path
from medpipes.core.testdata import find_test_data

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NAME = "IXI012-HH-1211_T1.nii.gz"
DEFAULT_OUTPUT = REPO / "demo" / "ixi012_t1_dicom.zip"
ZIP_FOLDER = "ixi012_t1"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # earliest zip timestamp: fixed so reruns give identical bytes
ATTRIBUTION = (
    "IXI dataset, https://brain-development.org/ixi-dataset/, CC BY-SA 3.0; "
    "converted to DICOM by medpipes scripts/make_demo_dicom.py"
)
# Hammersmith Hospital (the "HH" in the IXI name) scanned on a Philips 3 T system (IXI site).
FIELD_STRENGTH_T = {"HH": 3.0, "Guys": 1.5, "IOP": 1.5}


class DemoError(Exception):
    """The source cannot be converted or the written series does not read back faithfully."""


def default_input() -> Path | None:
    """The shared IXI012 T1 head, or None when the test data is absent."""
    return find_test_data("brain", "ixi_small", "t1", DEFAULT_NAME)


def subject_of(path: Path) -> tuple[str, str]:
    """('IXI012-HH-1211', 'HH') from an IXI file name."""
    full = path.name.split("_")[0]
    parts = full.split("-")
    if len(parts) != 3 or not parts[0].startswith("IXI"):
        raise DemoError(f"{path}: not an IXI file name (IXInnn-SITE-nnnn_T1.nii.gz); pass an IXI T1 head")
    return full, parts[1]


def participant(path: Path, full_id: str) -> dict[str, str]:
    """The subject's row of ixi_small/participants/participants.csv, empty when absent."""
    table = path.parent.parent / "participants" / "participants.csv"
    if not table.is_file():
        return {}
    with table.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("MRID") == full_id:
                return row
    return {}


def quantize(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Stored uint16 integers, slope and intercept with ints*slope+intercept == values (exactly scaled data only)."""
    finite = values[np.isfinite(values)]
    if finite.size != values.size:
        raise DemoError("the image holds NaN or infinite values; DICOM MR pixels cannot store them")
    intercept = float(finite.min())
    levels = np.unique(finite) - intercept
    steps = np.diff(levels)
    slope = float(steps.min()) if steps.size else 1.0
    if np.allclose(levels, np.round(levels)) and levels.max() <= 65535:
        slope = 1.0  # already integers: store them as they are
    ints = np.round((values - intercept) / slope)
    error = np.abs(ints * slope + intercept - values).max()
    if ints.max() > 65535 or error > 1e-6 * max(1.0, float(np.abs(finite).max())):
        raise DemoError(
            f"the values are not integer steps of one slope (max error {error:.3g}); "
            "this script keeps values exactly and only handles scaled-integer images such as IXI's uint8"
        )
    return ints.astype(np.uint16), slope, intercept


def axial_layout(image: Image) -> tuple[np.ndarray, np.ndarray]:
    """Voxels permuted/flipped (no resampling) to axes (right->left, anterior->posterior, inferior->superior), and their affine."""
    ornt = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(image.affine), nib.orientations.axcodes2ornt(("L", "P", "S"))
    )
    array = nib.orientations.apply_orientation(image.array, ornt)
    affine = image.affine @ nib.orientations.inv_ornt_aff(ornt, image.spatial_shape)
    return array, affine


def ds(value: float) -> str:
    """A DICOM decimal string of at most 16 characters (no '-0')."""
    return format_number_as_ds(float(value) + 0.0)


def slice_geometry(affine: np.ndarray) -> tuple[list[str], np.ndarray, tuple[float, float, float]]:
    """ImageOrientationPatient, the voxel->LPS affine (slice k's position: lps @ (0, 0, k, 1)), and the spacing."""
    lps = LPS_TO_RAS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row_dir, col_dir, normal = (lps[:3, i] / spacing[i] for i in range(3))
    if not np.allclose(np.cross(row_dir, col_dir), normal, atol=1e-6):
        raise DemoError(
            "the source affine is sheared or left-handed after reorientation; "
            "a DICOM slice stack cannot represent it (resample the source first)"
        )
    iop = [ds(v) for v in (*row_dir, *col_dir)]
    return iop, lps, (float(spacing[0]), float(spacing[1]), float(spacing[2]))


# Written with plain pydicom: highdicom builds SEG/SR/PM and legacy-converted enhanced objects,
# not classic single-frame MR Image Storage, which is what scanners export and readers must handle.
def build_series(image: Image, source: Path) -> list[Dataset]:
    """One MR Image Storage dataset per axial slice of ``image``."""
    if image.array.ndim != 3:
        raise DemoError(f"{source}: a {image.array.ndim}D image; the demo series is one 3D volume")
    full_id, site = subject_of(source)
    patient_id = full_id.split("-")[0]
    info = participant(source, full_id)
    array, affine = axial_layout(image)
    ints, slope, intercept = quantize(array)
    iop, lps, (sx, sy, sz) = slice_geometry(affine)
    real = ints * slope + intercept
    low, high = np.percentile(real[real > intercept], [0.5, 99.5]) if (real > intercept).any() else (0.0, 1.0)

    def uid(*parts: object) -> str:
        return generate_uid(entropy_srcs=["medpipes demo", full_id, *[str(p) for p in parts]])

    study_uid, series_uid, frame_uid = uid("study"), uid("series"), uid("frame of reference")
    datasets = []
    for k in range(array.shape[2]):
        sop_uid = uid("instance", k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = uid("implementation")  # fixed, not pydicom's version-dependent one
        meta.ImplementationVersionName = "MEDPIPES_DEMO_1"
        d = Dataset()
        d.file_meta = meta
        d.SpecificCharacterSet = "ISO_IR 100"
        d.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
        d.SOPClassUID = MRImageStorage
        d.SOPInstanceUID = sop_uid
        d.StudyDate = d.StudyTime = d.ContentDate = d.ContentTime = ""  # type 2: unknown for IXI
        d.AccessionNumber = ""
        d.Modality = "MR"
        d.Manufacturer = "medpipes"  # the equipment that made these derived instances
        d.ManufacturerModelName = "scripts/make_demo_dicom.py"
        d.ReferringPhysicianName = ""
        d.StudyDescription = f"{patient_id} T1 demo"
        d.SeriesDescription = f"{patient_id} T1 demo"
        d.DerivationDescription = "IXI T1 resampled to 2 mm (ixi_small); " + ATTRIBUTION
        d.PatientName = patient_id
        d.PatientID = patient_id
        d.PatientBirthDate = ""
        d.PatientSex = info.get("Sex", "")
        if info.get("Age"):
            d.PatientAge = f"{int(float(info['Age'])):03d}Y"
        d.PatientIdentityRemoved = "YES"
        d.BodyPartExamined = "HEAD"
        d.ScanningSequence = "GR"  # type 1: IXI T1s are 3D gradient-echo acquisitions
        d.SequenceVariant = "NONE"
        d.ScanOptions = ""
        d.MRAcquisitionType = "3D"
        d.EchoTime = d.RepetitionTime = d.EchoTrainLength = ""  # type 2: not in the source file
        if site in FIELD_STRENGTH_T:
            d.MagneticFieldStrength = ds(FIELD_STRENGTH_T[site])
        d.SliceThickness = ds(sz)
        d.SpacingBetweenSlices = ds(sz)
        d.StudyInstanceUID = study_uid
        d.SeriesInstanceUID = series_uid
        d.StudyID = "1"
        d.SeriesNumber = 1
        d.AcquisitionNumber = 1
        d.InstanceNumber = k + 1
        d.PatientOrientation = ""
        d.ImagePositionPatient = [ds(v) for v in lps[:3, :3] @ np.array([0.0, 0.0, k]) + lps[:3, 3]]
        d.ImageOrientationPatient = iop
        d.FrameOfReferenceUID = frame_uid
        d.PositionReferenceIndicator = ""
        d.SliceLocation = ds(float(d.ImagePositionPatient[2]))
        d.ImageComments = ATTRIBUTION
        d.SamplesPerPixel = 1
        d.PhotometricInterpretation = "MONOCHROME2"
        d.Rows = array.shape[1]
        d.Columns = array.shape[0]
        d.PixelSpacing = [ds(sy), ds(sx)]  # (between rows, between columns)
        d.BitsAllocated = 16
        d.BitsStored = 16
        d.HighBit = 15
        d.PixelRepresentation = 0
        d.RescaleIntercept = ds(intercept)
        d.RescaleSlope = ds(slope)
        d.RescaleType = "US"
        d.WindowCenter = ds((low + high) / 2)
        d.WindowWidth = ds(max(high - low, 1.0))
        d.PixelData = np.ascontiguousarray(ints[:, :, k].T).astype("<u2").tobytes()  # rows = y, columns = x
        datasets.append(d)
    return datasets


def file_name(d: Dataset) -> str:
    """A name from the SOPInstanceUID's hash: deterministic and unrelated to slice order."""
    return hashlib.sha256(str(d.SOPInstanceUID).encode()).hexdigest()[:16] + ".dcm"


def write_zip(datasets: list[Dataset], output: Path) -> None:
    """Write the series as a deflated zip with sorted names and fixed timestamps, atomically."""
    entries = {}
    for d in datasets:
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, d, enforce_file_format=True)
        entries[f"{ZIP_FOLDER}/{file_name(d)}"] = buf.getvalue()
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, entries[name], compresslevel=9)


def check_sitk(zip_path: Path, source: Image) -> str:
    """Read the zip back with SimpleITK's ImageSeriesReader; raise DemoError unless geometry and values match."""
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)
        folder = Path(tmp) / ZIP_FOLDER
        names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
        if len(names) != len(list(folder.iterdir())):
            raise DemoError(f"{zip_path}: GDCM found {len(names)} of {len(list(folder.iterdir()))} files in the series")
        read = Image.from_sitk(sitk.ReadImage(names, sitk.sitkFloat64))
    return _compare("SimpleITK", read, source)


def check_medpipes(zip_path: Path, source: Image) -> str:
    """Read the zip with medpipes' DICOM reader (when installed) and compare with the source."""
    try:
        from medpipes.core.io.dicom import read_dicom  # noqa: F401  (another module; may not exist yet)
    except ImportError as exc:
        return f"medpipes DICOM reader: skipped ({exc})"
    return _compare("medpipes", read_image(zip_path), source)


def _compare(reader: str, read: Image, source: Image) -> str:
    """Same world grid (up to axis order/flips) and the same values at every world position."""
    ornt = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(read.affine), nib.orientations.io_orientation(source.affine)
    )
    back = nib.orientations.apply_orientation(read.array, ornt)
    affine = read.affine @ nib.orientations.inv_ornt_aff(ornt, read.spatial_shape)
    grid_error = float(np.abs(affine - source.affine).max()) if back.shape == source.shape else float("inf")
    if grid_error > 1e-3:
        raise DemoError(
            f"{reader} reads shape {read.shape} and affine\n{read.affine}\nexpected {source.shape} on\n{source.affine}"
        )
    value_error = float(np.abs(back.astype(np.float64) - source.array).max())
    if value_error > 1e-6 * float(np.abs(source.array).max()):
        raise DemoError(f"{reader} reads values that differ from the source by up to {value_error:.3g}")
    return f"{reader}: {read.shape} {read.orientation}, affine error {grid_error:.2g} mm, value error {value_error:.2g}"


def main(argv: list[str] | None = None) -> int:
    """Command line: write and verify the demo zip."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=None, help=f"IXI T1 NIfTI (default: shared {DEFAULT_NAME})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="zip to write (default: %(default)s)")
    args = parser.parse_args(argv)
    source_path = args.input or default_input()
    if source_path is None:
        print(f"error: {DEFAULT_NAME} not found in the shared test data; pass --input or set MEDPIPES_TEST_DATA", file=sys.stderr)
        return 2
    try:
        source = read_image(source_path)
        datasets = build_series(source, Path(source_path))
        write_zip(datasets, args.output)
        report = [check_sitk(args.output, source), check_medpipes(args.output, source)]
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({len(datasets)} slices, {size / 1e6:.2f} MB) from {source_path}")
    for line in report:
        print(f"  read back with {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
