"""Let a docked panel be shorter than its content: its layout moves into a scroll area.

Three panels docked together must fit a 1000-px-high screen; without a scroll area napari
grows the window to the sum of their heights and clips what does not fit.
"""

from __future__ import annotations

from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget


def make_scrollable(widget: QWidget) -> QScrollArea:
    """Move ``widget``'s layout (and the widgets in it) into a scroll area inside ``widget``.

    Call at the end of ``__init__``, once the layout is built. Qt's ``setLayout`` takes a
    layout off its old widget and re-parents the widgets in it, so nothing else changes.
    """
    inner = QWidget()
    inner.setLayout(widget.layout())
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(inner)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return scroll
