"""``l2gnet measure`` on real ACDC frames written as NIfTI (1.5625 x 1.5625 x 10 mm): the three
forms, exact against numpy with labels given, and every bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from scan_io.nifti import affine_from_scale
from tests.helpers import cli_fails
from training.cli import main
from training.data.readers import read_h5_volumes

REPO = Path(__file__).resolve().parents[2]
ACDC = REPO / "napari_l2gnet" / "resources" / "acdc_cine_mri_l2gnet.safetensors"
DEMO = REPO / "napari_l2gnet" / "resources" / "demo_l2gnet.safetensors"
SPACING = (10.0, 1.5625, 1.5625)  # display order (slices, rows, columns)
ML = 1.5625 * 1.5625 * 10 / 1000
NAMES = "background,RV,Myo,LV"


def _save(path: Path, display: np.ndarray, affine=None) -> Path:
    """Write display-layout (S, rows, cols) data (or (t, S, rows, cols)) as NIfTI."""
    affine = affine_from_scale(SPACING) if affine is None else affine
    if display.ndim == 4:  # (t, S, r, c) -> (x, y, z, t)
        voxels = display.transpose(3, 2, 1, 0)
    else:
        voxels = display.transpose(2, 1, 0)
    img = nib.Nifti1Image(np.ascontiguousarray(voxels), affine)
    img.header.set_xyzt_units("mm", "msec")
    nib.save(img, str(path))
    return path


@pytest.fixture(scope="module")
def acdc(shared_data, tmp_path_factory):
    """patient002's ED and ES frames as NIfTI images and label maps, plus a 2-frame cine."""
    folder = tmp_path_factory.mktemp("acdc")
    cases = {c.name: c for c in read_h5_volumes(shared_data / "acdc" / "val_volumes")
             if c.name.startswith("patient002")}
    ed, es = cases["patient002_frame01"], cases["patient002_frame02"]
    files = {
        "ed": _save(folder / "ed.nii.gz", ed.image), "es": _save(folder / "es.nii.gz", es.image),
        "ed_lab": _save(folder / "ed_seg.nii.gz", ed.label),
        "es_lab": _save(folder / "es_seg.nii.gz", es.label),
        # frames in the order ES, ED: ED must be found as frame 1
        "cine": _save(folder / "cine.nii.gz", np.stack([es.image, ed.image])),
        "cine_lab": _save(folder / "cine_seg.nii.gz", np.stack([es.label, ed.label])),
    }
    return files, ed.label, es.label


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_labels_pair_is_exact(acdc, tmp_path):
    files, ed, es = acdc
    out = tmp_path / "report.json"
    assert main(["measure", "--ed-labels", str(files["ed_lab"]), "--es-labels",
                 str(files["es_lab"]), "--class-names", NAMES, "--out", str(out)]) == 0
    report = _json(out)
    assert set(report) == {"LV", "RV", "Myo"} and set(report["Myo"]) == {"mass_g"}
    for name, c in (("LV", 3), ("RV", 1)):
        assert set(report[name]) == {"EDV_ml", "ESV_ml", "SV_ml", "EF_percent"}
        edv, esv = (ed == c).sum() * ML, (es == c).sum() * ML
        assert report[name]["EDV_ml"] == pytest.approx(edv, rel=1e-9)
        assert report[name]["ESV_ml"] == pytest.approx(esv, rel=1e-9)
        assert report[name]["SV_ml"] == pytest.approx(edv - esv, rel=1e-9)
        assert report[name]["EF_percent"] == pytest.approx(100 * (edv - esv) / edv, rel=1e-9)
    assert report["Myo"]["mass_g"] == pytest.approx((ed == 2).sum() * ML * 1.05, rel=1e-9)


def test_cine_labels_pick_ed_es_and_agree_with_the_pair(acdc, tmp_path, capsys):
    files, ed, es = acdc
    pair, cine, table = tmp_path / "pair.json", tmp_path / "cine.json", tmp_path / "c.csv"
    assert main(["measure", "--ed-labels", str(files["ed_lab"]), "--es-labels",
                 str(files["es_lab"]), "--class-names", NAMES, "--out", str(pair)]) == 0
    # the printed table ends with the basal slices to check (ACDC stacks start at the base)
    first = [np.flatnonzero(lab.reshape(len(lab), -1).any(1))[:2] for lab in (ed, es)]
    basal = (f"Check the basal slices before reading the RV: slices {first[0][0]}, "
             f"{first[0][1]} at ED and {first[1][0]}, {first[1][1]} at ES")
    assert basal in capsys.readouterr().out
    assert main(["measure", "--labels", str(files["cine_lab"]), "--class-names", NAMES,
                 "--out", str(cine), "--csv", str(table)]) == 0
    assert basal in capsys.readouterr().out
    assert _json(cine) == _json(pair)
    rows = table.read_text().splitlines()
    assert rows[0] == "frame,LV_ml,RV_ml,Myo_ml,phase"
    assert rows[1].endswith(",ES") and rows[2].endswith(",ED")


