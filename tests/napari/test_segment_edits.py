"""Segment, docked through the manifest, never loses a user's work (issue 28 items 5, 12): two
checkpoints that share a file name get two layers, and an edit made by assigning
``layer.data`` (console, another plugin) protects the layer as a brush stroke does."""

from __future__ import annotations

import shutil

import numpy as np

PLUGIN = "napari-l2gnet"
TIMEOUT_MS = 60_000


def _docked_segment(viewer, scan):
    viewer.add_image(scan, name="scan")
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.device_combo.setCurrentText("cpu")
    widget.batch_spin.setValue(2)
    return widget


def _run(qtbot, widget, checkpoint):
    widget.set_checkpoint(checkpoint)
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    return widget.last_layer


def test_two_checkpoints_with_one_file_name_give_two_layers(make_napari_viewer, qtbot,
                                                            tiny_checkpoint, scan, tmp_path):
    viewer = make_napari_viewer()
    widget = _docked_segment(viewer, scan)
    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    run1.mkdir()
    run2.mkdir()
    shutil.copy(tiny_checkpoint, run1 / "best.safetensors")
    shutil.copy(tiny_checkpoint, run2 / "best.safetensors")
    first = _run(qtbot, widget, run1 / "best.safetensors")
    first_name = first.name
    second = _run(qtbot, widget, run2 / "best.safetensors")
    names = [layer.name for layer in viewer.layers]
    assert len(names) == 3, names  # the scan and one result per checkpoint
    assert first_name in names and second.name in names and second.name != first_name
    assert "run2" in second.name
    assert viewer.layers[first_name].metadata["l2gnet"]["checkpoint"].endswith(
        "run1/best.safetensors")
    # Re-running the same checkpoint still replaces its own unedited layer.
    again = _run(qtbot, widget, run2 / "best.safetensors")
    assert again.name == second.name and len(viewer.layers) == 3


def test_assigning_layer_data_marks_the_layer_edited(make_napari_viewer, qtbot,
                                                     tiny_checkpoint, scan):
    viewer = make_napari_viewer()
    widget = _docked_segment(viewer, scan)
    layer = _run(qtbot, widget, tiny_checkpoint)
    name = layer.name
    assert not layer.metadata["l2gnet"]["edited"]
    mine = np.zeros_like(np.asarray(layer.data))
    mine[2, 5:15, 5:15] = 2
    layer.data = mine  # as from the console or another plugin
    assert viewer.layers[name].metadata["l2gnet"]["edited"]

    _run(qtbot, widget, tiny_checkpoint)
    np.testing.assert_array_equal(viewer.layers[name].data, mine)  # kept
    assert len([n for n in (lyr.name for lyr in viewer.layers) if n.startswith(name)]) == 2
