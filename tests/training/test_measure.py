"""``training.evaluation.measure``: volumes, border contact and cardiac indices, exact
against numpy."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest

from training.evaluation.measure import (
    CardiacClasses,
    basal_slices,
    cardiac_indices,
    class_volumes,
    find_cardiac_classes,
    frame_volumes,
    pick_ed_es,
    scan_voxel_ml,
    voxel_volume_ml,
    write_json,
)


def _labels(seed: int, shape=(6, 20, 24)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    lab[1:5, 3:15, 4:18] = rng.integers(0, 4, (4, 12, 14))
    return lab


def test_voxel_volume_from_an_oblique_affine_is_its_determinant():
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.array([[1.5 * c, -1.2 * s, 0, 5], [1.5 * s, 1.2 * c, 0, 1], [0, 0, 8.0, 0],
                       [0, 0, 0, 1]])
    assert voxel_volume_ml(affine) == pytest.approx(1.5 * 1.2 * 8.0 / 1000)
    assert voxel_volume_ml(spacing=(10, 1.5625, 1.5625)) == pytest.approx(0.0244140625)
    assert voxel_volume_ml(np.zeros((4, 4))) is None


def test_class_volumes_match_numpy_counts_and_border():
    lab = _labels(0)
    ml = 0.0244140625
    table = class_volumes(lab, ["background", "RV", "Myo", "LV", "extra"], voxel_ml=ml)
    assert [r.name for r in table.classes] == ["RV", "Myo", "LV", "extra"]
    for row in table.classes[:3]:
        n = int((lab == row.label).sum())
        assert row.voxels == n and row.volume_ml == pytest.approx(n * ml)
        assert not row.touches_border  # the block stays inside the volume
    assert table.by_name("extra").voxels == 0 and table.by_name("extra").volume_ml == 0
    lab[0, 5, 5] = 2  # on the first slice: touches the border
    assert class_volumes(lab, ["background", "RV", "Myo", "LV"]).by_name("Myo").touches_border
    csv_lines = table.to_csv().splitlines()
    assert csv_lines[0] == "label,name,voxels,volume_ml,touches_border"
    assert csv_lines[1].startswith(f"1,RV,{int((lab == 1).sum())},")


def test_unknown_voxel_size_gives_counts_and_a_note():
    header = nib.Nifti1Header()  # codes 0, no unit: an array saved without geometry
    ml, note = scan_voxel_ml(np.eye(4), header)
    assert ml is None and "no voxel size" in note
    table = class_volumes(_labels(1), ["background", "a"], voxel_ml=ml, note=note)
    assert table.classes[0].volume_ml is None and table.classes[0].voxels > 0
    header.set_xyzt_units("meter")
    header.set_sform(np.eye(4), code=2)
    ml, note = scan_voxel_ml(np.diag([0.001, 0.001, 0.002, 1]), header)
    assert note is None and ml == pytest.approx(2e-3)  # 1 x 1 x 2 mm


def test_cardiac_indices_are_exact():
    ed, es = _labels(2), _labels(3)
    classes = find_cardiac_classes(["background", "RV", "Myo", "LV"])
    assert classes == CardiacClasses(lv=3, rv=1, myo=2)
    ml = 1.5625 * 1.5625 * 10 / 1000
    out = cardiac_indices(ed, es, classes, ml).to_dict()
    assert set(out) == {"LV", "RV", "Myo"}
    assert set(out["LV"]) == set(out["RV"]) == {"EDV_ml", "ESV_ml", "SV_ml", "EF_percent"}
    assert set(out["Myo"]) == {"mass_g"}
    for name, c in (("LV", 3), ("RV", 1)):
        edv, esv = (ed == c).sum() * ml, (es == c).sum() * ml
        assert out[name]["EDV_ml"] == pytest.approx(edv)
        assert out[name]["ESV_ml"] == pytest.approx(esv)
        assert out[name]["SV_ml"] == pytest.approx(edv - esv)
        assert out[name]["EF_percent"] == pytest.approx(100 * (edv - esv) / edv)
    assert out["Myo"]["mass_g"] == pytest.approx((ed == 2).sum() * ml * 1.05)


def test_class_names_are_found_by_meaning_and_missing_ones_refused():
    assert find_cardiac_classes(["bg", "Myocardium", "Left Ventricle", "right_ventricle"]) \
        == CardiacClasses(lv=2, rv=3, myo=1)
    with pytest.raises(ValueError, match="no LV, RV"):
        find_cardiac_classes(["background", "liver", "Myo"])


def test_ed_es_on_different_grids_are_refused():
    with pytest.raises(ValueError, match="different grids"):
        cardiac_indices(_labels(0), _labels(0, (6, 20, 25)), CardiacClasses(3, 1, 2), 1.0)


def test_cine_ed_es_are_the_largest_and_smallest_lv():
    frames = np.stack([_labels(s) for s in range(5)])
    lv = frame_volumes(frames, 3)
    assert lv.tolist() == [float((f == 3).sum()) for f in frames]
    ed, es = pick_ed_es(lv)
    assert lv[ed] == lv.max() and lv[es] == lv.min()
    with pytest.raises(ValueError, match="two frames"):
        pick_ed_es([1.0])


def test_no_lv_at_ed_writes_null_ef(tmp_path):
    empty = np.zeros((2, 4, 4), np.uint8)
    out = cardiac_indices(empty, empty, CardiacClasses(3, 1, 2), 1.0).to_dict()
    assert out["LV"]["EF_percent"] is None and out["LV"]["EDV_ml"] == 0
    path = write_json(out, tmp_path / "r.json")
    assert json.loads(path.read_text())["LV"]["EF_percent"] is None
    with pytest.raises(FileExistsError):
        write_json(out, path)
    assert not math.isnan(out["RV"]["SV_ml"])


def test_basal_slices_are_found_at_the_wide_end_of_the_lv():
    """The base is where the ED LV cross-section is larger; ES may start lower."""
    ed = np.zeros((8, 10, 10), np.uint8)
    es = np.zeros_like(ed)
    for z, half in zip(range(1, 7), (4, 4, 3, 2, 1, 1), strict=True):  # base at slice 1
        ed[z, 5 - half:5 + half, 5 - half:5 + half] = 3
    ed[1, 0, 0] = 1  # a little RV at the base
    es[2:6, 4:6, 4:6] = 3
    classes = CardiacClasses(lv=3, rv=1, myo=2)
    found = basal_slices(ed, es, classes)
    assert (found.ed, found.es) == ((1, 2), (2, 3))
    assert "slices 1, 2 at ED and 2, 3 at ES" in found.message()
    flipped = basal_slices(ed[::-1], es[::-1], classes)  # the stack runs apex to base
    assert (flipped.ed, flipped.es) == ((6, 5), (5, 4))
    assert basal_slices(ed, es, classes, count=1).ed == (1,)
    assert basal_slices(np.zeros_like(ed), es, classes) is None
    assert basal_slices(ed, np.zeros_like(es), classes).es == ()
