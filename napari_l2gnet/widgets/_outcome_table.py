"""The Fine-tune result's per-class table: Dice on the corrected slices before and after, and
each painted class that was not learned in red, with what to do
(``training.finetuning.class_outcomes``)."""

from __future__ import annotations

from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QLabel,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from training.finetuning.class_outcomes import ClassOutcome

from ._tables import read_only_table
from ._tooltips import Finetune as tips

RED = "#e05d5d"
MAX_ROWS_SHOWN = 14


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


class OutcomeTable(QWidget):
    """class | painted on | Dice before | Dice after; ``outcomes`` holds the rows."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.outcomes: list[ClassOutcome] = []
        self.table = read_only_table(["class", "painted on", "Dice before", "Dice after"])
        self.table.horizontalHeaderItem(1).setToolTip(tips.PAINTED_ON)
        self.advice = QLabel("")
        self.advice.setWordWrap(True)
        self.advice.setStyleSheet(f"color: {RED};")
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.table)
        col.addWidget(self.advice)
        self.set_outcomes([])

    def set_outcomes(self, outcomes: list[ClassOutcome]) -> None:
        self.outcomes = list(outcomes)
        self.table.setRowCount(len(self.outcomes))
        for i, o in enumerate(self.outcomes):
            painted = f"{o.painted_slices} slice{'s' * (o.painted_slices != 1)}" \
                if o.painted else "not painted"
            cells = [o.name, painted, _fmt(o.before), _fmt(o.after)]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if not o.learned:
                    item.setForeground(QColor(RED))
                    item.setToolTip(o.advice())
                self.table.setItem(i, j, item)
        shown = min(len(self.outcomes), MAX_ROWS_SHOWN)  # more rows scroll
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height()
                                  + sum(self.table.rowHeight(i) for i in range(shown))
                                  + 2 * self.table.frameWidth() + 2)
        self.table.setVisible(bool(self.outcomes))
        lines = [a for o in self.outcomes if (a := o.advice())]
        self.advice.setText("\n".join(lines))
        self.advice.setVisible(bool(lines))

    def row_colors(self) -> list[str]:
        """Each row's text colour name (what a user sees: red rows were not learned)."""
        return [self.table.item(i, 0).foreground().color().name()
                for i in range(self.table.rowCount())]
