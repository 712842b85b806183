"""The Fine-tune panel's "New classes" box: label values the model does not have, each with a
name and a colour, so that fine-tuning teaches them as new classes (docs/new-classes.md).

Hidden while the labels hold only the model's classes. When the user paints a value beyond
them (label 4 on a 4-class model), a row appears for it: the name to give it (asked for
before Start), its colour (the one the layer shows it in, by default; a click changes it)
and how many voxels carry it, with a warning when that is too few to learn. The checks (the
new values must follow the model's in order, at most ``MAX_NEW_CLASSES`` at once) are the
CLI's (``training.fitting.new_classes``), so the panel and ``l2gnet finetune`` refuse the same
things.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QColorDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from src_model.class_growth import MAX_NEW_CLASSES
from training.fitting.new_classes import MIN_PAINTED_VOXELS

from ._tooltips import Finetune as tips

RED = "color: #e05d5d;"


def label_counts(data: np.ndarray, first: int) -> dict[int, int]:
    """Voxels per label value >= ``first`` in ``data`` (values that are not the model's)."""
    data = np.asarray(data)
    if not data.size or int(data.max(initial=0)) < first:
        return {}
    counts = np.bincount(data.ravel().astype(np.int64, copy=False))
    return {int(v): int(counts[v]) for v in range(first, len(counts)) if counts[v]}


class _ColorButton(QPushButton):
    """A swatch that opens a colour dialog; ``rgb`` is (r, g, b) in [0, 1]."""

    def __init__(self, rgb: Sequence[float]) -> None:
        super().__init__()
        self.setFixedWidth(40)
        self.setToolTip(tips.NEW_CLASS_COLOR)
        self.set_rgb(rgb)
        self.clicked.connect(self._choose)

    def set_rgb(self, rgb: Sequence[float]) -> None:
        self.rgb = tuple(float(c) for c in rgb[:3])
        r, g, b = (round(255 * c) for c in self.rgb)
        self.setStyleSheet(f"background-color: rgb({r}, {g}, {b});")

    def _choose(self) -> None:
        start = QColor.fromRgbF(*self.rgb)
        color = QColorDialog.getColor(start, self, "Colour of the new class")
        if color.isValid():
            self.set_rgb((color.redF(), color.greenF(), color.blueF()))


class NewClassesBox(QGroupBox):
    """Rows (name, colour, voxel count) for each label value the model does not have."""

    def __init__(self) -> None:
        super().__init__("New classes")
        self.setToolTip(tips.NEW_CLASSES)
        self._form = QFormLayout(self)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self._form.addRow(self.note)
        self.rows: dict[int, tuple[QLineEdit, _ColorButton, QLabel, QWidget]] = {}
        self.model_names: list[str] = []
        self.counts: dict[int, int] = {}
        self.problem: str | None = None
        self.setVisible(False)

    # ------------------------------------------------------------------ state
    def refresh(self, layer, model_names: Sequence[str] | None) -> None:
        """Show the values of ``layer`` beyond ``model_names`` (hidden when there are none)."""
        self.model_names = list(model_names or [])
        n = len(self.model_names)
        self.counts = label_counts(layer.data, n) if (layer is not None and n) else {}
        values = sorted(self.counts)
        self.problem = None
        if len(values) > MAX_NEW_CLASSES:
            self.problem = (f"The labels hold {len(values)} values the model does not have "
                            f"({values[0]}..{values[-1]}): more than {MAX_NEW_CLASSES} new "
                            "classes at once is refused; check the labels layer")
            values = []
        elif values and values != list(range(n, n + len(values))):
            expected = ", ".join(str(v) for v in range(n, n + len(values)))
            held = ", ".join(map(str, values))
            self.problem = (f"The labels hold label {held} but the model has {n} classes "
                            f"(0..{n - 1}): new classes take the next labels in order "
                            f"({expected}); repaint with label {n}, or fix those voxels")
            values = []
        for v in [v for v in self.rows if v not in values]:
            *_, row = self.rows.pop(v)
            self._form.removeRow(row)
        for v in values:
            if v not in self.rows:
                self._add_row(v, _layer_rgb(layer, v))
            name, _, count, _ = self.rows[v]
            voxels = self.counts[v]
            few = voxels < MIN_PAINTED_VOXELS
            count.setText(f"{voxels} voxels" + (" — too few to learn" if few else ""))
            count.setStyleSheet(RED if few else "")
        self._update_note()
        self.setVisible(bool(values) or self.problem is not None)

    def _add_row(self, value: int, rgb: Sequence[float]) -> None:
        name = QLineEdit()
        name.setPlaceholderText("name, e.g. lesion")
        name.textChanged.connect(self._update_note)
        color = _ColorButton(rgb)
        count = QLabel()
        row = QWidget()
        box = QHBoxLayout(row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(name, 1)
        box.addWidget(color)
        box.addWidget(count)
        self._form.addRow(f"Label {value}", row)
        self.rows[value] = (name, color, count, row)

    def _update_note(self, *_args) -> None:
        if self.problem:
            self.note.setStyleSheet(RED)
            self.note.setText(self.problem)
            return
        values = sorted(self.rows)
        if not values:
            self.note.setText("")
            return
        unnamed = [v for v in values if not self.rows[v][0].text().strip()]
        listed = ", ".join(map(str, values))
        many = len(values) > 1
        text = (f"The labels hold {'values' if many else 'a value'} the model does not have "
                f"({listed}). Name {'them' if many else 'it'} to teach "
                f"{'them as new classes' if many else 'it as a new class'}; the model's "
                f"{len(self.model_names) - 1} classes are kept.")
        if unnamed:
            text += f" Not named yet: {', '.join(map(str, unnamed))}."
        self.note.setStyleSheet(RED if unnamed else "")
        self.note.setText(text)

    # ------------------------------------------------------------------ what Start uses
    @property
    def new_values(self) -> list[int]:
        return sorted(self.rows)

    def set_name(self, value: int, name: str) -> None:
        self.rows[value][0].setText(name)

    def request(self, layer_colors: Sequence[Sequence[float]]
                ) -> tuple[list[str], list[list[float]]] | None:
        """``(class names, class colours)`` for every class when new ones are painted, else
        None. ``layer_colors``: the model's classes' colours (as the layer shows them).
        ``ValueError`` (one line) when a new value has no name or the values are refused."""
        if self.problem:
            raise ValueError(self.problem)
        if not self.rows:
            return None
        names = [self.rows[v][0].text().strip() for v in self.new_values]
        missing = [v for v, n in zip(self.new_values, names, strict=True) if not n]
        if missing:
            raise ValueError(f"Label {missing[0]} is not one of the model's classes: give it a "
                             "name under 'New classes' to teach it, or paint over it")
        colors = [list(c)[:3] for c in layer_colors]
        colors += [list(self.rows[v][1].rgb) for v in self.new_values]
        return [*self.model_names, *names], colors


def _layer_rgb(layer, value: int) -> tuple[float, float, float]:
    """The colour ``layer`` shows ``value`` in (what the user painted with)."""
    try:
        rgba = np.asarray(layer.colormap.map(np.asarray([value]))).reshape(-1)
    except Exception:  # noqa: BLE001 - a colormap napari cannot map: a visible default
        return (1.0, 0.55, 0.0)
    return tuple(float(c) for c in rgba[:3])


def layer_class_colors(layer, count: int) -> list[list[float]]:
    """The colours ``layer`` shows classes 0..count-1 in (the model's, as the user saw them)."""
    return [list(_layer_rgb(layer, i)) for i in range(count)]
