"""R50 Attention U-Net (Oktay et al., "Attention U-Net: Learning Where to Look for the
Pancreas", MIDL 2018): UNet's identity bottleneck with attention gates on the skips.

Each gate's last attention map is kept on the module (``AttentionGate.alpha``); see
``attention_maps``.
"""

from __future__ import annotations

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


def attention_maps(model: Segmenter) -> list[Tensor]:
    """The gates' last alpha maps (B, 1, H, W), deepest skip first (after a forward)."""
    gates = [m for m in model.modules() if isinstance(m, AttentionGate)]
    return [g.alpha for g in gates if g.alpha is not None]
