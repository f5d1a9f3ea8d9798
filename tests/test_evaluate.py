"""`medpipes evaluate` on real brain masks against perturbed copies: the scores are the ones counted by hand."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from medpipes.core.cli.main import main


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def save(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.uint8), affine), str(path))
    return path


@pytest.fixture(scope="module")
def brain_masks(shared_data, tmp_path_factory) -> tuple[Path, dict[str, np.ndarray], np.ndarray]:
    """Reference masks (DLMUSE > 0) of Subj1 and Subj2 in a label folder."""
    folder = shared_data("brain", "nichart", "dlmuse_seg")
    out = tmp_path_factory.mktemp("labels")
    masks = {}
    affine = None
    for subject in ("Subj1", "Subj2"):
        image = nib.load(str(folder / f"{subject}_T1_DLMUSE.nii.gz"))
        masks[subject] = (np.asarray(image.dataobj) > 0).astype(np.uint8)
        affine = image.affine
        save(masks[subject], affine, out / f"{subject}.nii.gz")
    return out, masks, affine


@pytest.mark.realdata
def test_cut_and_shifted_masks_score_the_hand_counted_dice(tmp_path, brain_masks, capsys):
    labels, masks, affine = brain_masks
    reference = masks["Subj1"]
    cut = reference.copy()
    middle = int(np.median(np.nonzero(reference)[0]))
    cut[:middle] = 0  # the prediction misses the brain below the middle plane: B is a subset of A
    a, removed = int(reference.sum()), int(reference[:middle].sum())
    expected_cut = 2 * (a - removed) / (2 * a - removed)
    shifted = np.zeros_like(masks["Subj2"])
    shifted[1:] = masks["Subj2"][:-1]  # one voxel (2 mm) along i
    both = int(np.count_nonzero(shifted & masks["Subj2"]))
    expected_shift = 2 * both / (int(shifted.sum()) + int(masks["Subj2"].sum()))
    predictions = tmp_path / "pred"
    save(cut, affine, predictions / "Subj1.nii.gz")
    save(shifted, affine, predictions / "Subj2.nii.gz")

    out = tmp_path / "scores.csv"
    assert main(["evaluate", str(predictions), str(labels), "--out", str(out)]) == 0
    rows = {(r["case"], r["label"]): r for r in read_rows(out)}
    assert set(rows) == {("Subj1", "1"), ("Subj2", "1"), ("mean", "1")}
    s1, s2 = rows[("Subj1", "1")], rows[("Subj2", "1")]
    assert float(s1["dice"]) == pytest.approx(expected_cut, abs=1e-5)
    assert float(s1["iou"]) == pytest.approx((a - removed) / a, abs=1e-5)
    assert float(s1["sensitivity"]) == pytest.approx((a - removed) / a, abs=1e-5)
    assert float(s1["specificity"]) == pytest.approx(1.0)  # nothing predicted outside the brain
    assert float(s2["dice"]) == pytest.approx(expected_shift, abs=1e-5)
    assert 0.85 < expected_shift < 0.99 and 0.5 < expected_cut < 0.9  # the perturbations are not trivial
    assert float(s2["hd95_mm"]) == pytest.approx(2.0)  # every surface voxel is 0 or one 2 mm voxel away
    assert float(rows[("mean", "1")]["dice"]) == pytest.approx((expected_cut + expected_shift) / 2, abs=1e-5)
    assert "mean Dice" in capsys.readouterr().out


@pytest.mark.realdata
def test_csv_of_predictions_and_identical_masks_score_perfectly(tmp_path, brain_masks):
    labels, masks, affine = brain_masks
    save(masks["Subj2"], affine, tmp_path / "p" / "mine.nii.gz")
    table = tmp_path / "preds.csv"
    table.write_text("case,prediction,label\nSubj2,p/mine.nii.gz,Subj2.nii.gz\n")
    out = tmp_path / "scores.csv"
    assert main(["evaluate", str(table), str(labels), "--out", str(out)]) == 0
    row = read_rows(out)[0]
    assert row["case"] == "Subj2"
    assert [float(row[k]) for k in ("dice", "iou", "sensitivity", "specificity", "hd95_mm")] == [1, 1, 1, 1, 0]


def test_prediction_without_a_label_of_the_same_name_is_named(tmp_path, capsys):
    affine = np.eye(4)
    save(np.ones((4, 4, 4)), affine, tmp_path / "pred" / "caseA.nii.gz")
    save(np.ones((4, 4, 4)), affine, tmp_path / "labels" / "caseB.nii.gz")
    code = main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "labels"), "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "'caseA' has no label file of the same name" in err
    assert not (tmp_path / "s.csv").exists()


def test_prediction_on_another_grid_is_refused(tmp_path, capsys):
    save(np.ones((4, 4, 4)), np.eye(4), tmp_path / "pred" / "c.nii.gz")
    save(np.ones((4, 4, 5)), np.eye(4), tmp_path / "labels" / "c.nii.gz")
    code = main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "labels"), "--out", str(tmp_path / "s.csv")])
    assert code == 2 and "resample the prediction onto the label's grid" in capsys.readouterr().err


def test_probability_maps_are_refused(tmp_path, capsys):
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), 0.3, np.float32), affine), str(tmp_path / "p.nii.gz"))
    (tmp_path / "pred").mkdir()
    (tmp_path / "p.nii.gz").rename(tmp_path / "pred" / "c.nii.gz")
    save(np.ones((4, 4, 4)), affine, tmp_path / "labels" / "c.nii.gz")
    code = main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "labels"), "--out", str(tmp_path / "s.csv")])
    assert code == 2 and "non-integer values" in capsys.readouterr().err
