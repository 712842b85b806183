"""The one output type every network returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class SegOutput:
    """Logits plus what the bottleneck has to say about them.

    ``aux`` keys (present when the model has the component):
    ``quant_loss`` (scalar; 0 without a quantiser), ``codes`` (B x h x w code indices),
    ``plans`` (B x q x n x t transport plans, L2GNet), ``vote_logits`` (B x C x h x w class
    votes of the buckets, L2GNet with ``plan_vote``; the body adds them, upsampled, to
    ``logits``), ``codebook_usage`` (dict with
    ``perplexity`` and ``dead_codes``), ``attention`` (attention maps, attention models).
    Everything is at the bottleneck's resolution: nothing is upsampled for explanation's sake.
    """

    logits: Tensor
    aux: dict[str, Any] = field(default_factory=dict)
