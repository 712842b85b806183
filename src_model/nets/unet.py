"""R50 UNet: the shared body with an identity bottleneck (the papers' UNet row)."""

from __future__ import annotations

from ..blocks.bottleneck import IdentityBottleneck
from ..config import BodyConfig
from ..registry import register_model
from .base import Segmenter, build_segmenter


@register_model("unet", BodyConfig, "UNet (R50): identity bottleneck")
def build_unet(num_classes: int, config: BodyConfig) -> Segmenter:
    return build_segmenter("unet", num_classes, config, IdentityBottleneck)
