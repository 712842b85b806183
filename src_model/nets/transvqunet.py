"""TransVQUNet (SynergyNet paper, Gorade et al., WACV 2024): vector quantiser followed by
TransUNet's transformer on the discrete tokens, CUP decoder with skips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..blocks.quantized import QuantizedBottleneck, QuantizerConfig
from ..blocks.transformer import TransformerBottleneck, TransformerFields
from ..registry import register_model
from .base import Segmenter, build_segmenter


@dataclass
class TransVQUNetConfig(QuantizerConfig, TransformerFields):
    """Body + codebook (``QuantizerConfig``) + transformer (``TransformerFields``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_transformer()


class QuantizedTransformerBottleneck(QuantizedBottleneck):
    """z_con -> VQ -> transformer(z_dis) -> (B, hidden_size, h, w)."""

    def __init__(self, config: TransVQUNetConfig):
        super().__init__(config)
        self.transformer = TransformerBottleneck(config.code_dim, config)
        self.out_channels = self.transformer.out_channels

    def forward(self, z_con: Tensor) -> tuple[Tensor, dict[str, Any]]:
        z_dis, aux = self.quantize(z_con)
        out, _ = self.transformer(z_dis)
        return out, aux


@register_model("transvqunet", TransVQUNetConfig, "TransVQUNet: quantiser + ViT transformer")
def build_transvqunet(num_classes: int, config: TransVQUNetConfig) -> Segmenter:
    return build_segmenter(
        "transvqunet", num_classes, config, lambda width: QuantizedTransformerBottleneck(config)
    )
