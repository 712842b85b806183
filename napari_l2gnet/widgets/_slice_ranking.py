""""Where to correct next": the slices to correct next, listed; a click jumps there.

The model segments the image in a napari thread worker; ``training.finetuning.next_slices``
lists first slices spread over the labelled ones (nothing corrected yet) or the middle of each
range of labelled slices beyond the corrected (and taught) ones, then the slices the model is
least sure of. Slices already corrected are left out, and
so are the neighbours of a listed slice (they look alike).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGroupBox, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout

from ._tooltips import Finetune as tips

if TYPE_CHECKING:
    from training.finetuning.next_slices import SliceToCorrect


def rank_volume(volume: np.ndarray, checkpoint: str, axis: int, exclude: list[int],
                spacing: tuple[float, ...] | None) -> list[SliceToCorrect]:
    """``next_slices.slices_to_correct`` (in a thread): ``SliceToCorrect`` entries."""
    from training.finetuning.next_slices import slices_to_correct

    return slices_to_correct(volume, checkpoint, axis=axis, corrected=exclude, spacing=spacing)


class SliceRanking(QGroupBox):
    """A button that ranks, a list of ranked slices; ``ranked`` holds (slice, score)."""

    def __init__(self, viewer, request: Callable[[], tuple | None], on_error) -> None:
        super().__init__("Where to correct next")
        self.viewer = viewer
        self._request = request  # () -> (volume, checkpoint, axis, exclude, spacing) or None
        self._on_error = on_error
        self.ranked: list[SliceToCorrect] = []  # in list order
        self.worker = None
        self.button = QPushButton("Rank slices to correct next")
        self.button.setToolTip(tips.RANK)
        self.button.clicked.connect(self.rank)
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        self.list.itemClicked.connect(self.jump_to)
        col = QVBoxLayout(self)
        col.addWidget(self.button)
        col.addWidget(self.list)

    def rank(self) -> bool:
        from napari.qt.threading import create_worker

        request = self._request()
        if request is None:
            return False
        volume, checkpoint, axis, exclude, spacing = request
        self.button.setEnabled(False)
        self.list.clear()
        self.list.addItem("segmenting…")
        self.worker = create_worker(rank_volume, volume, checkpoint, axis, exclude,
                                    spacing)
        self.worker.returned.connect(lambda ranked: self._show(ranked, axis))
        self.worker.errored.connect(lambda err: self._on_error(f"Could not rank: {err}"))
        self.worker.finished.connect(self._done)
        self.worker.start()
        return True

    def _done(self) -> None:
        self.worker = None
        self.button.setEnabled(True)

    def _show(self, ranked: list[SliceToCorrect], axis: int) -> None:
        self.ranked = ranked
        self.list.clear()
        for entry in ranked:
            item = QListWidgetItem(entry.text())
            item.setData(Qt.ItemDataRole.UserRole, (axis, entry.index))
            self.list.addItem(item)

    def jump_to(self, item: QListWidgetItem) -> None:
        where = item.data(Qt.ItemDataRole.UserRole)
        if where is not None and self.viewer.dims.ndim >= 3:
            axis, index = where
            self.viewer.dims.set_current_step(axis, index)

    def shutdown(self) -> None:
        if self.worker is not None:
            self.worker.quit()
