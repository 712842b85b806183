"""Training presets: a ``--model`` name picks a network, config overrides and loss weights.

``l2gnet`` trains L2GNet as this project does by default, the same as ``l2gnet-explain``:
the ``sharp`` plan settings with the bucket-class term, so that the transport plans are sharp
and follow the labels, and bucket votes trained by the vote term, so that the output depends
on them (docs/design.md "Plan design choices"; README plan ablation).
``l2gnet-paper`` is the paper-literal reading (every plan field at its dataclass default, the
paper's loss), which is also what a checkpoint means where its metadata lacks a field.
``ssnet`` / ``transsnet`` are SSNet's recipe (Gorade et al., arXiv:2401.10373): a plain
UNet / TransUNet trained with the spectral correlation term added. Every other registered
model name is also a preset with the default loss (the names come from
``src_model.list_models``, not a copy). ``--set`` options are applied after a preset's config
overrides, so they win.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from src_model import list_models
from src_model.nets.l2gnet import PLAN_PRESETS
from training.fitting.losses import LossConfig

__all__ = ["MODEL_NAMES", "PRESETS", "TrainingPreset", "resolve_preset"]

MODEL_NAMES: tuple[str, ...] = tuple(list_models())


@dataclass(frozen=True)
class TrainingPreset:
    """The network to build, config overrides applied before ``--set``, and loss weights."""

    model: str
    model_config: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, float] = field(default_factory=dict)

    def loss_config(self) -> LossConfig:
        return dataclasses.replace(LossConfig(), **self.loss)


_L2GNET_EXPLAIN = TrainingPreset("l2gnet", {**PLAN_PRESETS["sharp"], "plan_vote": True},
                                 {"bucket_weight": 1.0, "vote_weight": 1.0})

PRESETS: dict[str, TrainingPreset] = {
    **{name: TrainingPreset(name) for name in MODEL_NAMES},
    "l2gnet": _L2GNET_EXPLAIN,
    "l2gnet-explain": _L2GNET_EXPLAIN,
    "l2gnet-paper": TrainingPreset("l2gnet"),
    "ssnet": TrainingPreset("unet", loss={"spectral_weight": 0.1}),
    "transsnet": TrainingPreset("transunet", loss={"spectral_weight": 0.1}),
}


def resolve_preset(name: str) -> TrainingPreset:
    """``name`` -> its ``TrainingPreset``; ValueError listing the accepted names."""
    if name not in PRESETS:
        raise ValueError(
            f"unknown training preset {name!r}; accepted: {', '.join(sorted(PRESETS))}"
        )
    return PRESETS[name]
