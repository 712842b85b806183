"""The Fine-tune widget's live plot: loss per step, Dice on the corrected slices per epoch.

Epoch 0 (step 0) is the starting model, so a run that makes things worse shows it. While a
run goes on the plot is redrawn at most once a second (``redraw_soon``): a full matplotlib
redraw at every poll (200 ms) doubled the viewer's CPU during a run, 72 -> 143 CPU seconds
in a 280-second round (``benchmarks/finetune_panel_load.py``).
"""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer

LOSS_COLOR, DICE_COLOR = "#4c9be8", "#f0a030"
REDRAW_MS = 1000
"""While a run goes on, the plot is redrawn at most this often."""


class TrainingPlot(FigureCanvasQTAgg):
    """Loss (left axis) and Dice (right axis, 0..1) against the step."""

    def __init__(self, viewer=None) -> None:
        self.figure = Figure(figsize=(4, 2.2), tight_layout=True)
        super().__init__(self.figure)
        self.setMinimumHeight(150)
        self.loss_ax = self.figure.add_subplot(111)
        self.dice_ax = self.loss_ax.twinx()
        self._bg, self._fg = _theme_colors(viewer)
        self.figure.set_facecolor(self._bg)
        self._soon = QTimer(self)
        self._soon.setSingleShot(True)
        self._soon.setInterval(REDRAW_MS)
        self._soon.timeout.connect(self.redraw)
        self.reset()

    def reset(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.dice_steps: list[int] = []
        self.dice: list[float] = []
        self.redraw()

    def add_loss(self, step: int, loss: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)

    def add_dice(self, step: int, dice: float) -> None:
        self.dice_steps.append(step)
        self.dice.append(dice)

    def redraw_soon(self) -> None:
        """Redraw within ``REDRAW_MS`` (once for every call made meanwhile)."""
        if not self._soon.isActive():
            self._soon.start()

    def redraw(self) -> None:
        self._soon.stop()
        fg, ax, ax2 = self._fg, self.loss_ax, self.dice_ax
        ax.clear()
        ax2.clear()
        for a in (ax, ax2):
            a.set_facecolor(self._bg)
            a.tick_params(colors=fg, labelsize=7)
            for spine in a.spines.values():
                spine.set_color(fg)
        ax.plot(self.steps, self.losses, color=LOSS_COLOR, lw=1.2)
        ax.set_xlabel("step (0: the starting model)", color=fg, fontsize=8)
        ax.set_ylabel("loss", color=LOSS_COLOR, fontsize=8)
        ax2.plot(self.dice_steps, self.dice, "o-", color=DICE_COLOR, ms=3, lw=1.2)
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("Dice (corrected slices)", color=DICE_COLOR, fontsize=8)
        ax2.yaxis.set_label_position("right")
        if not self.steps and not self.dice:
            ax.text(0.5, 0.5, "loss and Dice appear here while fine-tuning",
                    transform=ax.transAxes, ha="center", va="center", color=fg, fontsize=8)
        self.draw_idle()


def _theme_colors(viewer) -> tuple[str, str]:
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        return theme.background.as_hex(), theme.text.as_hex()
    except Exception:  # noqa: BLE001 - plain colours when the theme is unknown
        return "#262930", "#f0f1f2"
