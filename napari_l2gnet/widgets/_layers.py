"""Small pieces the widgets share: layer choosers, class features, placement of derived layers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from qtpy.QtWidgets import QComboBox

from .._session import layer_key
from ._panel_close import Hooks


def is_scan_image(layer) -> bool:
    """A grey-level 2-D or 3-D Image layer, what Segment and Fine-tune take (not RGB, not 4-D)."""
    from napari.layers import Image

    return isinstance(layer, Image) and layer.ndim in (2, 3) and not layer.rgb


def is_scan_or_cine(layer) -> bool:
    """A scan image (see ``is_scan_image``) or a grey 4-D cine (time, slices, rows, columns),
    what Segment takes (a cine is segmented frame by frame)."""
    from napari.layers import Image

    return is_scan_image(layer) or (isinstance(layer, Image) and layer.ndim == 4
                                    and not layer.rgb)


def is_labels(layer) -> bool:
    from napari.layers import Labels

    return isinstance(layer, Labels)


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers that pass ``accept``, kept in sync with the viewer."""

    def __init__(self, viewer, accept: Callable[[object], bool], parent=None):
        super().__init__(parent)
        self._viewer = viewer
        self._accept = accept
        self._hooks = Hooks()  # undone by ``release_viewer`` when the panel goes
        self._hooks.connect(viewer.layers.events.inserted, self._on_inserted)
        self._hooks.connect(viewer.layers.events.removed, self._on_removed)
        self._hooks.connect(viewer.layers.events.changed, self.refresh)
        for layer in viewer.layers:
            self._follow_name(layer)
        self.refresh()

    def release_viewer(self) -> None:
        """Stop following the viewer and its layers (the panel's dock was closed)."""
        self._hooks.disconnect_all()

    def _follow_name(self, layer) -> None:
        """Follow renames too (keyed by ``layer_key``: proxies and real layers agree)."""
        if not self._hooks.has(layer_key(layer)):
            self._hooks.connect(layer.events.name, self.refresh, key=layer_key(layer))

    def _on_inserted(self, event) -> None:
        self._follow_name(event.value)
        self.refresh()

    def _on_removed(self, event) -> None:
        self._hooks.disconnect(layer_key(event.value))
        self.refresh()

    def refresh(self, *_args) -> None:
        current = self.currentText()
        names = [layer.name for layer in self._viewer.layers if self._accept(layer)]
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        elif names:
            self.setCurrentIndex(len(names) - 1)  # the newest layer
        self.blockSignals(False)
        self.currentTextChanged.emit(self.currentText())

    def layer(self):
        name = self.currentText()
        return self._viewer.layers[name] if name in self._viewer.layers else None


def class_features(class_names: Sequence[str]):
    """A features table so napari's status bar names the class under the cursor."""
    import pandas as pd

    return pd.DataFrame({"index": np.arange(len(class_names)), "class": list(class_names)})


def grid_placement(image_layer, axis: int, grid_scale: tuple[float, float]):
    """scale and translate that put a bottleneck-resolution map over the image exactly.

    A bottleneck cell covers ``grid_scale`` pixels of the slice; its centre sits at pixel
    ``c * g + (g - 1) / 2``. Nothing is upsampled: napari does the placement.
    """
    scale = np.asarray(image_layer.scale, dtype=float).copy()
    translate = np.asarray(image_layer.translate, dtype=float).copy()
    in_plane = [d for d in range(3) if d != axis]
    for d, g in zip(in_plane, grid_scale, strict=True):
        translate[d] += (g - 1.0) / 2.0 * scale[d]
        scale[d] *= g
    return tuple(scale), tuple(translate)
