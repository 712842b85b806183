"""Fine-tune panel, docked through the manifest as *Plugins > L2GNet segmentation > Fine-tune*
does (napari hands it public proxies of the viewer and layers) on a scan opened with the
plugin's reader: annotated slices from the brush's paint events, a real run in a separate
process, Stop, the overwrite guard, clear errors, and the "how much you changed" table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_l2gnet._session import META_KEY, same_layer, session_for
from napari_l2gnet.testing import dock, open_scan, write_scan
from napari_l2gnet.widgets.finetune import (
    NON_EMPTY,
    change_scores,
    copy_atomically,
    default_output_path,
    painted_slices,
    user_finetune_dir,
)
from tests.helpers import save_finetune_start

CLASSES = ["background", "liver", "kidney"]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return save_finetune_start(tmp_path / "tiny.safetensors", names=CLASSES)


def _model_labels() -> np.ndarray:
    lab = np.zeros((4, 32, 32), np.uint8)
    lab[:, 4:14, 4:14] = 1
    lab[:, 18:28, 18:28] = 2
    return lab


@pytest.fixture
def setup(make_napari_viewer, qtbot, checkpoint, tmp_path):
    """A scan opened from a file, a labels layer as Segment makes it (the model's output kept
    beside it), and the Fine-tune panel docked from the Plugins menu."""
    viewer = make_napari_viewer()
    session_for(viewer).set_checkpoint(checkpoint)
    rng = np.random.default_rng(0)
    image = open_scan(viewer, write_scan(tmp_path / "scan.nii.gz",
                                         rng.random((4, 32, 32), dtype=np.float32)))
    model = _model_labels()
    labels = viewer.add_labels(
        model.copy(), name="scan [tiny]", scale=image.scale,
        metadata={META_KEY: {"role": "segmentation", "source_image": "scan",
                             "checkpoint": str(checkpoint), "axis": 0,
                             "class_names": CLASSES, "model_labels": model.copy(),
                             "explanation": None}, "nifti": dict(image.metadata["nifti"])},
    )
    widget = dock(viewer, "Fine-tune")
    widget.epochs_spin.setValue(2)
    yield viewer, widget, labels
    widget.shutdown()


def _paint(labels, coord, value) -> None:
    labels.brush_size = 3
    labels.paint(coord, value)


def _wait_done(qtbot, widget, timeout=60000) -> None:
    qtbot.waitUntil(lambda: not widget.is_running(), timeout=timeout)


def _start_long_run(qtbot, widget) -> None:
    """Start a run on the painted slices that cannot end by itself within a test (500
    epochs, batch 1) and wait until it has reported its first loss."""
    widget.slices_combo.setCurrentText(NON_EMPTY)
    widget.epochs_spin.setValue(500)
    widget.batch_spin.setValue(1)
    assert widget.start(), widget.status.text()
    qtbot.waitUntil(lambda: len(widget.plot.losses) >= 1, timeout=120000)


# ----------------------------------------------------------------------- helpers, no viewer


def test_painted_slices_reads_both_history_formats() -> None:
    class Atom:  # napari >= 0.6 mask atom
        def __init__(self, key, mask):
            self.slice_key, self.mask = key, mask

    mask = np.zeros((3, 2, 2), bool)
    mask[0, 0, 0] = mask[2, 1, 1] = True
    atoms = [Atom((slice(5, 8), slice(0, 2), slice(0, 2)), mask),
             Atom((slice(10, 11), slice(0, 4), slice(0, 4)), None),
             ((np.array([1, 1, 3]), np.array([0, 1, 2]), np.array([0, 0, 0])), 0, 1)]
    assert painted_slices(atoms, 0) == {5, 7, 10, 1, 3}
    assert painted_slices(atoms[2:], 2) == {0}


def test_default_output_goes_to_the_user_folder_not_the_package(tmp_path) -> None:
    import napari_l2gnet

    folder = user_finetune_dir()
    assert folder == tmp_path / "xdg" / "napari-l2gnet" / "finetune"  # XDG_DATA_HOME honoured
    package = Path(napari_l2gnet.__file__).parent
    src = package / "resources" / "demo_l2gnet.safetensors"
    first = default_output_path(src)
    assert first == folder / "demo_l2gnet_finetuned.safetensors"
    assert package not in first.parents
    out = copy_atomically(_bytes(tmp_path / "m.safetensors"), first)
    assert out.read_bytes() == b"x" and not list(out.parent.glob("*.tmp"))
    assert default_output_path(src) == folder / "demo_l2gnet_finetuned_2.safetensors"
    # fine-tuning a fine-tuned checkpoint does not pile up suffixes
    assert default_output_path(first).name == "demo_l2gnet_finetuned_2.safetensors"


def _bytes(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


def test_change_scores() -> None:
    model = _model_labels()
    edited = model.copy()
    edited[1, 4:14, 4:9] = 0  # shrink the liver on one slice
    rows = change_scores(model, edited, CLASSES, spacing=(3.0, 0.5, 0.5))
    assert [r["name"] for r in rows] == ["liver", "kidney"]
    assert rows[0]["dice"] < 1 and rows[0]["hd95"] > 0 and rows[0]["changed"] == 50
    assert rows[1]["dice"] == 1.0 and rows[1]["changed"] == 0
    added = model.copy()
    added[0, 0:3, 0:3] = 3  # a class the model did not draw at all; no class 4 anywhere
    rows = change_scores(model, added, CLASSES + ["spleen", "stomach"])
    assert rows[2]["name"] == "spleen" and rows[2]["dice"] == 0.0 and rows[2]["hd95"] is None
    assert rows[3]["name"] == "stomach" and rows[3]["dice"] is None and not rows[3]["present"]
    with pytest.raises(ValueError, match="different shapes"):
        change_scores(model, edited[:2], CLASSES)


# ----------------------------------------------------------------------- the widget


def test_widget_defaults(setup, checkpoint, user_data_home) -> None:
    from training.finetuning.finetune import FinetuneSettings

    viewer, widget, labels = setup
    assert widget.image_combo.currentText() == "scan"
    assert widget.labels_combo.currentText() == "scan [tiny]"
    d = FinetuneSettings()  # the CLI's defaults too
    assert widget.lr_spin.value() == pytest.approx(d.lr)
    assert widget.keep_spin.value() == pytest.approx(d.keep_weight)
    assert widget.batch_spin.value() == d.batch_size
    assert widget.input_edit.text() == str(checkpoint)
    assert Path(widget.output_edit.text()) == (
        user_data_home / "napari-l2gnet" / "finetune" / "tiny_finetuned.safetensors")
    assert widget.annotated_slices() == []
    assert "No annotated slices on 'scan [tiny]'" in widget.count_label.text()
    widget.slices_combo.setCurrentText(NON_EMPTY)
    assert widget.annotated_slices() == [0, 1, 2, 3]
    assert "4 annotated slices" in widget.count_label.text()


def test_settings_start_at_finetune_settings(make_napari_viewer) -> None:
    """The panel's settings start at ``FinetuneSettings()``, the one source the CLI's flags
    default to too (tests/training/test_defaults.py)."""
    from training.finetuning.finetune import FinetuneSettings

    widget = dock(make_napari_viewer(), "Fine-tune")
    d = FinetuneSettings()
    shown = {"epochs": widget.epochs_spin.value(), "lr": widget.lr_spin.value(),
             "batch_size": widget.batch_spin.value(), "keep_weight": widget.keep_spin.value()}
    assert shown == pytest.approx({name: getattr(d, name) for name in shown})
    widget.shutdown()


def test_labels_choice_follows_segments_new_layer(setup) -> None:
    viewer, widget, labels = setup
    viewer.add_labels(np.zeros((4, 32, 32), np.uint8), name="mine")
    widget.labels_combo.setCurrentText("scan [tiny]")
    new = viewer.add_labels(_model_labels(), name="scan [tiny] (2)", metadata={
        META_KEY: {"role": "segmentation", "source_image": "scan", "axis": 0,
                   "class_names": CLASSES, "model_labels": _model_labels()}})
    assert same_layer(widget.labels_combo.layer(), new)
    viewer.add_labels(np.zeros((4, 32, 32), np.uint8), name="scratch")  # not Segment's
    assert same_layer(widget.labels_combo.layer(), new)


def test_paint_marks_slices_and_change_table(setup, qtbot) -> None:
    viewer, widget, labels = setup
    # untouched: every present class scores Dice 1
    assert [r["dice"] for r in widget.change_rows] == [1.0, 1.0]
    _paint(labels, (1, 8, 8), 2)  # paint kidney into the liver on slice 1
    _paint(labels, (3, 20, 20), 0)  # erase part of the kidney on slice 3
    assert widget.annotated_slices() == [1, 3]
    assert "2 annotated slices: 1, 3" in widget.count_label.text()
    qtbot.waitUntil(lambda: widget.change_rows and widget.change_rows[0]["dice"] < 1,
                    timeout=5000)
    liver, kidney = widget.change_rows
    assert liver["dice"] < 1 and kidney["dice"] < 1
    assert widget.changes.table.rowCount() == 2
    assert widget.changes.table.item(0, 0).text() == "liver"
    assert float(widget.changes.table.item(0, 1).text()) < 1
    # undo both strokes (as Ctrl+Z does), forget them, then an untouched class: paint only
    # the liver on another slice (the liver grows into the background)
    labels.undo()
    labels.undo()
    assert np.array_equal(labels.data, _model_labels())
    widget.forget_painted()
    assert widget.annotated_slices() == []
    assert [r["dice"] for r in widget.change_rows] == [1.0, 1.0]
    _paint(labels, (2, 15, 3), 1)
    widget.refresh_changes()
    liver, kidney = widget.change_rows
    assert liver["dice"] < 1 and kidney["dice"] == 1.0
    assert widget.changes.table.item(1, 1).text() == "1.000"
    assert widget.annotated_slices() == [2]


def test_paint_events_mark_slices_without_model_labels(setup, qtbot) -> None:
    viewer, widget, labels = setup
    mine = viewer.add_labels(np.zeros((32, 32, 4), np.uint8), name="mine",
                             metadata={META_KEY: {"axis": 2}})
    widget.labels_combo.setCurrentText("mine")
    assert widget.annotated_slices() == []
    mine.brush_size = 1  # the brush paints the displayed plane (axes 1, 2): one voxel
    mine.paint((10, 10, 3), 1)
    mine.data_setitem((np.array([1, 2]), np.array([1, 2]), np.array([0, 0])), 2)
    assert widget.annotated_slices() == [0, 3]
    assert "keeps no model output" in widget.changes.label.text()
    assert widget.image_combo.currentText() == "scan"
    widget.forget_painted()
    assert widget.annotated_slices() == []
    widget.close()  # disconnects from the viewer and the session
    _paint(mine, (10, 10, 1), 1)
    session_for(viewer).set_checkpoint("elsewhere.safetensors")
    assert widget.input_edit.text() != "elsewhere.safetensors"


def test_panel_from_the_plugins_menu_sees_the_brush(setup, qtbot) -> None:
    """Issue 24: docked from the Plugins menu the panel holds proxies, not the layers the
    brush's events carry; painting must still count, fill the table, and be forgettable."""
    viewer, widget, labels = setup
    assert widget.viewer is not viewer  # napari's public proxy, as a user's panel gets
    mine = viewer.add_labels(np.zeros((4, 32, 32), np.uint8), name="mine", scale=labels.scale)
    widget.labels_combo.setCurrentText("mine")
    assert "No annotated slices on 'mine'" in widget.count_label.text()
    mine.brush_size = 3
    mine.paint((2, 10, 10), 1)
    assert "1 annotated slice: 2" in widget.count_label.text()
    widget.forget_painted()
    assert "No annotated slices on 'mine'" in widget.count_label.text()
    widget.labels_combo.setCurrentText("scan [tiny]")
    _paint(labels, (1, 8, 8), 2)
    assert "1 annotated slice: 1" in widget.count_label.text()
    qtbot.waitUntil(lambda: widget.changes.table.rowCount() == 2
                    and widget.change_rows[0]["dice"] < 1, timeout=5000)


