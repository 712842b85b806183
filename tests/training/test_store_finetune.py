"""The annotation store in fine-tuning: ``l2gnet finetune`` saves its corrected scans there and
trains on the earlier ones by default (``--no-store``: neither), ``--data STORE`` reads the
store's records of corrected slices, and unusable cases are skipped with a note."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scan_io.annotation_store import AnnotationStore
from tests.helpers import FINETUNE_NAMES as NAMES
from tests.helpers import two_squares
from training.data.normalization import NO_NORMALIZATION
from training.finetuning.finetune import REPORT
from training.finetuning.store_volumes import class_mismatch, store_volumes

EPOCHS = ["--epochs", "1", "--batch-size", "2", "--threads", "1"]


def _folder(root: Path, name: str, seed: int, corrected: list[int]) -> Path:
    """An imagesTr/labelsTr folder whose labels carry only the corrected slices."""
    from napari_l2gnet.testing import write_scan

    image, labels = two_squares(seed)
    only = np.zeros_like(labels)
    only[corrected] = labels[corrected]
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    write_scan(root / "imagesTr" / f"{name}_0000.nii.gz", image, spacing=(2.0, 0.7, 0.7))
    write_scan(root / "labelsTr" / f"{name}.nii.gz", only, spacing=(2.0, 0.7, 0.7))
    return root


def _run(argv) -> int:
    from training.cli import main

    return main(argv)


def test_cli_saves_to_the_store_and_trains_on_it_next_time(finetune_start, tmp_path, capsys,
                                                           _annotation_store):
    store = AnnotationStore()
    assert store.root == _annotation_store
    first = _folder(tmp_path / "first", "patient1", seed=0, corrected=[1, 4])
    assert _run(["finetune", "--from", str(finetune_start), "--data", str(first), "--out-dir",
                 str(tmp_path / "run1"), *EPOCHS]) == 0
    err = capsys.readouterr().err
    assert "saved 1 corrected scan(s) to the annotation store" in err and "case_0001" in err
    assert "Dice per class on the corrected slices" in err
    [case] = store.cases()
    assert case.corrected_slices == [1, 4] and case.class_names == NAMES
    assert case.source.endswith("patient1_0000.nii.gz")
    # the scan's grid and intensities are the file's
    image, labels, spacing = store.load(case)
    np.testing.assert_allclose(image, two_squares(0)[0], rtol=1e-6)
    assert spacing == pytest.approx((2.0, 0.7, 0.7))

    second = _folder(tmp_path / "second", "patient2", seed=1, corrected=[2])
    assert _run(["finetune", "--from", str(finetune_start), "--data", str(second), "--out-dir",
                 str(tmp_path / "run2"), *EPOCHS]) == 0
    err = capsys.readouterr().err
    assert "including 1 earlier corrected scan(s) (2 slices)" in err
    assert json.loads((tmp_path / "run2" / REPORT).read_text())["corrected_slices"] == 3
    assert [c.case_id for c in store.cases()] == ["case_0001", "case_0002"]

    assert _run(["finetune", "--from", str(finetune_start), "--data", str(second), "--out-dir",
                 str(tmp_path / "run3"), "--no-store", *EPOCHS]) == 0
    err = capsys.readouterr().err
    assert "including" not in err and "saved" not in err
    assert json.loads((tmp_path / "run3" / REPORT).read_text())["corrected_slices"] == 1
    assert len(store.cases()) == 2


def test_cli_does_not_train_twice_on_a_folder_scan_already_in_the_store(
        finetune_start, tmp_path, capsys, monkeypatch, _annotation_store):
    """The same NIfTI folder given again: its scan is in the store (saved by the first run),
    so that case is left out rather than trained on a second time; slices corrected only in
    the store are still used; the store keeps one case of that scan."""
    store = AnnotationStore()
    folder = _folder(tmp_path / "site", "patient1", seed=0, corrected=[1, 4])
    assert _run(["finetune", "--from", str(finetune_start), "--data", str(folder), "--out-dir",
                 str(tmp_path / "run1"), *EPOCHS]) == 0
    capsys.readouterr()
    [first] = store.cases()
    monkeypatch.chdir(tmp_path)  # the same folder, named by a relative path this time
    assert _run(["finetune", "--from", str(finetune_start), "--data", "site", "--out-dir",
                 str(tmp_path / "run2"), *EPOCHS]) == 0
    err = capsys.readouterr().err
    assert f"{first.case_id} left out: the same scan's slices are corrected now" in err
    assert "including" not in err
    assert "fine-tuning" in err and "on 2 corrected slices of 1 volume(s)" in err
    assert json.loads((tmp_path / "run2" / REPORT).read_text())["corrected_slices"] == 2
    [case] = store.cases()
    assert case.corrected_slices == [1, 4]

    # slice 2 corrected earlier (in the store), slices 1 and 4 in the folder now: 2 is kept
    image, labels = two_squares(0)
    only = np.zeros_like(labels)
    only[[2]] = labels[[2]]
    store.remove(case.case_id)
    store.add(image, only, [2], axis=0, class_names=NAMES,
              source=str(folder / "imagesTr" / "patient1_0000.nii.gz"))
    assert _run(["finetune", "--from", str(finetune_start), "--data", str(folder), "--out-dir",
                 str(tmp_path / "run3"), *EPOCHS]) == 0
    err = capsys.readouterr().err
    assert "including 1 earlier corrected scan(s) (1 slices)" in err
    assert json.loads((tmp_path / "run3" / REPORT).read_text())["corrected_slices"] == 3
    [merged] = store.cases()
    assert merged.corrected_slices == [1, 2, 4]


def test_cli_reads_a_store_folder_with_its_records(finetune_start, tmp_path, capsys):
    """The record says which slices were corrected: a slice corrected to all background
    counts, which a plain labels file could not say."""
    other = AnnotationStore(tmp_path / "site-store")
    image, labels = two_squares(2)
    labels[3] = 0  # the user erased a false organ on slice 3: all background now
    other.add(image, labels, [1, 3], axis=0, class_names=NAMES, spacing=(2.0, 0.7, 0.7))
    assert _run(["finetune", "--from", str(finetune_start), "--data", str(other.root),
                 "--out-dir", str(tmp_path / "run"), *EPOCHS]) == 0
    err = capsys.readouterr().err
    assert "saved" not in err  # already in a store: not copied into the user's
    assert json.loads((tmp_path / "run" / REPORT).read_text())["corrected_slices"] == 2
    assert AnnotationStore().cases() == []
    # the default store given as --data is not read twice
    mine = AnnotationStore()
    mine.add(image, labels, [1], axis=0, class_names=NAMES)
    assert _run(["finetune", "--from", str(finetune_start), "--data", str(mine.root),
                 "--out-dir", str(tmp_path / "run2"), *EPOCHS]) == 0
    assert json.loads((tmp_path / "run2" / REPORT).read_text())["corrected_slices"] == 1
    empty = AnnotationStore(tmp_path / "empty-store")
    empty.add(image, labels, [1], axis=0, class_names=["background", "x"])
    assert _run(["finetune", "--from", str(finetune_start), "--data", str(empty.root),
                 "--out-dir", str(tmp_path / "run3"), "--no-store"]) == 2
    err = capsys.readouterr().err
    assert "drawn for 2 classes" in err and "No usable cases" in err


def test_unusable_cases_are_skipped_with_a_note(tmp_path):
    store = AnnotationStore(tmp_path / "store")
    image, labels = two_squares(3)
    good = store.add(image, labels, [1, 2], axis=0, class_names=NAMES)
    gone = store.add(image, labels, [1], axis=0, class_names=NAMES)
    fewer = store.add(image, np.minimum(labels, 1), [1], axis=0,
                      class_names=["background", "liver"])
    renamed = store.add(image, labels, [1], axis=0, class_names=["background", "a", "c"])
    over = store.add(image, labels * 2, [1], axis=0, class_names=NAMES)  # label 4: not a class
    gone.image_path.unlink()
    found = store_volumes(store, NAMES, NO_NORMALIZATION)
    assert [c.case_id for c in found.cases] == [good.case_id]
    assert [v.corrected for v in found.volumes] == [[1, 2]] and found.slices == 2
    notes = "\n".join(found.notes)
    assert f"{gone.case_id} skipped: its image file" in notes
    assert f"{fewer.case_id} skipped: drawn for 2 classes (liver) but the model has 3" in notes
    assert f"{renamed.case_id} skipped: its classes are not the model's (c/b)" in notes
    assert f"{over.case_id} skipped" in notes and "label 4" in notes
    assert class_mismatch(good, NAMES) is None
    assert store_volumes(store, NAMES, NO_NORMALIZATION, exclude=[good.case_id]).volumes == []


def test_the_scan_corrected_now_is_not_taken_twice_from_the_store(tmp_path):
    store = AnnotationStore(tmp_path / "store")
    image, labels = two_squares(4)
    store.add(image, labels, [1, 2, 3], axis=0, class_names=NAMES, source="/scans/p1.nii.gz")
    found = store_volumes(store, NAMES, NO_NORMALIZATION, current=("/scans/p1.nii.gz", 0, [2]))
    assert [v.corrected for v in found.volumes] == [[1, 3]]
    found = store_volumes(store, NAMES, NO_NORMALIZATION,
                          current=("/scans/p1.nii.gz", 0, [1, 2, 3, 4]))
    assert found.volumes == [] and "left out: the same scan's slices" in found.notes[0]
    other = store_volumes(store, NAMES, NO_NORMALIZATION, current=("/scans/p2.nii.gz", 0, [2]))
    assert [v.corrected for v in other.volumes] == [[1, 2, 3]]
