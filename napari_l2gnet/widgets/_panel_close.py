"""Undo what a panel connected to napari when the panel goes: its dock closed, or the panel closed.

Closing a dock (its x, or ``viewer.window.remove_dock_widget``) only takes the panel out of its
dock: napari neither closes nor deletes it, so anything it connected to the viewer's or its
layers' events would keep running (a leak, and a closed panel reacting to layer changes).
``on_panel_closed`` is the one place that notices: the panel is given a parent (docked), then
loses it (dock removed), or gets a Close event; it then calls the panel's handler once and
releases every ``Hooks`` user inside the panel (each ``LayerCombo``). A run's child process
and folder are ended elsewhere too, on ``destroyed`` (``_run_cleanup``), for the viewer closing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from qtpy.QtCore import QEvent, QObject


class Hooks:
    """Connections to napari (or session) events, remembered so that they can be undone: by
    ``key`` (e.g. the hooks on a layer that was removed) or all at once."""

    def __init__(self) -> None:
        self._hooks: dict[Hashable, list[tuple[Any, Callable]]] = {}

    def connect(self, emitter, callback: Callable, key: Hashable = None) -> Callable:
        emitter.connect(callback)
        self._hooks.setdefault(key, []).append((emitter, callback))
        return callback

    def has(self, key: Hashable) -> bool:
        return key in self._hooks

    def disconnect(self, key: Hashable = None) -> None:
        """Undo the hooks made under ``key``."""
        for emitter, callback in self._hooks.pop(key, ()):
            emitter.disconnect(callback)

    def disconnect_all(self) -> None:
        for key in list(self._hooks):
            self.disconnect(key)


class _CloseWatcher(QObject):
    """An event filter on the panel: docked then undocked, or closed -> ``on_close`` once."""

    def __init__(self, panel, on_close: Callable[[], None]) -> None:
        super().__init__(panel)
        self._docked = panel.parent() is not None
        self._on_close = on_close
        self._done = False
        panel.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind == QEvent.Type.ParentChange:
            if obj.parent() is not None:
                self._docked = True
            elif self._docked:
                self._fire(obj)
        elif kind == QEvent.Type.Close:
            self._fire(obj)
        return False  # never swallow the event

    def _fire(self, panel) -> None:
        if self._done:
            return
        self._done = True
        self._on_close()
        release_children(panel)


def release_children(panel) -> None:
    """Disconnect every child of ``panel`` that holds viewer hooks (its layer pickers)."""
    for child in panel.findChildren(QObject):
        release = getattr(child, "release_viewer", None)
        if callable(release):
            release()


def on_panel_closed(panel, on_close: Callable[[], None] | None = None) -> None:
    """When ``panel``'s dock is removed or the panel is closed: ``on_close()`` (the panel's own
    hooks, a run to end), then every layer picker inside it lets go of the viewer."""
    _CloseWatcher(panel, on_close or (lambda: None))
