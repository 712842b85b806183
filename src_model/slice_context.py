"""Give a trained single-slice model slice context without changing what it predicts.

A model trained on the grey slice repeated to its 3 input channels sees ``w0*x + w1*x +
w2*x`` in its first convolution. ``add_slice_context(model)`` rewrites that convolution's
filters as (0, w0 + w1 + w2, 0): fed the slice before, the slice and the slice after
(docs/design.md, "Slice context"), it computes exactly what it computed before, whatever the
neighbours hold, so training with neighbours starts from the trained model and learns how
much to use them (the zero filters get gradients like any other).
"""

from __future__ import annotations

import torch
from torch import nn


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The convolution that reads the input (every registry network's encoder stem)."""
    conv = getattr(getattr(getattr(model, "encoder", None), "stem", None), "0", None)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"{type(model).__name__} has no encoder stem convolution to give "
                        "slice context to")
    return conv


@torch.no_grad()
def add_slice_context(model: nn.Module) -> None:
    """In place: the first convolution's 3 input filters -> (0, their sum, 0)."""
    conv = first_conv(model)
    if conv.in_channels != 3:
        raise ValueError(f"slice context needs a 3-channel input, this model takes "
                         f"{conv.in_channels}")
    w = conv.weight
    total = w.sum(dim=1)
    w.zero_()
    w[:, 1] = total
