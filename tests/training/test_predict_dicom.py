"""``l2gnet predict`` on DICOM (issue 15 via scan_io): a series folder in, a DICOM SEG or a NIfTI
out, and a study folder of series processed as a batch; the labels equal those of the same
scan given as NIfTI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from scan_io.nifti import save_nifti
from scan_io.testing import display_affine_lps, write_dicom_series
from scan_io.volume import load_scan
from training.cli import main
from training.data.phantom import make_phantom

DEMO = Path(__file__).resolve().parents[2] / "napari_l2gnet/resources/demo_l2gnet.safetensors"


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> tuple[Path, Path]:
    """The phantom as NIfTI, and the same voxels as a DICOM series in a study folder."""
    root = tmp_path_factory.mktemp("dicom")
    ph = make_phantom(0, shape=(4, 96, 96))
    nifti = save_nifti(root / "twin.nii.gz", ph.to_nifti_order(ph.image), affine=ph.affine)
    twin = load_scan(nifti)
    series = root / "study" / "abdomen"
    write_dicom_series(series, twin.data, display_affine_lps(twin.nifti), intercept=-1024,
                       seed=3, series_description="Abdomen CT")
    return nifti, series


def test_series_folder_to_seg_and_to_nifti(scans, tmp_path, capsys):
    nifti, series = scans
    base = ["--checkpoint", str(DEMO), "--device", "cpu"]
    assert main(["predict", str(nifti), "--out", str(tmp_path / "twin.nii.gz"), *base]) == 0
    assert main(["predict", str(series), "--out", str(tmp_path / "series.nii.gz"), *base]) == 0
    from_nifti = load_scan(tmp_path / "twin.nii.gz", labels=True).data
    from_dicom = load_scan(tmp_path / "series.nii.gz", labels=True).data
    assert len(np.unique(from_nifti)) > 3
    np.testing.assert_array_equal(from_dicom, from_nifti)

    assert main(["predict", str(series), "--out", str(tmp_path / "seg.dcm"), *base]) == 0
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert seg.Modality == "SEG"
    assert "liver" in {s.SegmentLabel for s in seg.SegmentSequence}
    # Not twice without --overwrite; a NIfTI input cannot become a SEG (before any work).
    capsys.readouterr()
    assert main(["predict", str(series), "--out", str(tmp_path / "seg.dcm"), *base]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["predict", str(nifti), "--out", str(tmp_path / "n.dcm"), *base]) == 2
    assert "DICOM SEG needs a DICOM input series" in capsys.readouterr().err


def test_study_folder_is_a_batch_of_series(scans, tmp_path, capsys):
    nifti, series = scans
    study = series.parent
    out = tmp_path / "out"
    assert main(["predict", str(study), "--checkpoint", str(DEMO), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["abdomen.nii.gz"]
    assert capsys.readouterr().out.split() == [str(out / "abdomen.nii.gz")]


def test_study_folder_to_dicom_seg_and_run_again_inside_it(scans, tmp_path, capsys):
    """``--format seg``: every series of a study folder becomes SERIES.dcm, a DICOM SEG that
    references it. Written into the study folder itself and run again, the SEG folder is not
    a series (a folder of SEG objects, whoever made them, holds no image); an existing SEG is
    kept without --overwrite."""
    import shutil

    nifti, series = scans
    study = tmp_path / "study"
    shutil.copytree(series.parent, study)
    out = study / "segs"
    base = ["--checkpoint", str(DEMO), "--device", "cpu", "--format", "seg"]
    assert main(["predict", str(study), "--out", str(out), *base]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["abdomen.dcm"]
    seg = pydicom.dcmread(out / "abdomen.dcm")
    assert seg.Modality == "SEG" and seg.Manufacturer == "napari-l2gnet"
    sources = {pydicom.dcmread(f).SOPInstanceUID for f in (study / "abdomen").iterdir()}
    referenced = {item.ReferencedSOPInstanceUID
                  for frame in seg.PerFrameFunctionalGroupsSequence
                  for item in frame.DerivationImageSequence[0].SourceImageSequence}
    assert referenced and referenced <= sources
    before = (out / "abdomen.dcm").read_bytes()
    capsys.readouterr()

    assert main(["predict", str(study), "--out", str(out), *base]) == 2
    err = capsys.readouterr().err
    [line] = err.splitlines()  # one line, about the existing SEG; nothing about segs/ as a scan
    assert line.startswith(f"l2gnet predict: error: {out / 'abdomen.dcm'} exists")
    assert (out / "abdomen.dcm").read_bytes() == before
    assert main(["predict", str(study), "--out", str(out), *base, "--overwrite"]) == 0
    assert capsys.readouterr().out.split() == [str(out / "abdomen.dcm")]
    assert sorted(p.name for p in out.iterdir()) == ["abdomen.dcm"]


def test_format_seg_is_refused_for_nifti_before_any_work(scans, tmp_path, capsys):
    nifti, series = scans
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / nifti.name).write_bytes(nifti.read_bytes())
    base = ["--checkpoint", str(DEMO), "--device", "cpu"]
    assert main(["predict", str(mixed), str(series), "--out", str(tmp_path / "o"), *base,
                 "--format", "seg"]) == 2
    err = capsys.readouterr().err
    assert "--format seg" in err and "is NIfTI" in err and err.count("\n") == 1
    assert main(["predict", str(series), "--out", str(tmp_path / "s.nii.gz"), *base,
                 "--format", "seg"]) == 2
    assert "must end in .dcm" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "s.nii.gz").exists()


# ------------------------------------------------------------------ real PACS exports (issue 27)


def test_real_series_to_seg_without_uids_and_with_an_empty_charset(ct_dicom, tmp_path,
                                                                   capsys):
    """The Siemens JPEG 2000 series (no Study/Series/SOP UIDs) and the three slices with an
    empty SpecificCharacterSet both become SEGs; the first with a one-line note that its SEG
    references generated UIDs, the same on a second run."""
    base = ["--checkpoint", str(DEMO), "--device", "cpu"]
    siemens = ct_dicom / "siemens_jpeg2000"
    for name in ("a.dcm", "b.dcm"):
        assert main(["predict", str(siemens), "--out", str(tmp_path / name), *base]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "generated UIDs" in line]
    assert len(notes) == 2 and "no StudyInstanceUID, SeriesInstanceUID" in notes[0]
    assert "Traceback" not in err
    a, b = (pydicom.dcmread(tmp_path / n) for n in ("a.dcm", "b.dcm"))
    assert a.StudyInstanceUID == b.StudyInstanceUID
    assert (a.ReferencedSeriesSequence[0].SeriesInstanceUID
            == b.ReferencedSeriesSequence[0].SeriesInstanceUID)
    metas = {pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
             for f in siemens.iterdir()}
    assert {r.ReferencedSOPInstanceUID
            for r in a.ReferencedSeriesSequence[0].ReferencedInstanceSequence} == metas

    assert main(["predict", str(ct_dicom / "ct3slice"), "--out", str(tmp_path / "c.dcm"),
                 *base]) == 0
    c = pydicom.dcmread(tmp_path / "c.dcm")
    assert c.Modality == "SEG" and "SpecificCharacterSet" not in c
    # Each segment recommends its class's colour from the checkpoint (PACS viewers use it).
    from scan_io.dicom_seg_read import read_seg_info
    from src_model import read_checkpoint_meta

    colors = read_checkpoint_meta(DEMO).class_colors
    for segment in read_seg_info(tmp_path / "c.dcm").segments:
        cls = int(segment.tracking_id.split()[-1])
        np.testing.assert_allclose(segment.color_rgb, colors[cls][:3], atol=2 / 255)
    assert "generated UIDs" not in capsys.readouterr().err


def test_series_a_seg_cannot_reference_is_refused_before_inference(ct_dicom, tmp_path,
                                                                   capsys):
    folder = tmp_path / "noclass"
    folder.mkdir()
    for f in (ct_dicom / "ct3slice").iterdir():
        ds = pydicom.dcmread(f)
        ds.SOPClassUID = ""
        ds.file_meta.MediaStorageSOPClassUID = ""
        ds.save_as(folder / f.name)
    out = tmp_path / "x.dcm"
    assert main(["predict", str(folder), "--out", str(out), "--checkpoint", str(DEMO),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no SOPClassUID" in err and "NIfTI" in err
    assert "slice/s" not in err  # refused before the first slice was segmented
    assert not out.exists()
    # NIfTI output needs no SOP class: the same series still segments.
    assert main(["predict", str(folder), "--out", str(tmp_path / "x.nii.gz"), "--checkpoint",
                 str(DEMO), "--device", "cpu"]) == 0


def test_evaluate_and_finetune_take_a_seg_as_the_labels_of_its_series(ct_dicom, tmp_path,
                                                                      capsys):
    """dcmqi's liver SEG beside ct3slice: evaluate scores the model's liver against it (the
    same Dice as computed here from a NIfTI prediction), finetune trains on its 3 slices."""
    import json

    from scan_io.dicom_seg_read import load_seg_on_series

    seg = ct_dicom / "ct3slice_liver_seg.dcm"
    assert main(["evaluate", "--checkpoint", str(DEMO), "--data", str(seg), "--device", "cpu",
                 "--protocol", "clinical", "--out", str(tmp_path / "e.json")]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert main(["predict", str(ct_dicom / "ct3slice"), "--out", str(tmp_path / "p.nii.gz"),
                 "--checkpoint", str(DEMO), "--device", "cpu"]) == 0
    pred = load_scan(tmp_path / "p.nii.gz", labels=True).data == 5
    truth = load_seg_on_series(seg)[1] > 0
    dice = 2 * np.sum(pred & truth) / (pred.sum() + truth.sum())
    [liver] = [row for row in report["cases"]["ct3slice_liver_seg"] if row["class"] == 5]
    assert liver["dice"] == pytest.approx(dice, abs=1e-6) and truth.sum() > 30_000
    assert all(row["empty"] in ("truth", "both") for row in report["cases"][
        "ct3slice_liver_seg"] if row["class"] != 5)  # the SEG has no other organ

    out = tmp_path / "ft"
    assert main(["finetune", "--from", str(DEMO), "--data", str(seg), "--out-dir", str(out),
                 "--epochs", "1", "--max-steps", "1", "--device", "cpu", "--threads", "1",
                 "--no-store"]) == 0
    assert (out / "finetuned.safetensors").is_file()
    assert "3 corrected slices of 1 volume" in capsys.readouterr().err
