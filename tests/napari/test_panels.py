"""The three panels together, docked through the manifest: they fit a 1000-px-high screen,
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
