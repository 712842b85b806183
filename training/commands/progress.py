"""A tqdm progress bar fed by ``fit``'s callback (the napari widget uses the same events)."""

from __future__ import annotations

import sys

from tqdm import tqdm


class TrainProgress:
    """Context manager and ``TrainEvent`` callback: a step bar, one line per epoch."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, event) -> None:
        if self.bar is None:
            self.bar = tqdm(total=event.total_steps, initial=event.step - (event.kind == "step"),
                            unit="step", file=sys.stderr, dynamic_ncols=True)
        if event.kind == "step":
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event.loss:.3f}", lr=f"{event.lr:.2g}")
        elif event.kind == "epoch" and event.val_dice:
            dice = ", ".join(f"{k} {v:.3f}" for k, v in event.val_dice.items())
            self.bar.write(f"epoch {event.epoch}: val Dice {dice}", file=sys.stderr)
