"""R50 Attention U-Net (Oktay et al., "Attention U-Net: Learning Where to Look for the
Pancreas", MIDL 2018): UNet's identity bottleneck with attention gates on the skips.

``attention_maps(model, x)`` returns the gates' attention maps for an input, read through
forward hooks (the gates keep no state between calls).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..blocks.attention_gate import AttentionGate, attention_gate_factory
from ..blocks.bottleneck import IdentityBottleneck
from ..config import BodyConfig
from ..registry import register_model
from .base import Segmenter, build_segmenter


@register_model("attn_unet", BodyConfig, "Attention U-Net (R50): attention gates on the skips")
def build_attn_unet(num_classes: int, config: BodyConfig) -> Segmenter:
    return build_segmenter(
        "attn_unet", num_classes, config, IdentityBottleneck, skip_gate=attention_gate_factory
    )


def attention_maps(model: Segmenter, x: Tensor) -> list[Tensor]:
    """The gates' alpha maps (B, 1, H, W) for input ``x``, in the order the decoder applies
    them (deepest skip first). Runs one forward pass without gradients."""
    maps: list[Tensor] = []
    gates = [m for m in model.modules() if isinstance(m, AttentionGate)]
    handles = [g.psi.register_forward_hook(lambda _m, _i, out: maps.append(out.detach().sigmoid()))
               for g in gates]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return maps
