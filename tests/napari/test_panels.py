"""The panels together, docked through the manifest: they fit a 1000-px-high screen, what a
user acts on (Segment, Start, Accept, the Explain table) is in view there without scrolling,
and Explain's button leaves the plan layer selected (not the hidden codes layer)."""

from __future__ import annotations

import numpy as np

from napari_l2gnet._session import same_layer
from napari_l2gnet.testing import dock, open_scan


def test_three_panels_fit_a_1000_px_screen(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 32, 32), np.float32), name="scan")
    for name in ("Segment", "Explain", "Fine-tune"):
        dock(viewer, name)
    window = viewer.window._qt_window
    assert window.minimumSizeHint().height() <= 1000  # 1951 px without the scroll areas
    window.resize(1400, 1000)
    window.show()
    assert window.height() <= 1000


def _fully_shown(widget) -> bool:
    """Whether all of ``widget`` is on screen: shown, and not cut by a scroll area, a dock or
    the window (``visibleRegion`` is what its parents leave of it)."""
    seen = widget.visibleRegion().boundingRect()
    return widget.isVisible() and (seen.width(), seen.height()) == (widget.width(),
                                                                    widget.height())


def test_four_panels_on_a_1600x1000_screen_keep_their_actions_in_view(
        make_napari_viewer, qtbot, tiny_checkpoint, shared_data) -> None:
    """Issue 29: Segment, Explain, Fine-tune and Measure docked from the Plugins menu on a
    real CT at 1600 x 1000: Segment, Start and Accept are in view as docked, the Explain
    table shows several of its rows, the CPU warning is wrapped, not cut, and Fine-tune's
    result comes into view by itself when a run ends."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1600, 1000)
    open_scan(viewer, shared_data / "ct_abdomen" / "example_ct_sm.nii.gz")
    segment, explain, finetune, measure = (dock(viewer, name) for name in (
        "Segment", "Explain", "Fine-tune", "Measure"))
    segment.set_checkpoint(tiny_checkpoint)
    segment.device_combo.setCurrentText("cpu")
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=120_000)
    qtbot.waitExposed(window)
    qtbot.wait(200)  # the docks settle
    assert window.height() <= 1000

    for button in (segment.run_button, finetune.start_button, finetune.accept_button):
        assert _fully_shown(button), button.text()
    table = explain.table
    assert table.rowCount() >= 4
    shown_rows = table.viewport().visibleRegion().boundingRect().height() // table.rowHeight(0)
    assert shown_rows >= 4 and _fully_shown(table.horizontalHeader())
    warning = segment.device_warning
    assert "CPU" in warning.text() and warning.wordWrap()
    assert warning.height() >= warning.heightForWidth(warning.width())  # every line of it
    assert warning.width() <= segment.width()
    assert measure.table.isVisible()

    # a short fine-tune: when it ends the panel scrolls its result into view by itself
    result = finetune.result_label
    assert not _fully_shown(result)  # below the fold while nothing has run
    labels = viewer.layers[segment.last_layer.name]
    labels.brush_size = 5
    labels.paint((2, 40, 40), 1)
    finetune.epochs_spin.setValue(1)
    finetune.batch_spin.setValue(4)
    assert finetune.start(), finetune.status.text()
    qtbot.waitUntil(lambda: not finetune.is_running(), timeout=180_000)
    assert finetune.last_error is None, finetune.last_error
    assert result.text().startswith("Dice on the 1 corrected")
    for shown in (result, finetune.accept_button, finetune.status):  # once laid out
        qtbot.waitUntil(lambda w=shown: _fully_shown(w), timeout=5000)


def test_show_explanation_layers_selects_the_plan(make_napari_viewer, qtbot, tiny_checkpoint,
                                                  scan_file) -> None:
    viewer = make_napari_viewer()
    open_scan(viewer, scan_file)
    segment = dock(viewer, "Segment")
    segment.set_checkpoint(tiny_checkpoint)
    segment.device_combo.setCurrentText("cpu")
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=60_000)
    explain = dock(viewer, "Explain")
    explain.show_button.click()  # as a user does (clicked() passes checked=False)
    plan = viewer.layers["scan [tiny] plan"]
    assert same_layer(viewer.layers.selection.active, plan)
    assert [lyr.name for lyr in viewer.layers.selection] == [plan.name]
    viewer.layers.selection.active = viewer.layers["scan"]
    explain.show_button.click()  # again, the layers now exist: the plan is selected again
    assert [lyr.name for lyr in viewer.layers.selection] == [plan.name]
