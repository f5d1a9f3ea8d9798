"""Conformance with dcm2niix's own validation sets: every reference NIfTI under dcm_qa*/Ref must equal
our reading of the matching series in voxel values and world geometry (compared in one orientation)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medpipes.core.io.dicom import DicomScan, load_series, scan_dicom

# reference file (under dicom/) -> (input folder under dicom/, series selector as `dicom ls` shows it)
REFERENCES: dict[str, tuple[str, str]] = {
    **{f"dcm_qa_ts/Ref/{n}.nii": ("dcm_qa_ts/In", str(n)) for n in range(1, 10)},
    **{
        f"dcm_qa/Ref/{name}_{sn}.nii": ("dcm_qa/In", str(sn))
        for name, sn in [
            ("ax_asc_35sl", 6), ("ax_desc_35sl", 7), ("ax_int_35sl", 8), ("ax_asc_36sl", 9),
            ("ax_desc_36sl", 10), ("ax_asc_36sl", 11), ("ax_int_36sl", 12), ("cor_asc_36sl", 13),
            ("cor_desc_36sl", 14), ("cor_int_36sl", 15), ("cor_asc_35sl", 16), ("cor_desc_35sl", 17),
            ("cor_int_35sl", 18), ("sag_asc_36sl", 19), ("sag_desc_36sl", 20), ("sag_int_36sl", 21),
            ("sag_asc_35sl", 22), ("sag_desc_35sl", 23), ("sag_int_35sl", 24), ("fMRI_MB_asc", 25),
            ("fMRI_MB_int", 26),
        ]
    },
    "dcm_qa_mosaic/Ref/2_ep2d_Asc.nii": ("dcm_qa_mosaic/In", "2"),
    "dcm_qa_mosaic/Ref/5_ep2d_Int_HF.nii": ("dcm_qa_mosaic/In", "5"),  # reversed (H>>F) mosaic numbering
    "dcm_qa_mosaic/Ref/6_cmrr_Asc.nii": ("dcm_qa_mosaic/In", "6"),
    **{f"dcm_qa_nih/Ref/DCM2NIIX_regression_test_{n}.nii": ("dcm_qa_nih/In/20180918GE", str(n)) for n in range(4, 8)},
    **{
        f"dcm_qa_nih/Ref/EPI_PE={pe}_{n}.nii": ("dcm_qa_nih/In/20180918Si", str(n))
        for pe, n in [("AP", 3), ("PA", 4), ("RL", 5), ("LR", 6)]
    },
    "dcm_qa_enh/Ref/Philips_WIP_B0_NS_801_e1.nii": ("dcm_qa_enh/In/Philips", "801"),
    "dcm_qa_enh/Ref/Philips_WIP_B0_NS_801_e2_fieldmaphz.nii": ("dcm_qa_enh/In/Philips", "801-e2"),
    "dcm_qa_enh/Ref/Siemens_REST1_w_SMS_PF7-8_6.nii": ("dcm_qa_enh/In/Siemens", "6"),
    "dcm_qa_frag/Ref/anat-T1w_acq-tfl_5001.nii": ("dcm_qa_frag/In", "5001"),
}

AFFINE_TOL_MM = 1e-3
_RESULTS: dict[str, str] = {}
_SCANS: dict[Path, DicomScan] = {}


def _scan(folder: Path) -> DicomScan:
    if folder not in _SCANS:
        _SCANS[folder] = scan_dicom(folder)
    return _SCANS[folder]


@pytest.fixture(scope="module", autouse=True)
def summary_table(request):
    """Print a pass/total table of every reference at the end of the module (past output capture)."""
    yield
    if not _RESULTS:
        return
    width = max(len(k) for k in _RESULTS)
    lines = [f"{ref:<{width}}  {result}" for ref, result in sorted(_RESULTS.items())]
    passed = sum(r == "pass" for r in _RESULTS.values())
    text = "\n\ndcm2niix conformance (dcm_qa*):\n" + "\n".join(lines) + f"\n{passed}/{len(REFERENCES)} references pass\n"
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(text)
    else:
        print(text)


@pytest.mark.realdata
def test_every_reference_is_in_the_table(shared_data):
    """The table covers all 45 reference NIfTIs in the data (none silently skipped)."""
    dicom = shared_data("dicom")
    found = {str(p.relative_to(dicom)) for p in dicom.glob("dcm_qa*/Ref/*.nii")}
    assert found == set(REFERENCES)
    assert len(found) == 45


@pytest.mark.realdata
@pytest.mark.parametrize("reference", sorted(REFERENCES))
def test_matches_dcm2niix_reference(reference: str, shared_data) -> None:
    folder, selector = REFERENCES[reference]
    dicom = shared_data("dicom")
    _RESULTS[reference] = "error"
    scan = _scan(dicom / folder)
    info = scan.select(selector)
    image = load_series(scan, info)
    ref = nib.load(dicom / reference)

    ours_c = nib.as_closest_canonical(image.to_nibabel())
    ref_c = nib.as_closest_canonical(ref)
    affine_err = float(np.abs(ours_c.affine - ref_c.affine).max())
    ours = np.asanyarray(ours_c.dataobj)
    theirs = np.asanyarray(ref_c.dataobj)
    if ours.shape != theirs.shape:
        _RESULTS[reference] = f"FAIL shape {ours.shape} vs {theirs.shape}"
    elif affine_err >= AFFINE_TOL_MM:
        _RESULTS[reference] = f"FAIL affine differs by {affine_err:.4g} mm"
    elif theirs.dtype.kind in "iu" and ours.dtype.kind in "iu":
        diff = int(np.abs(ours.astype(np.int64) - theirs.astype(np.int64)).max())
        _RESULTS[reference] = "pass" if diff == 0 else f"FAIL values differ by up to {diff}"
    else:
        scale = float(np.abs(theirs).max()) or 1.0
        close = np.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale)
        _RESULTS[reference] = "pass" if close else f"FAIL values differ by up to {np.abs(ours - theirs).max():.4g}"
    assert _RESULTS[reference] == "pass", f"{reference} (series {info.id} of {folder}): {_RESULTS[reference]}"
    if theirs.ndim == 4:
        assert "4d" in info.flags and info.n_volumes == theirs.shape[3]
