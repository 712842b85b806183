"""Training presets: a preset name picks a model and the loss weights.

``ssnet`` / ``transsnet`` are SSNet's recipe (Gorade et al., arXiv:2401.10373): a plain UNet /
TransUNet trained with the spectral correlation term added. Every registered model name is
also a preset with the default loss (the names come from ``src_model.list_models``, not a copy).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from src_model import list_models
from training.losses import LossConfig

__all__ = ["MODEL_NAMES", "PRESETS", "resolve_preset"]

MODEL_NAMES: tuple[str, ...] = tuple(list_models())

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    **{name: (name, {}) for name in MODEL_NAMES},
    "ssnet": ("unet", {"spectral_weight": 0.1}),
    "transsnet": ("transunet", {"spectral_weight": 0.1}),
}


def resolve_preset(name: str) -> tuple[str, LossConfig]:
    """``name`` -> ``(model name, LossConfig)``; ValueError listing the accepted names."""
    if name not in PRESETS:
        raise ValueError(
            f"unknown training preset {name!r}; accepted: {', '.join(sorted(PRESETS))}"
        )
    model_name, overrides = PRESETS[name]
    return model_name, dataclasses.replace(LossConfig(), **overrides)
