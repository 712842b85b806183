"""SynergyNet (Gorade et al., "SynergyNet: Bridging the Gap between Discrete and Continuous
Representations for Precise Medical Image Segmentation", WACV 2024).

Bottleneck: quantiser -> DisConX cross-attention (discrete queries, continuous keys/values,
``hs`` heads) -> fusion by addition -> hard-attention refinement (``hh`` heads). Variants are
named by heads: 8s2h (paper default), 2s2h, 8s8h.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..blocks.disconx import SynergyMixer
from ..blocks.quantized import QuantizedBottleneck, QuantizerConfig
from ..config import _positive
from ..registry import register_model
from .base import Segmenter, build_segmenter


@dataclass
class SynergyNetConfig(QuantizerConfig):
    """Body + codebook + SynergyNet's attention. The paper's codebook: K = 1024, dim = 512.

    Args:
        hs: soft DisConX cross-attention heads (8); must divide ``code_dim``.
        hh: hard self-attention refinement heads (2); must divide ``code_dim``.
        attn_dropout: dropout on DisConX's attention weights (0).
    """

    codebook_size: int = 1024
    code_dim: int = 512
    hs: int = 8
    hh: int = 2
    attn_dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "hs", "hh")
        for key in ("hs", "hh"):
            if self.code_dim % getattr(self, key):
                raise ValueError(
                    f"{key}={getattr(self, key)} heads must divide code_dim={self.code_dim}"
                )
        if not 0.0 <= self.attn_dropout < 1.0:
            raise ValueError(f"attn_dropout must be in [0, 1), got {self.attn_dropout}")


class SynergyBottleneck(QuantizedBottleneck):
    """z_con -> VQ -> SynergyMixer(z_con, z_dis); aux["attention"] = {"cross": (B, hs, n, n)
    DisConX weights, "hard_index": (B, hh, n) token each query attends to}."""

    def __init__(self, config: SynergyNetConfig):
        super().__init__(config)
        self.mixer = SynergyMixer(config.code_dim, config.hs, config.hh, config.attn_dropout)

    def forward(self, z_con: Tensor) -> tuple[Tensor, dict[str, Any]]:
        z_dis, aux = self.quantize(z_con)
        out, attention = self.mixer(z_con, z_dis)
        aux["attention"] = attention
        return out, aux


@register_model("synergynet", SynergyNetConfig, "SynergyNet: quantiser + DisConX + hard attention")
def build_synergynet(num_classes: int, config: SynergyNetConfig) -> Segmenter:
    return build_segmenter(
        "synergynet", num_classes, config, lambda width: SynergyBottleneck(config)
    )
