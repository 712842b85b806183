"""The local annotation store: nnU-Net layout, the scan's grid kept, a record of the corrected
slices, atomic writes, removal, and the notes for cases that cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scan_io.annotation_store import (
    ENV,
    AnnotationStore,
    ScanGrid,
    default_store_dir,
    is_annotation_store,
)
from scan_io.nifti import load_nifti
from scan_io.volume import load_scan

NAMES = ["background", "liver", "kidney"]


@pytest.fixture
def store(tmp_path, monkeypatch) -> AnnotationStore:
    monkeypatch.setenv(ENV, str(tmp_path / "store"))
    return AnnotationStore()


def _labels(shape) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[2, 10:20, 10:20] = 1
    lab[5, 30:40, 30:40] = 2
    return lab


def test_default_folder_is_the_env_var_else_the_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "mine"))
    assert default_store_dir() == tmp_path / "mine"
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_dir() == tmp_path / "xdg" / "napari-l2gnet" / "annotations"


def test_a_real_scan_is_stored_on_its_own_grid(store, shared_data):
    ct = shared_data / "ct_abdomen" / "example_ct_sm.nii.gz"
    scan = load_scan(ct)
    labels = _labels(scan.data.shape)
    from napari_l2gnet._reader import nifti_metadata

    grid = ScanGrid.from_layer_metadata(nifti_metadata(scan.nifti, "image"))
    case = store.add(scan.data, labels, [5, 2, 2], axis=0, class_names=NAMES, grid=grid,
                     source=str(ct))
    assert case.case_id == "case_0001"
    assert case.image_path == store.root / "imagesTr" / "case_0001_0000.nii.gz"
    assert case.labels_path == store.root / "labelsTr" / "case_0001.nii.gz"
    record = json.loads((store.root / "corrections" / "case_0001.json").read_text())
    assert record["corrected_slices"] == [2, 5] and record["slice_axis"] == 0
    assert record["source"] == str(ct) and record["class_names"] == NAMES
    assert record["date"][:4].isdigit() and record["shape"] == list(scan.data.shape)
    # the files carry the scan's affine, and read back exactly as the plugin shows the scan
    np.testing.assert_allclose(load_nifti(case.image_path).affine, scan.affine)
    np.testing.assert_allclose(load_nifti(case.labels_path).affine, scan.affine)
    image, back, spacing = store.load(case)
    np.testing.assert_array_equal(image, scan.data)
    np.testing.assert_array_equal(back, labels)
    assert spacing == pytest.approx(scan.spacing)
    assert load_nifti(case.labels_path).data.dtype == np.uint8
    assert is_annotation_store(store.root)
    assert [c.case_id for c in store.cases()] == ["case_0001"]
    assert "example_ct_sm · 2 slices" in store.cases()[0].describe()


def test_cases_number_on_removal_and_leave_no_temporary_files(store):
    image = np.random.default_rng(0).random((8, 48, 48), dtype=np.float32)
    first = store.add(image, _labels(image.shape), [2], axis=0, class_names=NAMES,
                      spacing=(2.0, 0.8, 0.8))
    second = store.add(image, _labels(image.shape), [5], axis=0, class_names=NAMES)
    assert [c.case_id for c in store.cases()] == ["case_0001", "case_0002"]
    _, _, spacing = store.load(first)
    assert spacing == pytest.approx((2.0, 0.8, 0.8))
    store.remove(first.case_id)
    assert [c.case_id for c in store.cases()] == ["case_0002"]
    assert not first.image_path.exists() and not first.labels_path.exists()
    third = store.add(image, _labels(image.shape), [2], axis=0, class_names=NAMES)
    assert third.case_id == "case_0003"  # never reuses an id
    leftovers = [p for p in store.root.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == []
    with pytest.raises(KeyError, match="case_0001"):
        store.remove("case_0001")
    assert second.json_path.is_file()


def test_a_slice_axis_and_a_single_slice(store):
    image = np.random.default_rng(1).random((30, 40, 6), dtype=np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[:, :, 4] = 1
    case = store.add(image, labels, [4], axis=2, class_names=NAMES)
    _, back, _ = store.load(case)
    assert case.slice_axis == 2 and back[:, :, 4].all()
    flat = store.add(image[:, :, 0], labels[:, :, 4], [0], axis=1, class_names=NAMES)
    img2, lab2, _ = store.load(flat)
    assert img2.shape == (1, 30, 40) and flat.slice_axis == 0 and lab2.all()
    with pytest.raises(ValueError, match="corrected slices"):
        store.add(image, labels, [6], axis=2, class_names=NAMES)
    with pytest.raises(ValueError, match="same shape"):
        store.add(image, labels[:-1], [1], axis=0, class_names=NAMES)


def test_gone_or_unreadable_cases_are_reported_not_fatal(store):
    image = np.random.default_rng(2).random((4, 16, 16), dtype=np.float32)
    gone = store.add(image, _labels((6, 48, 48))[:4, :16, :16], [2], axis=0, class_names=NAMES)
    broken = store.add(image, np.zeros(image.shape, np.uint8), [1], axis=0, class_names=NAMES)
    gone.image_path.unlink()
    assert "image file" in store.problem(gone) and "is gone" in store.problem(gone)
    with pytest.raises(FileNotFoundError, match="case_0001 skipped"):
        store.load(gone)
    broken.image_path.write_bytes(b"not a nifti")
    assert store.problem(broken) is None
    with pytest.raises(ValueError, match="case_0002 skipped: unreadable"):
        store.load(broken)
    (store.root / "corrections" / "case_0009.json").write_text("{not json")
    cases, notes = store.read()
    assert [c.case_id for c in cases] == ["case_0001", "case_0002"]
    assert len(notes) == 1 and "case_0009.json skipped" in notes[0]


def test_an_empty_or_missing_store_has_no_cases(tmp_path):
    assert AnnotationStore(tmp_path / "nowhere").cases() == []
    assert not is_annotation_store(tmp_path)


def test_store_folder_reads_as_an_nnunet_training_set(store):
    """Other tools (and ``l2gnet train``) read it as imagesTr/labelsTr."""
    from training.data.normalization import IntensityNormalization
    from training.data.readers import read_nifti_pairs

    image = np.random.default_rng(3).random((6, 48, 48), dtype=np.float32)
    store.add(image, _labels(image.shape), [2, 5], axis=0, class_names=NAMES)
    [case] = read_nifti_pairs(Path(store.root), IntensityNormalization.from_metadata(None))
    assert case.name == "case_0001" and case.label.shape == image.shape


def test_a_scan_corrected_again_is_one_case(store):
    """Accepting the same scan twice folds the earlier case in: its other slices are kept,
    the slices corrected again take the new labels, and no copy is trained on twice."""
    image = np.random.default_rng(4).random((6, 48, 48), dtype=np.float32)
    first = np.zeros(image.shape, np.uint8)
    first[1, 5:10, 5:10] = 1
    first[3, 5:10, 5:10] = 1
    store.add(image, first, [1, 3], axis=0, class_names=NAMES, source="/scans/p1.nii.gz")
    store.add(image, first, [2], axis=0, class_names=NAMES, source="/scans/p2.nii.gz")
    again = np.zeros(image.shape, np.uint8)
    again[3, 20:30, 20:30] = 2  # slice 3 corrected anew, slice 4 for the first time
    again[4, 20:30, 20:30] = 2
    merged = store.add(image, again, [3, 4], axis=0, class_names=NAMES,
                       source="/scans/p1.nii.gz")
    assert [c.case_id for c in store.cases()] == ["case_0002", "case_0003"]
    assert merged.corrected_slices == [1, 3, 4]
    _, labels, _ = store.load(merged)
    np.testing.assert_array_equal(labels[1], first[1])  # kept from the first time
    np.testing.assert_array_equal(labels[3], again[3])  # the new correction wins
    np.testing.assert_array_equal(labels[4], again[4])
    assert not (store.root / "imagesTr" / "case_0001_0000.nii.gz").exists()
    kept = store.add(image, again, [4], axis=0, class_names=NAMES, source="/scans/p1.nii.gz",
                     merge=False)
    assert len(store.cases()) == 3 and kept.corrected_slices == [4]
