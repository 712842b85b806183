"""Helpers for tests and scripts that act as a user does (no mocks): dock a panel through the
plugin's manifest, open a scan with the plugin's reader, write a small scan file, let Qt run
until something the user would wait for has happened."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

PLUGIN = "napari-l2gnet"


def dock(viewer, name: str):
    """Dock panel ``name`` as *Plugins > L2GNet segmentation > NAME* does; the panel.

    Through the manifest napari hands the panel public proxies of the viewer and of every
    layer it reaches through it, as it does for a user (constructing the widget directly
    does not)."""
    _dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def dock_segment(viewer, checkpoint: str | Path, device: str = "cpu"):
    """Dock the Segment panel through the manifest with ``checkpoint`` chosen and ``device``
    picked in its Device box (CPU: what a test or a CPU benchmark runs on); the panel."""
    widget = dock(viewer, "Segment")
    widget.set_checkpoint(checkpoint)
    widget.device_combo.setCurrentText(device)
    return widget


def paint_like(labels, reference: np.ndarray, slices: Sequence[int]) -> None:
    """Correct ``slices`` of the ``labels`` layer to ``reference`` (same shape) through the
    layer's own paint path (``data_setitem``, one call per value), as a user's strokes would:
    the Fine-tune panel sees them as painted slices."""
    for z in slices:
        current = np.asarray(labels.data)[z]
        wrong = np.argwhere(current != reference[z])
        values = reference[z][tuple(wrong.T)]
        for value in np.unique(values):
            pts = wrong[values == value]
            labels.data_setitem((np.full(len(pts), z), pts[:, 0], pts[:, 1]), int(value))


def open_scan(viewer, path: str | Path):
    """Open ``path`` with the plugin's reader, as *File > Open* does; the one layer made."""
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    return layer


def write_scan(path: str | Path, display: np.ndarray,
               spacing: Sequence[float] = (3.0, 0.5, 0.5)) -> Path:
    """A NIfTI file that the plugin's reader shows as ``display`` (slices, rows, columns)
    with voxel size ``spacing`` (mm, the same order)."""
    from scan_io.nifti import affine_from_scale, display_orientation, from_display, save_nifti

    affine = affine_from_scale(spacing)
    return save_nifti(path, from_display(np.asarray(display), display_orientation(affine)),
                      affine=affine)


def process_events_until(condition: Callable[[], bool] = lambda: False,
                         seconds: float = 0.5) -> bool:
    """Run Qt's event loop until ``condition()`` holds or ``seconds`` pass; whether it held.

    With the default condition it just lets the window settle for ``seconds`` (docks take a
    few layout passes before a screenshot shows wrapped text whole)."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    return condition()
