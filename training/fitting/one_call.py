"""``fit``: train or fine-tune a segmenter in one call (a thin wrapper of ``Trainer``).

Kept with its original signature for callers that want one function (the napari Fine-tune
widget, scripts); ``training.fitting.trainer`` holds the steps,
``training.fitting.run_setup.prepare_run`` the set-up shared by the CLI and the widget. The
names below are re-exported from there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data import Case, Slice
from .distributed import DistContext
from .trainer import (
    FitResult,
    LossNotFinite,
    TrainConfig,
    Trainer,
    TrainEvent,
    seed_everything,
    validate,
)

__all__ = ["FitResult", "LossNotFinite", "TrainConfig", "TrainEvent", "fit", "seed_everything",
           "validate"]


def fit(
    model_or_checkpoint: torch.nn.Module | str | Path,
    train_slices: Sequence[Slice],
    val_cases: Sequence[Case],
    config: TrainConfig,
    *,
    metadata: dict[str, Any] | None = None,
    callback: Callable[[TrainEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    dist: DistContext | None = None,
) -> FitResult:
    """Train ``model_or_checkpoint`` on ``train_slices``; validate on ``val_cases``.

    ``metadata`` goes into every checkpoint (class names, colours, normalisation...); starting
    from a checkpoint inherits its metadata. Writes ``out_dir/run_state.safetensors`` (what
    ``resume`` continues), ``out_dir/last.safetensors`` each epoch (and when stopped) and
    ``out_dir/best.safetensors`` on a new best validation mean Dice; an earlier run in
    ``out_dir`` is replaced only with ``config.overwrite``.
    """
    return Trainer(model_or_checkpoint, train_slices, val_cases, config, metadata=metadata,
                   callback=callback, should_stop=should_stop, dist=dist).fit()
