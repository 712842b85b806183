"""Data, losses, metrics, training, evaluation, batch inference and the `l2gnet` CLI (no Qt).

``training.predict_volume`` (batch inference), ``training.fit.fit`` (training and
fine-tuning) and ``training.evaluate.evaluate`` are the entry points. The package itself
imports nothing heavy, so the napari reader (``training.nifti``) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "predict_volume": "training.inference",
    "iter_predict_volume": "training.inference",
    "VolumePrediction": "training.inference",
    "TrainConfig": "training.fit",
    "score_case": "training.metrics",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