def test_run_shows_before_after_and_accept_publishes(setup, qtbot, checkpoint,
                                                     tmp_path) -> None:
    from src_model import load_checkpoint

    viewer, widget, labels = setup
    _paint(labels, (1, 8, 8), 2)
    _paint(labels, (2, 8, 8), 2)
    widget.epochs_spin.setValue(4)
    widget.lr_spin.setValue(0.01)  # the tiny untrained model must beat its start here
    out = Path(widget.output_edit.text())
    seen = []
    session_for(viewer).checkpoint_changed.connect(lambda path, origin: seen.append((path, origin)))
    assert widget.start(), widget.status.text()
    assert widget.is_running() and not widget.start_button.isEnabled()
    _wait_done(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    report = widget.last_report
    assert widget.plot.dice_steps[0] == 0 and len(widget.plot.dice) == 5  # epoch 0 is plotted
    assert widget.plot.dice[0] == pytest.approx(report.corrected_dice_before["mean"])
    text = widget.result_label.text()
    assert text == report.describe() and "Uncorrected slices" in text
    assert not out.exists() and seen == []  # nothing changes before Accept
    assert report.chosen_epoch > 0
    assert widget.accept_button.isEnabled() and widget.accept()
    assert out.is_file() and seen == [(str(out), "finetune")]
    model, meta = load_checkpoint(out)
    assert model.num_classes == 3 and meta["finetuned_from"] == str(checkpoint)
    assert meta["finetune"]["slices"] == [1, 2]
    assert "Segment now uses it" in widget.status.text()
    # the input follows the session; the next default output does not overwrite this one
    assert widget.input_edit.text() == str(out) and widget.output_edit.text() != str(out)
    assert not widget.accept_button.isEnabled()
    # per class on the corrected slices: what the report measured, painted slices counted
    rows = {o.name: o for o in widget.outcomes.outcomes}
    assert set(rows) == {"liver", "kidney"} and rows["kidney"].painted_slices == 2
    for name, row in rows.items():
        assert row.after == pytest.approx(report.corrected_dice_after[name])
        assert row.before == pytest.approx(report.corrected_dice_before[name])
    assert widget.outcomes.table.rowCount() == 2
    # the corrections trained on went to the annotation store, on the scan's own grid
    from scan_io.annotation_store import AnnotationStore
    from scan_io.nifti import load_nifti

    [case] = AnnotationStore().cases()
    assert case == widget.last_store_case and case.corrected_slices == [1, 2]
    assert case.source == str(tmp_path / "scan.nii.gz") and case.class_names == CLASSES
    np.testing.assert_allclose(load_nifti(case.image_path).affine,
                               load_nifti(tmp_path / "scan.nii.gz").affine)
    image, stored, _ = AnnotationStore().load(case)
    np.testing.assert_array_equal(stored, labels.data)
    np.testing.assert_allclose(image, viewer.layers["scan"].data)
    assert "annotation store as case_0001" in widget.status.text()
    assert widget.store_box.case_ids() == ["case_0001"]
    assert widget.store_box.include_check.text() == "Include earlier corrections (1 scan)"
    # again on the same slices of this scan: the stored copy of them is not trained on twice
    assert widget.start(), widget.status.text()
    assert len(widget.process.job.volumes) == 1
    assert "case_0001 left out: the same scan's slices are corrected now" in (
        widget.status.text())
    widget.shutdown()
    # another patient's accepted corrections are trained on too, unless unticked
    other = np.random.default_rng(5).random((4, 32, 32), dtype=np.float32)
    AnnotationStore().add(other, _model_labels(), [0, 3], axis=0, class_names=CLASSES,
                          source="/scans/patient2.nii.gz")
    assert widget.start(), widget.status.text()
    assert len(widget.process.job.volumes) == 2
    assert "and 2 of 1 earlier scan from the store" in widget.status.text()
    assert widget.store_box.include_check.text() == "Include earlier corrections (2 scans)"
    widget.shutdown()
    widget.store_box.include_check.setChecked(False)
    assert widget.start()
    assert len(widget.process.job.volumes) == 1
    widget.shutdown()


def test_second_round_is_judged_on_the_new_slices(setup, qtbot, tmp_path) -> None:
    """Accept, paint one more slice, Start again from the accepted model: it was taught the
    first two slices, so whether it already agrees is judged on the new one only (before,
    the round was judged on all three, and a model that agreed with what it had been
    taught froze and learned nothing)."""
    viewer, widget, labels = setup
    _paint(labels, (1, 8, 8), 2)
    _paint(labels, (2, 8, 8), 2)
    widget.epochs_spin.setValue(4)
    widget.lr_spin.setValue(0.01)
    assert widget.start(), widget.status.text()
    _wait_done(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert widget.last_report.trust_slices is None  # a start never taught: all slices
    assert widget.accept()
    accepted = widget.input_edit.text()
    _paint(labels, (3, 8, 8), 2)
    assert widget.start(), widget.status.text()
    _wait_done(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    report = widget.last_report
    assert report.corrected_slices == 3 and report.trust_slices == 1
    assert "taught on 2 of these slices before" in widget.result_label.text()
    from src_model import read_metadata

    assert read_metadata(accepted)["card"]["taught"][-1]["seen"][0]["slices"] == [1, 2]


def test_stop_keeps_a_valid_model(setup, qtbot) -> None:
    from src_model import load_checkpoint

    viewer, widget, labels = setup
    _start_long_run(qtbot, widget)
    widget.stop()
    assert "Stopping" in widget.status.text()
    _wait_done(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert "Stopped early" in widget.status.text()
    assert widget.last_report.stopped and widget.runner.info.step < widget.runner.info.total
    load_checkpoint(widget.last_report.checkpoint)


def test_refuses_to_overwrite_input(setup, checkpoint) -> None:
    viewer, widget, labels = setup
    _paint(labels, (1, 8, 8), 2)
    before = checkpoint.read_bytes()
    widget.output_edit.setText(str(checkpoint))
    assert not widget.start()
    assert "overwrite the input checkpoint" in widget.status.text()
    assert not widget.is_running()
    assert checkpoint.read_bytes() == before
    widget.overwrite_check.setChecked(True)
    assert widget.start()
    widget.shutdown()


def test_clear_errors(setup) -> None:
    viewer, widget, labels = setup
    assert not widget.start()  # nothing painted yet: the message names the layer
    assert "No annotated slices on 'scan [tiny]'" in widget.status.text()
    labels.data_setitem(np.nonzero(np.asarray(labels.data) == 2), 7)  # a label the model lacks
    widget.slices_combo.setCurrentText(NON_EMPTY)
    assert not widget.start()
    assert "label 7" in widget.status.text() and "3 classes" in widget.status.text()
    viewer.layers.remove(labels)
    assert widget.labels_combo.layer() is None
    assert not widget.start()
    assert "Choose a labels layer" in widget.status.text()
    assert "no labels layer" in widget.changes.label.text().lower()
    widget.input_edit.setText("/nonexistent/model.safetensors")
    viewer.add_labels(np.zeros((4, 32, 32), np.uint8), name="mine")
    assert not widget.start()
    assert "does not exist" in widget.status.text()
    assert "keeps no model output" in widget.changes.label.text()


def test_rank_lists_uncertain_slices_and_click_jumps(setup, qtbot) -> None:
    viewer, widget, labels = setup
    _paint(labels, (1, 8, 8), 2)
    assert widget.rank_slices()
    qtbot.waitUntil(lambda: bool(widget.ranking.ranked), timeout=60000)
    ranked = [entry.index for entry in widget.ranking.ranked]
    assert 1 not in ranked and set(ranked) <= {0, 2, 3}  # painted slice 1 left out
    scores = [entry.uncertainty for entry in widget.ranking.ranked]
    assert scores == sorted(scores, reverse=True)  # too few slices beyond: uncertainty only
    item = widget.ranking.list.item(0)
    assert item.text().startswith(f"slice {ranked[0]}")
    widget.ranking.jump_to(item)
    assert viewer.dims.current_step[0] == ranked[0]


def test_rank_lists_the_slices_beyond_the_corrections_first(make_napari_viewer, qtbot) -> None:
    """On the sample scan with the demo model, corrections painted on three middle slices:
    the list opens with the middle of the labelled slices below them and of those above
    (where a model taught on them would guess), before the uncertain ones."""
    from napari_l2gnet._session import DEMO_CHECKPOINT

    viewer = make_napari_viewer()
    viewer.open_sample("napari-l2gnet", "abdomen_ct")
    truth = viewer.layers["abdomen_ct truth"]
    widget = dock(viewer, "Fine-tune")
    widget.input_edit.setText(str(DEMO_CHECKPOINT))
    widget.labels_combo.setCurrentText(truth.name)
    labelled = [z for z in range(truth.data.shape[0]) if np.asarray(truth.data[z]).any()]
    mid = labelled[len(labelled) // 2]
    for z in (mid - 1, mid, mid + 1):
        _paint(truth, (z, *np.argwhere(np.asarray(truth.data[z]) > 0)[0]), 1)
    assert widget.annotated_slices(widget.labels_combo.layer()) == [mid - 1, mid, mid + 1]
    # before any run, the count line says where a model taught on them would guess
    held = [z for z in range(truth.data.shape[0]) if np.asarray(truth.data[z]).any()]
    below, above = [z for z in held if z < mid - 2], [z for z in held if z > mid + 2]
    assert (f"lie beyond the corrections, where a model taught on them guesses: correct "
            f"slices {below[len(below) // 2]} and {above[len(above) // 2]} too"
            in widget.count_label.text())
    assert widget.rank_slices()
    qtbot.waitUntil(lambda: bool(widget.ranking.ranked), timeout=120000)
    first, second, *rest = widget.ranking.ranked
    assert first.index < mid - 2 < mid + 2 < second.index
    assert first.reason == second.reason == "beyond"
    assert all(e.reason == "uncertain" for e in rest)
    assert "not taught near: middle of slices" in widget.ranking.list.item(0).text()
    widget.ranking.jump_to(widget.ranking.list.item(1))
    assert viewer.dims.current_step[0] == second.index
    widget.shutdown()


def test_both_widgets_offer_only_grey_images(setup) -> None:
    """Fine-tune takes grey 2-D/3-D scans; Segment also a grey 4-D cine (frame by frame)."""
    viewer, widget, _ = setup
    viewer.add_image(np.zeros((2, 4, 16, 16), np.float32), name="4-D series")
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="photo", rgb=True)
    viewer.add_image(np.zeros((16, 16), np.float32), name="one slice")
    segment = dock(viewer, "Segment")
    for combo, expected in ((widget.image_combo, ["scan", "one slice"]),
                            (segment.image_combo, ["scan", "4-D series", "one slice"])):
        offered = [combo.itemText(i) for i in range(combo.count())]
        assert offered == expected
    assert [widget.labels_combo.itemText(i) for i in range(widget.labels_combo.count())] == [
        "scan [tiny]"]


def _finished_run(widget, labels, qtbot) -> None:
    _paint(labels, (1, 8, 8), 2)
    widget.epochs_spin.setValue(3)
    widget.lr_spin.setValue(0.01)  # the tiny untrained model must beat its start here
    assert widget.start(), widget.status.text()
    _wait_done(qtbot, widget)
    assert widget.last_error is None and widget.last_report.chosen_epoch > 0


def test_accept_never_replaces_a_file_without_asking(setup, qtbot, tmp_path) -> None:
    viewer, widget, labels = setup
    unrelated = tmp_path / "someone_elses.safetensors"
    unrelated.write_bytes(b"an unrelated checkpoint")
    widget.output_edit.setText(str(unrelated))
    widget.output_edit.textEdited.emit(str(unrelated))  # typed by the user
    _finished_run(widget, labels, qtbot)
    assert "exists: Accept will ask before replacing it" in widget.status.text()
    assert not widget.accept(replace_existing=False)  # the user says No
    assert unrelated.read_bytes() == b"an unrelated checkpoint"
    assert "was kept" in widget.status.text() and widget.accept_button.isEnabled()
    assert session_for(viewer).checkpoint != str(unrelated)
    assert widget.accept(replace_existing=True)  # ... and Yes
    assert unrelated.read_bytes() != b"an unrelated checkpoint"
    assert session_for(viewer).checkpoint == str(unrelated)


def test_closing_the_viewer_ends_the_run_and_removes_its_folder(setup, qtbot) -> None:
    from qtpy.QtCore import QCoreApplication, QEvent

    viewer, widget, labels = setup
    _start_long_run(qtbot, widget)
    proc = widget.process
    folder = proc.run_dir
    assert proc.is_alive() and folder.is_dir()
    viewer.close()  # File > Close Window: Qt deletes the docked panel with the window
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not proc.is_alive()
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(proc.pid, 0)  # gone, and reaped
    assert not folder.exists()


def test_closing_only_the_panel_ends_the_run_and_removes_its_folder(setup, qtbot) -> None:
    """Issue 24: the dock's x (``remove_dock_widget``) takes the panel out of the window
    without deleting it; the child and its folder must go then too, not at exit."""
    import os

    viewer, widget, labels = setup
    _start_long_run(qtbot, widget)
    proc = widget.process
    folder = proc.run_dir
    assert proc.is_alive() and folder.is_dir()
    assert any(w is widget for w in viewer.window.dock_widgets.values())
    viewer.window.remove_dock_widget(widget)  # what the dock's close button does
    assert all(w is not widget for w in viewer.window.dock_widgets.values())  # dock gone
    assert not proc.is_alive() and not widget.is_running()
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)  # gone, and reaped
    assert not folder.exists()
    # the panel no longer listens: a new layer or checkpoint does not reach it
    session_for(viewer).set_checkpoint("elsewhere.safetensors")
    assert widget.input_edit.text() != "elsewhere.safetensors"
    viewer.add_labels(np.zeros((4, 32, 32), np.uint8), name="later").paint((1, 5, 5), 1)
    assert widget.paint.painted(viewer.layers["later"]) == set()


def test_a_finished_run_never_accepted_leaves_no_folder(setup, qtbot) -> None:
    from qtpy.QtCore import QCoreApplication, QEvent

    viewer, widget, labels = setup
    _finished_run(widget, labels, qtbot)
    folder = Path(widget.last_report.checkpoint).parents[1]
    assert folder.is_dir() and folder.name.startswith("l2gnet-finetune-")
    viewer.close()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not folder.exists()


def test_store_cases_are_listed_and_removed(make_napari_viewer, tmp_path) -> None:
    from scan_io.annotation_store import AnnotationStore

    store = AnnotationStore()
    image = np.random.default_rng(0).random((4, 32, 32), dtype=np.float32)
    kept = store.add(image, _model_labels(), [1, 2], axis=0, class_names=CLASSES,
                     source="/scans/patient1.nii.gz")
    gone = store.add(image, _model_labels(), [3], axis=0, class_names=CLASSES)
    gone.image_path.unlink()
    viewer = make_napari_viewer()
    widget = dock(viewer, "Fine-tune")
    box = widget.store_box
    assert box.case_ids() == ["case_0001", "case_0002"]
    assert box.list.item(0).text().startswith("case_0001 · patient1 · 2 slices")
    assert box.list.item(1).text().endswith("unusable")
    assert "is gone" in box.list.item(1).toolTip()
    assert box.include_check.text() == "Include earlier corrections (1 scan)"
    box.list.setCurrentRow(1)
    assert not box.remove_selected(confirmed=False)  # the user says No
    assert len(store.cases()) == 2
    assert box.remove_selected(confirmed=True)
    assert box.case_ids() == [kept.case_id] and [c.case_id for c in store.cases()] == [
        kept.case_id]


def test_unlearned_classes_are_red_with_what_to_do(qtbot) -> None:
    from napari_l2gnet.widgets._outcome_table import RED, OutcomeTable
    from training.finetuning.class_outcomes import class_outcomes

    table = OutcomeTable()
    qtbot.addWidget(table)
    table.set_outcomes(class_outcomes(
        {"liver": 0.6, "pancreas": 0.0, "spleen": 0.1, "mean": 0.3},
        {"liver": 0.93, "pancreas": 0.2, "spleen": 0.0, "mean": 0.4},
        {"liver": 6, "pancreas": 2}, ["background", "liver", "pancreas", "spleen"]))
    assert table.table.rowCount() == 3
    assert table.table.item(1, 1).text() == "2 slices"
    assert table.table.item(2, 1).text() == "not painted"
    colors = table.row_colors()
    assert colors[1] == RED and colors[0] != RED and colors[2] != RED
    assert table.advice.text() == ("pancreas: painted on 2 slices, not learned — paint it on "
                                   "2 more")


def test_segment_describes_the_taught_model_honestly(setup, qtbot, tmp_path) -> None:
    """After Accept, Segment shows the taught model's card, not the starting model's
    "Phantom-only ... not on real scans", and its score as Dice on the corrected slices."""
    from src_model import build_model, save_checkpoint
    from src_model.testing import tiny_config

    viewer, widget, labels = setup
    start = save_checkpoint(tmp_path / "phantom_start.safetensors",
                            build_model("l2gnet", 3, **tiny_config("l2gnet")),
                            {"class_names": CLASSES, "input_size": [32, 32],
                             "normalization": {"kind": "none"},
                             "training": {"data": "phantom:1-2",
                                          "val_dice": {"liver": 0.9, "kidney": 0.9,
                                                       "mean": 0.9}}})
    segment = dock(viewer, "Segment")
    segment.set_checkpoint(start)  # the user picks the model; Fine-tune follows
    assert widget.input_edit.text() == str(start)
    before = segment.model_info.text()
    assert "Phantom-only" in before and "Validation mean Dice: 0.900" in before
    _finished_run(widget, labels, qtbot)
    assert widget.accept()
    text = segment.model_info.text()
    assert "Phantom-only" not in text and "not on real scans" not in text
    assert "Validation mean Dice" not in text
    assert ("Taught on your corrections: derived from phantom_start, taught on 1 corrected "
            "slice of 1 scan") in text
    assert "Dice on the corrected slices it was taught on" in text
