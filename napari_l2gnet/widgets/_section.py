"""A collapsible section: a header with an arrow that shows or hides what is under it.

Panels docked together share one column of the screen; the parts a user sets once (options,
settings, the annotation store) fold away so that what they act on (Segment, the result,
Accept, the Explain table) stays in view. The header names what is folded, so nothing is
hidden without a trace.
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QFrame, QSizePolicy, QToolButton, QVBoxLayout, QWidget


class Section(QWidget):
    """``title`` over ``content``; ``expanded`` says whether the content shows."""

    toggled = Signal(bool)

    def __init__(self, title: str, content: QWidget, *, expanded: bool = True,
                 tip: str = "", parent=None) -> None:
        super().__init__(parent)
        self.header = QToolButton()
        self.header.setText(title)
        self.header.setToolTip(tip)
        self.header.setCheckable(True)
        self.header.setChecked(expanded)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setAutoRaise(True)
        self.header.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.header.setStyleSheet("QToolButton { font-weight: bold; border: none; }")
        self.content = content
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(2)
        col.addWidget(self.header)
        col.addWidget(line)
        col.addWidget(content)
        self.header.toggled.connect(self._show)
        self._show(expanded)

    @property
    def expanded(self) -> bool:
        return self.header.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        self.header.setChecked(expanded)  # toggled -> _show (nothing when unchanged)

    def set_title(self, title: str) -> None:
        self.header.setText(title)

    def _show(self, expanded: bool) -> None:
        self.header.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.content.setVisible(expanded)
        self.toggled.emit(expanded)
