"""Helpers for tests and scripts that act as a user does (no mocks): dock a panel through the
plugin's manifest, open a scan with the plugin's reader, write a small scan file."""

from __future__ import annotations

from collections.abc import Sequence
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