def test_checkpoint_cine_equals_checkpoint_pair(acdc, tmp_path, capsys):
    """The model segments every frame; the indices equal those of the ED/ES pair form, and
    the LV EF is near the expert's."""
    files, ed, es = acdc
    pair, cine = tmp_path / "pair.json", tmp_path / "cine.json"
    assert main(["measure", "--ed", str(files["ed"]), "--es", str(files["es"]),
                 "--checkpoint", str(ACDC), "--device", "cpu", "--out", str(pair)]) == 0
    assert main(["measure", str(files["cine"]), "--checkpoint", str(ACDC), "--device", "cpu",
                 "--out", str(cine)]) == 0
    assert "ED = frame 1" in capsys.readouterr().out
    assert _json(cine) == _json(pair)
    truth_ef = 100 * ((ed == 3).sum() - (es == 3).sum()) / (ed == 3).sum()
    assert abs(_json(pair)["LV"]["EF_percent"] - truth_ef) < 8


def test_volumes_of_a_label_map(acdc, tmp_path):
    files, ed, _ = acdc
    out, table = tmp_path / "v.json", tmp_path / "v.csv"
    assert main(["measure", str(files["ed"]), "--labels", str(files["ed_lab"]),
                 "--class-names", NAMES, "--out", str(out), "--csv", str(table)]) == 0
    report = _json(out)
    assert report["voxel_volume_ml"] == pytest.approx(ML)
    for name, c in (("RV", 1), ("Myo", 2), ("LV", 3)):
        row = report["classes"][name]
        assert row["voxels"] == int((ed == c).sum())
        assert row["volume_ml"] == pytest.approx((ed == c).sum() * ML)
        touches = any(np.take(ed == c, i, a).any() for a in range(3) for i in (0, -1))
        assert row["touches_border"] == touches
    assert table.read_text().splitlines()[0] == "label,name,voxels,volume_ml,touches_border"


def test_bad_inputs_exit_2_and_write_nothing(acdc, tmp_path, capsys):
    files, ed, es = acdc
    out = tmp_path / "r.json"
    other = _save(tmp_path / "other_seg.nii.gz", es[:, :-2])
    cli_fails(["measure", "--ed-labels", str(files["ed_lab"]), "--es-labels", str(other),
            "--class-names", NAMES, "--out", str(out)], capsys, "different grids")
    cli_fails(["measure", "--ed", str(files["ed"]), "--es", str(files["es"]), "--checkpoint",
            str(DEMO), "--out", str(out)], capsys, "no LV, RV, Myo")
    five_d = tmp_path / "time_on_axis4.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3, 1, 4), np.int16), np.eye(4)), str(five_d))
    cli_fails(["measure", str(five_d), "--checkpoint", str(ACDC), "--out", str(out)], capsys,
           "time on axis 3")
    bare = tmp_path / "bare_seg.nii"
    img = nib.Nifti1Image(ed.transpose(2, 1, 0).copy(), None)  # no geometry: codes 0
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    nib.save(img, str(bare))
    cli_fails(["measure", "--ed-labels", str(bare), "--es-labels", str(bare), "--class-names",
            NAMES, "--out", str(out)], capsys, "no voxel size")
    assert not out.exists()
    existing = tmp_path / "kept.json"
    existing.write_text("mine")
    cli_fails(["measure", "--ed-labels", str(files["ed_lab"]), "--es-labels",
            str(files["es_lab"]), "--class-names", NAMES, "--out", str(existing)], capsys,
           "--overwrite")
    assert existing.read_text() == "mine"
    assert main(["measure", "--ed-labels", str(files["ed_lab"]), "--es-labels",
                 str(files["es_lab"]), "--class-names", NAMES, "--out", str(existing),
                 "--overwrite"]) == 0
    assert set(_json(existing)) == {"LV", "RV", "Myo"}


def test_no_voxel_size_gives_voxel_counts_and_a_note(acdc, tmp_path, capsys):
    _, ed, _ = acdc
    bare = tmp_path / "bare_seg.nii"
    img = nib.Nifti1Image(ed.transpose(2, 1, 0).copy(), None)
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    nib.save(img, str(bare))
    out = tmp_path / "v.json"
    assert main(["measure", "--labels", str(bare), "--class-names", NAMES, "--out",
                 str(out)]) == 0
    assert "no voxel size" in capsys.readouterr().err
    report = _json(out)
    assert report["classes"]["LV"]["voxels"] == int((ed == 3).sum())
    assert report["classes"]["LV"]["volume_ml"] is None and report["voxel_volume_ml"] is None


def test_label_files_that_carry_class_names_need_no_class_names(acdc, tmp_path):
    """A label file written by this package keeps its class names in the header."""
    from scan_io.cine import load_cine, save_cine

    files, _, _ = acdc
    cine = load_cine(files["cine_lab"], labels=True)
    named = save_cine(tmp_path / "named_seg.nii.gz", cine.frames, cine.affine,
                      cine.nifti.header, cine.orientation, labels=True,
                      class_names=NAMES.split(","))
    given, stored = tmp_path / "given.json", tmp_path / "stored.json"
    assert main(["measure", "--labels", str(files["cine_lab"]), "--class-names", NAMES,
                 "--out", str(given)]) == 0
    assert main(["measure", "--labels", str(named), "--out", str(stored)]) == 0
    assert _json(stored) == _json(given)
