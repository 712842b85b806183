"""What the Fine-tune panel shows of a run: the live plot, the result, and the change table.

The plot follows the loss per step and the Dice on the corrected slices per epoch (epoch 0
is the starting model); when the run ends the result reads the report (Dice before and
after, how much the uncorrected slices changed) and the per-class table marks a painted
class that was not learned in red, with what to do. The "how much you changed the model's
output" table compares the labels layer with the model's own labels, before any run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from qtpy.QtWidgets import QGroupBox, QVBoxLayout, QWidget

from training.finetuning.class_outcomes import outcomes_of

from ._change_table import ChangeTable
from ._forms import note_label
from ._outcome_table import OutcomeTable
from ._training_plot import TrainingPlot

WAITING = "Dice before and after appear here after a run."


class ResultView(QWidget):
    """Plot, result text, per-class outcome table; the change table as ``changes``."""

    def __init__(self, viewer, current_labels: Callable[[], object], parent=None) -> None:
        super().__init__(parent)
        self.plot = TrainingPlot(viewer)
        self.result_label = note_label(WAITING)
        self.outcomes = OutcomeTable()
        self.result_box = QGroupBox("Result")
        box = QVBoxLayout(self.result_box)
        box.addWidget(self.result_label)
        box.addWidget(self.outcomes)
        self.changes = ChangeTable(current_labels)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.plot)
        col.addWidget(self.result_box)
        col.addWidget(self.changes)

    def running(self) -> None:
        """A run starts: empty plot, no result yet."""
        self.plot.reset()
        self.result_label.setText("Running…")
        self.outcomes.set_outcomes([])

    def add_events(self, events: list) -> str:
        """Plot a batch of training events; a line for the status ("" when nothing to say)."""
        said = ""
        for event in events:
            if event.kind == "step":
                self.plot.add_loss(event.step, event.loss)
                said = (f"Epoch {event.epoch + 1}, step {event.step}/{event.total_steps}: "
                        f"loss {event.loss:.4f}")
            elif event.kind == "epoch" and event.val_dice:
                mean = event.val_dice.get("mean")
                if mean is not None and np.isfinite(mean):
                    self.plot.add_dice(event.step, mean)
                if event.epoch == 0:
                    said = (f"Starting model: Dice {mean:.3f} on the corrected slices; "
                            "fine-tuning…")
        if events:
            self.plot.redraw_soon()
        return said

    def show_report(self, report, corrected_labels: list, class_names: list[str]) -> None:
        """The run's report: the summary, and per class on the corrected slices."""
        self.result_label.setText(report.describe())
        self.outcomes.set_outcomes(outcomes_of(report, corrected_labels, class_names))

    def show_failure(self) -> None:
        self.result_label.setText("No result.")
