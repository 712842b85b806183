"""Form helpers for the panels: a control, its tooltip and its handler in one call.

Every panel builds its form from these, so that a row's label and its control show the same
tooltip (the texts live in ``_tooltips``), numbers are entered the same way everywhere, and a
handler is connected to the signal that means "the user changed this" for that kind of
control (``on_change``): a combo box's text, a spin box's value, a line edit when editing is
finished, a tick box when toggled, a button when clicked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

Handler = Callable[..., object]


def on_change(widget: QWidget, handler: Handler | None) -> None:
    """Connect ``handler`` to the signal by which ``widget`` says the user changed it."""
    if handler is None:
        return
    if isinstance(widget, QComboBox):
        widget.currentTextChanged.connect(handler)
    elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        widget.valueChanged.connect(handler)
    elif isinstance(widget, QLineEdit):
        widget.editingFinished.connect(handler)
    elif isinstance(widget, QAbstractButton):
        (widget.toggled if widget.isCheckable() else widget.clicked).connect(handler)
    else:
        raise TypeError(f"no change signal known for {type(widget).__name__}")


def add_row(form: QFormLayout, label: str, field: QWidget | QLayout, tip: str = "",
            on: Handler | None = None) -> QLabel:
    """Add ``label: field`` to ``form``; the label and the field share ``tip`` (or the
    field's own tooltip); ``on`` is connected to the field's change signal. Returns the
    label (to hide the row with it)."""
    text = QLabel(label)
    if isinstance(field, QWidget):
        tip = tip or field.toolTip()  # the field's own tip, when the row gives none
        if not field.toolTip():
            field.setToolTip(tip)
        on_change(field, on)
    text.setToolTip(tip)
    form.addRow(text, field)
    return text


def spin_box(low: float, high: float, value: float, *, decimals: int | None = None,
             tip: str = "", special: str = "", on: Handler | None = None
             ) -> QSpinBox | QDoubleSpinBox:
    """An integer spin box, or a decimal one with ``decimals`` places (steps of 10 units of
    the last place); ``special`` is shown for the lowest value ("auto")."""
    spin = QSpinBox() if decimals is None else QDoubleSpinBox()
    if decimals is not None:
        spin.setDecimals(decimals)
        spin.setSingleStep(10 ** -decimals * 10)
    spin.setRange(low, high)
    spin.setValue(value)
    if special:
        spin.setSpecialValueText(special)
    spin.setToolTip(tip)
    on_change(spin, on)
    return spin


def combo_box(items: Iterable[str], tip: str = "", on: Handler | None = None) -> QComboBox:
    combo = QComboBox()
    combo.addItems(list(items))
    combo.setToolTip(tip)
    on_change(combo, on)
    return combo


def check_box(text: str, checked: bool = False, tip: str = "",
              on: Handler | None = None) -> QCheckBox:
    box = QCheckBox(text)
    box.setChecked(checked)
    box.setToolTip(tip)
    on_change(box, on)
    return box


def push_button(text: str, on: Handler | None = None, tip: str = "") -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    on_change(button, on)
    return button


def line_edit(text: str = "", placeholder: str = "", tip: str = "",
              on: Handler | None = None) -> QLineEdit:
    edit = QLineEdit(text)
    edit.setPlaceholderText(placeholder)
    edit.setToolTip(tip)
    on_change(edit, on)
    return edit


class WrapLabel(QLabel):
    """A word-wrapped label that asks for the height its lines take at its width.

    Qt sizes a wrapped label for a guessed width, so in a narrow dock its later lines are
    cut off (napari's dock area does not ask for height-for-width); this one's minimum
    height follows its actual width."""

    def __init__(self, text: str = "") -> None:
        super().__init__(text)
        self.setWordWrap(True)
        self._height = -1

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        hint = super().minimumSizeHint()
        if self.text() and self.width() > 0:
            hint.setHeight(max(hint.height(), self.heightForWidth(self.width())))
        return hint

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        hint = super().sizeHint()
        hint.setHeight(max(hint.height(), self.minimumSizeHint().height()))
        return hint

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        height = self.heightForWidth(self.width()) if self.text() else 0
        if height != self._height:  # the lines changed: the layouts above ask again
            self._height = height
            self.updateGeometry()


def note_label(text: str = "", color: str = "", selectable: bool = False) -> QLabel:
    """A label that wraps (a panel's text is never cut off at its right edge, nor below)."""
    label = WrapLabel(text)
    if color:
        label.setStyleSheet(f"color: {color}")
    if selectable:
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def hbox(*widgets: QWidget, stretch_first: bool = True) -> QWidget:
    """``widgets`` side by side without margins; the first takes the spare width."""
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for i, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if (i == 0 and stretch_first) else 0)
    return box
