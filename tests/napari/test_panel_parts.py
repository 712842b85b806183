"""The panels' building blocks on their own: the paint tracker (no Qt: a ViewerModel and its
layers' own paint events), the form helpers' bindings, the collapsible section, the result
view reading training events, and the run controller's refusals."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_l2gnet.widgets._paint_tracker import PaintTracker

# ----------------------------------------------------------------------- paint tracker


def _tracked(viewer):
    seen = {"paint": [], "data": []}
    tracker = PaintTracker(viewer, on_paint=lambda lyr: seen["paint"].append(lyr.name),
                           on_data=lambda lyr: seen["data"].append(lyr.name))
    return tracker, seen


def test_tracker_records_painted_slices_per_layer() -> None:
    viewer = ViewerModel()
    first = viewer.add_labels(np.zeros((5, 16, 16), np.uint8), name="first")
    tracker, seen = _tracked(viewer)  # a layer that was there before
    second = viewer.add_labels(np.zeros((5, 16, 16), np.uint8), name="second")  # and after
    first.brush_size = 1
    first.paint((1, 4, 4), 1)
    first.paint((3, 4, 4), 2)
    second.data_setitem((np.array([2, 2]), np.array([0, 1]), np.array([0, 0])), 1)
    assert tracker.painted(first) == {1, 3} and tracker.painted(second) == {2}
    assert seen["paint"] == ["first", "first", "second"]
    second.data = np.ones((5, 16, 16), np.uint8)  # a whole new array: reported, not painted
    assert seen["data"][-1] == "second" and tracker.painted(second) == {2}
    tracker.forget(first)
    assert tracker.painted(first) == set() and tracker.painted(second) == {2}


def test_tracker_reads_the_slice_axis_and_ignores_other_layers() -> None:
    viewer = ViewerModel()
    tracker, seen = _tracked(viewer)
    viewer.add_image(np.zeros((5, 16, 16), np.float32), name="scan")
    side = viewer.add_labels(np.zeros((16, 16, 5), np.uint8), name="side",
                             metadata={"l2gnet": {"role": "segmentation", "axis": 2}})
    side.data_setitem((np.array([3]), np.array([3]), np.array([4])), 1)
    assert tracker.painted(side) == {4}  # along the layer's own slice axis
    flat = viewer.add_labels(np.zeros((16, 16), np.uint8), name="one slice")
    flat.paint((3, 3), 1)
    assert tracker.painted(flat) == {0}


def test_tracker_keys_by_layer_not_name_and_stops_when_closed() -> None:
    viewer = ViewerModel()
    tracker, seen = _tracked(viewer)
    layer = viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name="labels")
    layer.paint((2, 3, 3), 1)
    viewer.layers.remove(layer)
    again = viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name="labels")  # same name
    assert tracker.painted(again) == set()  # a new layer: nothing painted on it yet
    tracker.close()
    again.paint((1, 3, 3), 1)
    assert tracker.painted(again) == set() and seen["paint"] == ["labels"]


# ----------------------------------------------------------------------- form helpers


def test_form_helpers_bind_the_change_signal_and_share_the_tooltip(qtbot) -> None:
    from qtpy.QtWidgets import QFormLayout, QWidget

    from napari_l2gnet.widgets._forms import (
        add_row,
        check_box,
        combo_box,
        line_edit,
        push_button,
        spin_box,
    )

    got = []
    panel = QWidget()
    qtbot.addWidget(panel)
    form = QFormLayout(panel)
    spin = spin_box(0, 10, 3, tip="how many")
    label = add_row(form, "Count", spin, on=lambda v: got.append(("spin", v)))
    assert label.toolTip() == spin.toolTip() == "how many"
    edit = line_edit("a", tip="a name", on=lambda: got.append(("edit", edit.text())))
    combo = combo_box(["x", "y"], on=lambda t: got.append(("combo", t)))
    box = check_box("tick", on=lambda c: got.append(("check", c)))
    button = push_button("Go", lambda: got.append(("button",)))
    spin.setValue(7)
    edit.setText("b")
    edit.editingFinished.emit()
    combo.setCurrentText("y")
    box.setChecked(True)
    button.click()
    assert got == [("spin", 7), ("edit", "b"), ("combo", "y"), ("check", True), ("button",)]
    auto = spin_box(0, 512, 0, special="auto")
    assert auto.text() == "auto"
    decimal = spin_box(1e-6, 1.0, 3e-4, decimals=6)
    assert decimal.value() == pytest.approx(3e-4)


def test_section_folds_its_content(qtbot) -> None:
    from qtpy.QtWidgets import QLabel

    from napari_l2gnet.widgets._section import Section

    content = QLabel("settings")
    section = Section("Settings", content, expanded=False)
    qtbot.addWidget(section)
    section.show()
    assert not content.isVisible() and not section.expanded
    section.header.click()  # as a user opens it
    assert content.isVisible() and section.expanded
    section.set_expanded(False)
    assert not content.isVisible()


# ----------------------------------------------------------------------- result and run


def test_result_view_plots_training_events(qtbot) -> None:
    from napari_l2gnet.widgets._finetune_result import ResultView
    from training.finetuning.process import ProgressEvent

    view = ResultView(None, lambda: None)
    qtbot.addWidget(view)
    view.running()
    said = view.add_events([
        ProgressEvent("epoch", 0, 0, 4, val_dice={"mean": 0.5}),
        ProgressEvent("step", 0, 1, 4, loss=0.9),
    ])
    assert said == "Epoch 1, step 1/4: loss 0.9000"
    assert view.plot.dice_steps == [0] and view.plot.dice == [0.5]
    said = view.add_events([ProgressEvent("epoch", 0, 0, 4, val_dice={"mean": 0.6})])
    assert said.startswith("Starting model: Dice 0.600")


def test_run_controller_refuses_what_it_cannot_do(qtbot) -> None:
    from napari_l2gnet.widgets._finetune_run import NotAccepted, RunController

    runner = RunController()
    assert not runner.is_running() and runner.stop() == ""
    with pytest.raises(NotAccepted, match="Nothing to accept: run fine-tuning first") as why:
        runner.accept(lambda _path: True)
    assert why.value.error
    runner.shutdown()  # nothing to end: no error


def test_the_output_path_is_checked_before_a_run(tmp_path) -> None:
    from napari_l2gnet.widgets._finetune_job import checked_output

    src = tmp_path / "model.safetensors"
    src.write_bytes(b"x")
    assert checked_output(f" {tmp_path}/out.safetensors ", src, False) == (
        tmp_path / "out.safetensors")
    for output, overwrite, message in (
            ("", False, "Choose where to save"),
            (str(tmp_path / "out.pt"), False, "must end in .safetensors"),
            (str(src), False, "tick 'overwrite the input checkpoint'")):
        with pytest.raises(ValueError, match=message):
            checked_output(output, src, overwrite)
    assert checked_output(str(src), src, True) == src
    (tmp_path / "folder.safetensors").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        checked_output(str(tmp_path / "folder.safetensors"), src, False)
