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
from training.phantom import make_phantom

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
