"""Let a docked panel be shorter than its content: its layout moves into a scroll area.

Three panels docked together must fit a 1000-px-high screen; without a scroll area napari
grows the window to the sum of their heights and clips what does not fit. The scroll area
scrolls up and down only and asks for its content's full width, so no line of a panel (a
model's description, a warning) is ever cut off at the right edge.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

MIN_VISIBLE_HEIGHT = 180  # px of a panel that stay visible; three panels still fit 1000 px


class VerticalScrollArea(QScrollArea):
    """A scroll area as wide as its content's minimum width, scrolling vertically only."""

    def __init__(self, inner: QWidget, compact: bool = False,
                 min_visible: int = MIN_VISIBLE_HEIGHT) -> None:
        super().__init__()
        self.compact = compact
        self.min_visible = min_visible
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(inner)
        inner.installEventFilter(self)

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        inner = self.widget()
        if inner is not None:
            hint.setWidth(inner.minimumSizeHint().width()
                          + self.verticalScrollBar().sizeHint().width()
                          + 2 * self.frameWidth())
            # never squeezed to a sliver by the panels docked beside it
            hint.setHeight(min(inner.sizeHint().height(), self.min_visible))
        return hint

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        inner = self.widget()
        if self.compact and inner is not None:  # all of the content, not Qt's 24 lines
            hint.setHeight(inner.sizeHint().height() + 2 * self.frameWidth())
        return hint

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the content's minimum width may have grown
        return super().eventFilter(watched, event)


def make_scrollable(widget: QWidget, *, compact: bool = False,
                    min_visible: int = MIN_VISIBLE_HEIGHT) -> QScrollArea:
    """Move ``widget``'s layout (and the widgets in it) into a scroll area inside ``widget``.

    Call at the end of ``__init__``, once the layout is built. Qt's ``setLayout`` takes a
    layout off its old widget and re-parents the widgets in it, so nothing else changes.
    ``compact``: the panel asks for no more height than its content, so a panel docked below
    it (Fine-tune under Segment) gets the rest of the column instead of a sliver.
    ``min_visible``: the height (px) of the content that stays in view however many panels
    share the column; a panel that keeps its buttons below the scroll area needs less.
    """
    inner = QWidget()
    inner.setLayout(widget.layout())
    scroll = VerticalScrollArea(inner, compact=compact, min_visible=min_visible)
    if compact:
        widget.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return scroll
