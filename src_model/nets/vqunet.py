"""VQUNet: the shared body with a vector quantiser as its only bottleneck (the L2GNet and
SynergyNet papers' VQUNet row; quantiser of van den Oord et al. 2017)."""

from __future__ import annotations

from ..blocks.quantized import QuantizedBottleneck, QuantizerConfig
from ..registry import register_model
from .base import Segmenter, build_segmenter


@register_model("vqunet", QuantizerConfig, "VQUNet: vector quantiser bottleneck")
def build_vqunet(num_classes: int, config: QuantizerConfig) -> Segmenter:
    return build_segmenter("vqunet", num_classes, config, lambda width: QuantizedBottleneck(config))
