"""Which slices the user painted on which labels layer, for the Fine-tune panel (no Qt).

Every labels layer of the viewer is watched: a brush stroke, fill or ``data_setitem`` (the
layer's ``paint`` event) adds the slices it touched (``painted_slices``, along the layer's
slice axis); a whole new array (``data`` event) is reported too, so the panel can recompute
what changed. Layers are told apart by napari's ``unique_id`` (``layer_key``): a panel docked
from the Plugins menu holds public proxies, a new object per access, while the events carry
the real layers, so neither identity nor the proxies can serve as keys.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from .._session import layer_key
from ._annotations import layer_axis, painted_slices
from ._layers import is_labels

LayerCallback = Callable[[Any], None]


class PaintTracker:
    """Painted slices per labels layer of ``viewer``; ``on_paint(layer)`` after a stroke is
    recorded, ``on_data(layer)`` when a layer's whole array is replaced."""

    def __init__(self, viewer, on_paint: LayerCallback | None = None,
                 on_data: LayerCallback | None = None) -> None:
        self._viewer = viewer
        self._on_paint = on_paint
        self._on_data = on_data
        self._painted: dict[Hashable, set[int]] = {}
        self._hooks: dict[Hashable, tuple[tuple[Any, Any], ...]] = {}
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        for layer in viewer.layers:
            self._hook(layer)

    def painted(self, layer) -> set[int]:
        """The slices painted on ``layer`` since it was added or last forgotten."""
        return set(self._painted.get(layer_key(layer), ())) if layer is not None else set()

    def forget(self, layer) -> None:
        if layer is not None:
            self._painted.pop(layer_key(layer), None)

    def close(self) -> None:
        """Stop watching the viewer and its layers (the panel is going away)."""
        self._viewer.layers.events.inserted.disconnect(self._on_inserted)
        self._viewer.layers.events.removed.disconnect(self._on_removed)
        for hooks in self._hooks.values():
            for emitter, callback in hooks:
                emitter.disconnect(callback)
        self._hooks.clear()

    # ---------------------------------------------------------------- events
    def _on_inserted(self, event) -> None:
        self._hook(event.value)

    def _on_removed(self, event) -> None:
        key = layer_key(event.value)
        for emitter, callback in self._hooks.pop(key, ()):
            emitter.disconnect(callback)
        self._painted.pop(key, None)

    def _hook(self, layer) -> None:
        if not is_labels(layer) or layer_key(layer) in self._hooks:
            return

        def on_paint(event, layer=layer) -> None:
            self.record(layer, getattr(event, "value", None))

        def on_data(_event, layer=layer) -> None:
            if self._on_data is not None:
                self._on_data(layer)

        layer.events.paint.connect(on_paint)
        layer.events.data.connect(on_data)
        self._hooks[layer_key(layer)] = ((layer.events.paint, on_paint),
                                         (layer.events.data, on_data))

    def record(self, layer, atoms) -> set[int]:
        """Add the slices a paint event's history ``atoms`` touched; the slices found."""
        if np.ndim(layer.data) == 3:
            found = painted_slices(atoms, layer_axis(layer))
        else:  # one 2-D slice
            found = {0}
        self._painted.setdefault(layer_key(layer), set()).update(found)
        if self._on_paint is not None:
            self._on_paint(layer)
        return found
