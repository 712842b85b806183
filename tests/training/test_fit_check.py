"""Fit checks between a scan and a checkpoint, and the after-segmenting class summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scan_io.nifti import load_nifti
from training.inference.fit_check import (
    CT,
    MRI,
    NORMALISED,
    ScanExpectation,
    check_fit,
    guess_modality,
    summarize_result,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ct_abdomen"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")

CT_MODEL = {"normalization": {"kind": "ct_window", "low": -125, "high": 275}}
MRI_MODEL = {"normalization": {"kind": "percentile", "low": 0, "high": 100},
             "card": {"modality": "MRI (cardiac cine)"},
             "expected_scan": {"in_plane_spacing_mm": [0.7, 1.92],
                               "slice_spacing_mm": [5, 10], "in_plane_px": [208, 512],
                               "slice_count": [6, 18]}}


def _ct_like(rng) -> np.ndarray:
    vol = np.full((8, 64, 64), -1000.0, np.float32)  # air around a body
    vol[:, 12:52, 12:52] = rng.normal(40, 20, (8, 40, 40))
    return vol.astype(np.int16)


def _mr_like(rng) -> np.ndarray:
    return (rng.gamma(2.0, 120.0, (8, 64, 64))).astype(np.int16)


def test_modality_guess_on_constructed_volumes():
    rng = np.random.default_rng(0)
    assert guess_modality(_ct_like(rng)) == CT
    assert guess_modality(_mr_like(rng)) == MRI
    assert guess_modality(rng.random((4, 16, 16), dtype=np.float32)) == NORMALISED


@needs_data
def test_real_mr_and_ct_are_told_apart():
    mr = load_nifti(DATA / "example_mr_sm.nii.gz").data
    ct = load_nifti(DATA / "example_ct_sm.nii.gz").data
    assert guess_modality(mr) == MRI
    assert guess_modality(ct) == CT


def test_ct_model_on_mri_warns_and_on_ct_does_not():
    rng = np.random.default_rng(1)
    issues = check_fit(_mr_like(rng), CT_MODEL)
    assert [i.kind for i in issues] == ["modality"]
    assert "trained on CT; this image looks like MRI" in issues[0].message
    assert check_fit(_ct_like(rng), CT_MODEL) == []


def test_mri_model_on_ct_warns():
    issues = check_fit(_ct_like(np.random.default_rng(2)), MRI_MODEL, axis=0)
    assert "trained on MRI; this image looks like CT" in issues[0].message


def test_ct_model_on_normalised_image_warns_about_units():
    issues = check_fit(np.random.default_rng(3).random((4, 32, 32)), CT_MODEL)
    assert [i.kind for i in issues] == ["intensity"]
    assert "Hounsfield" in issues[0].message


def test_geometry_checks_against_the_expected_scan():
    rng = np.random.default_rng(4)
    fitting = _mr_like(rng)[:, :, :48]
    fitting = np.pad(fitting, ((0, 0), (0, 200), (0, 200)))  # 8 slices of 264 x 248
    assert check_fit(fitting, MRI_MODEL, axis=0, spacing=(8.0, 1.5, 1.5)) == []
    kinds = [i.kind for i in check_fit(fitting, MRI_MODEL, axis=0, spacing=(3.0, 3.0, 3.0))]
    assert kinds == ["spacing", "spacing"]  # in-plane 3 mm and 3 mm slices, both outside
    small = _mr_like(rng)  # 64 x 64 px slices
    assert [i.kind for i in check_fit(small, MRI_MODEL, axis=0)] == ["size"]
    # the wrong slice axis: 264 "slices" of 8 x 248
    issues = check_fit(fitting, MRI_MODEL, axis=1)
    assert "slices" in [i.kind for i in issues]
    assert "check the slice axis" in " ".join(i.message for i in issues)


def test_expectation_round_trips_through_metadata():
    exp = ScanExpectation.from_metadata(MRI_MODEL)
    assert exp.modality == MRI and exp.slice_count == (6.0, 18.0)
    assert ScanExpectation.from_metadata({"expected_scan": exp.to_metadata()}) == exp
    assert ScanExpectation.from_metadata({"expected_scan": {"slice_count": "junk"}}) == \
        ScanExpectation()  # unreadable entries are ignored, never raise
    assert ScanExpectation.from_metadata(None) == ScanExpectation()


def test_handful_of_voxels_is_listed_as_spurious():
    labels = np.zeros((10, 40, 40), np.uint8)
    labels[2:8, 5:25, 5:25] = 1  # 2400 voxels
    labels[0, 0, :9] = 3  # 9 stray voxels
    names = ["background", "liver", "gallbladder", "spleen"]
    summary = summarize_result(labels, names)
    assert [c.name for c in summary.found] == ["liver"]
    assert [(c.name, c.voxels) for c in summary.spurious] == [("spleen", 9)]
    text = summary.describe()
    assert text.startswith("Found: liver.") and "spleen: 9 voxels" in text
    assert "gallbladder" not in text
    assert summarize_result(np.zeros((3, 4, 4), np.uint8), names).describe() == \
        "Found: nothing."


@pytest.mark.parametrize("case", ["metal", "little_air", "mri", "normalised"])
def test_display_window_and_fit_check_agree_on_modality(case):
    """One rule (scan_io.hounsfield) decides CT for both: a scan shown with the CT window is
    never checked as MRI. The two edges where separate rules used to disagree: a CT with metal
    above 4100 HU, and one whose air is under 1% of the voxels (a tight field of view)."""
    from scan_io.display import choose_display_window

    rng = np.random.default_rng(3)
    vol = _ct_like(rng).astype(np.float32)
    if case == "metal":
        vol[:, 30:32, 30:32] = 8000.0  # a hip implant on an extended HU scale
    elif case == "little_air":
        vol = rng.normal(40, 20, (8, 64, 64)).astype(np.float32)
        vol.reshape(-1)[:: 140] = -1000.0  # 0.7 % of the voxels are air
    elif case == "mri":
        vol = _mr_like(rng).astype(np.float32)
    else:
        vol = rng.random((8, 64, 64), dtype=np.float32)
    shown_as_ct = choose_display_window(vol).kind == "ct_soft_tissue"
    checked_as_ct = guess_modality(vol) == CT
    assert shown_as_ct == checked_as_ct == (case in ("metal", "little_air"))
