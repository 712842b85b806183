"""A read-only result table as the Fine-tune panel shows them (one builder, so every table in
the panel reads and sizes the same way)."""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget


def read_only_table(headers: Sequence[str], row_height: int = 20) -> QTableWidget:
    """An empty table with ``headers``: no row numbers, no editing, columns fitted to their
    contents with the last one stretched, compact rows."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(list(headers))
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    table.verticalHeader().setDefaultSectionSize(row_height)
    return table
