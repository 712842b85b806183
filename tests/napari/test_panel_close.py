"""Closing a panel's dock (its x, ``remove_dock_widget``) only takes the panel out of the
window; it must then stop listening to the viewer and its layers: its layer pickers no longer
follow new, renamed or removed layers, and none of its callbacks is left on napari's events,
while the panels still docked keep following."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
from qtpy.QtCore import QObject

from napari_l2gnet.testing import dock, open_scan, write_scan
from napari_l2gnet.widgets._layers import LayerCombo

PANELS = ("Segment", "Explain", "Fine-tune", "Measure")


def _combos(panel) -> dict[int, list[str]]:
    """The items of each layer picker of ``panel``."""
    return {i: [combo.itemText(k) for k in range(combo.count())]
            for i, combo in enumerate(panel.findChildren(LayerCombo))}


def _reaches(obj, panel) -> bool:
    """``obj`` is ``panel`` or inside it (a child widget), or holds a method of it."""
    if isinstance(obj, QObject):
        while obj is not None:
            if obj is panel:
                return True
            obj = obj.parent()
        return False
    return any(getattr(value, "__self__", None) is panel
               for value in getattr(obj, "__dict__", {}).values())


def _owners(callback) -> list:
    """What a napari callback is bound to: a method's object, or a function's closure."""
    if isinstance(callback, tuple):  # napari keeps (weakref to the object, method name)
        ref = callback[0]
        return [ref() if isinstance(ref, weakref.ref) else ref]
    owners = [getattr(callback, "__self__", None)]
    for cell in getattr(callback, "__closure__", None) or ():
        try:
            owners.append(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
    return owners


def _emitters(viewer, layers) -> dict[str, object]:
    """The event emitters of the viewer's layer list, selection and dims, and of ``layers``."""
    groups = {"layers": viewer.layers.events, "selection": viewer.layers.selection.events,
              "dims": viewer.dims.events}
    groups.update({layer.name: layer.events for layer in layers})
    return {f"{where}.{name}": emitter for where, group in groups.items()
            for name, emitter in group.emitters.items()}


def _callbacks_of(panel, viewer, layers) -> list[str]:
    """The callbacks of ``panel`` (or of anything inside it) connected to those emitters."""
    return [f"{where}: {callback}"
            for where, emitter in _emitters(viewer, layers).items()
            for callback in emitter.callbacks
            if any(_reaches(owner, panel) for owner in _owners(callback))]


@pytest.mark.parametrize("closed", PANELS)
def test_a_closed_panel_stops_following_the_layers(make_napari_viewer, tmp_path,
                                                   closed) -> None:
    viewer = make_napari_viewer()
    scan = write_scan(tmp_path / "scan.nii.gz", np.random.default_rng(0).integers(
        -200, 300, (4, 32, 32)).astype(np.int16))
    image = open_scan(viewer, scan)
    mask = viewer.add_labels(np.zeros((4, 32, 32), np.uint8), name="mask")
    panels = {name: dock(viewer, name) for name in PANELS}
    panel = panels[closed]
    other = panels["Fine-tune" if closed == "Measure" else "Measure"]
    assert _callbacks_of(panel, viewer, [image, mask])  # docked, it listens

    viewer.window.remove_dock_widget(panel)  # what the dock's close button does
    assert all(w is not panel for w in viewer.window.dock_widgets.values())
    before = _combos(panel)

    # a user goes on working: new layers, a rename, a removal
    later = viewer.add_labels(np.zeros((4, 32, 32), np.uint8), name="later")
    viewer.add_image(np.zeros((4, 32, 32), np.float32), name="another scan")
    mask.name = "renamed mask"
    viewer.layers.remove(image.name)
    assert _combos(panel) == before  # the closed panel did not react
    assert _callbacks_of(panel, viewer, [image, mask, later]) == []
    # ... while a panel still docked follows
    assert _callbacks_of(other, viewer, [mask, later])
    assert "later" in [other.labels_combo.itemText(k)
                       for k in range(other.labels_combo.count())]
    assert "renamed mask" in [other.labels_combo.itemText(k)
                              for k in range(other.labels_combo.count())]


def test_closing_segment_mid_run_cancels_it(make_napari_viewer, qtbot, tmp_path,
                                            tiny_checkpoint) -> None:
    """A run going when Segment's dock is closed stops after its batch in flight: no labels
    layer appears from a panel the user closed."""
    from napari_l2gnet.testing import dock_segment

    viewer = make_napari_viewer()
    scan = write_scan(tmp_path / "scan.nii.gz", np.random.default_rng(0).integers(
        -200, 300, (1000, 32, 32)).astype(np.int16))
    open_scan(viewer, scan)
    panel = dock_segment(viewer, tiny_checkpoint)
    panel.batch_spin.setValue(1)
    panel.run()
    qtbot.waitUntil(lambda: panel.progress_bar.value() >= 1, timeout=60_000)
    viewer.window.remove_dock_widget(panel)
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    assert panel.progress_bar.value() < 1000
    assert [layer.name for layer in viewer.layers] == ["scan"]
    assert panel.status.text().startswith("Cancelled")
