"""R50-ViT (the TransUNet paper's baseline, Chen et al. 2021): TransUNet's R50 + transformer
with a cascaded upsampler that has no skip connections."""

from __future__ import annotations

from ..blocks.transformer import TransformerBottleneck, TransUNetConfig
from ..registry import register_model
from .base import Segmenter, build_segmenter


@register_model("r50_vit", TransUNetConfig, "R50-ViT: R50 + ViT transformer, decoder without skips")
def build_r50_vit(num_classes: int, config: TransUNetConfig) -> Segmenter:
    return build_segmenter(
        "r50_vit",
        num_classes,
        config,
        lambda width: TransformerBottleneck(width, config),
        use_skips=False,
    )
