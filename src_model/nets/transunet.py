"""TransUNet (Chen et al., arXiv 2102.04306, 2021): R50 + 12-layer ViT on the stride-16 tokens,
CUP decoder with skips. Config: ``TransUNetConfig`` (blocks/transformer.py)."""

from __future__ import annotations

from ..blocks.transformer import TransformerBottleneck, TransUNetConfig
from ..registry import register_model
from .base import Segmenter, build_segmenter


@register_model("transunet", TransUNetConfig, "TransUNet: R50 + ViT transformer, CUP with skips")
def build_transunet(num_classes: int, config: TransUNetConfig) -> Segmenter:
    return build_segmenter(
        "transunet", num_classes, config, lambda width: TransformerBottleneck(width, config)
    )
