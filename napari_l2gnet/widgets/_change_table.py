"""The Fine-tune widget's "how much you changed the model's output" panel (as MONAI Label).

Dice and HD95 per class between the model's labels, kept in ``metadata["l2gnet"]
["model_labels"]`` by Segment, and the layer now (``training.finetuning.finetune.change_scores``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QGroupBox,
    QLabel,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
)

from training.finetuning.finetune import change_scores

from .._layer_record import read_record
from ._tables import read_only_table
from ._tooltips import Finetune as tips


class ChangeTable(QGroupBox):
    """One row per class: Dice, HD95, voxels changed; ``rows`` holds the numbers."""

    def __init__(self, current_layer) -> None:
        super().__init__("How much you changed the model's output")
        self._current_layer = current_layer  # () -> the labels layer to compare
        self.rows: list[dict[str, Any]] = []
        self.table = read_only_table(["class", "Dice", "HD95", "voxels changed"])
        self.table.setMinimumHeight(20 * 10 + 12)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        refresh = QPushButton("Refresh")
        refresh.setToolTip(tips.REFRESH_CHANGES)
        refresh.clicked.connect(self.refresh)
        col = QVBoxLayout(self)
        col.addWidget(self.label)
        col.addWidget(self.table)
        col.addWidget(refresh)

    def refresh(self, *_args) -> None:
        """Dice and HD95 per class between the model's labels and the layer now."""
        layer = self._current_layer()
        record = read_record(layer)
        model = record.model_labels
        self.table.setRowCount(0)
        self.rows = []
        if layer is None:
            self.label.setText("No labels layer")
            return
        if model is None:
            self.label.setText(f"'{layer.name}' keeps no model output to compare with (only "
                               "layers made by Segment do)")
            return
        try:
            spacing = tuple(float(s) for s in layer.scale)
            rows = change_scores(model, np.asarray(layer.data), record.class_names or None,
                                 spacing)
        except ValueError as err:
            self.label.setText(str(err))
            return
        changed = sum(r["changed"] for r in rows)
        self.label.setText(f"{changed} voxels changed; Dice 1 = as the model drew it; HD95 in "
                           "the layer's scale units (mm for scans)")
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            cells = [row["name"],
                     "—" if row["dice"] is None else f"{row['dice']:.3f}",
                     "—" if row["hd95"] is None else f"{row['hd95']:.2f}",
                     str(row["changed"]) if row["present"] else "absent"]
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.rows = rows
