"""DeepLabV3+ (Chen et al., ECCV 2018) on the shared R50 body: ASPP as the bottleneck and the
DeepLabV3+ decoder (stride-4 skip, 48-channel projection) instead of the UNet one.

``decoder_channels`` / ``decoder_head_channels`` of the body are not used by this decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..blocks.aspp import ASPP, DeepLabV3PlusDecoder
from ..config import BodyConfig, _positive
from ..encoders import encoder_channels
from ..registry import register_model
from .base import Segmenter, build_segmenter


@dataclass
class DeepLabV3PlusConfig(BodyConfig):
    """Body + ASPP + DeepLabV3+ decoder.

    Args:
        aspp_channels: width of the ASPP branches and projection (256).
        aspp_rates: atrous rates at output stride 16 (6, 12, 18); with
            ``encoder_output_stride=8`` DeepLab doubles them (12, 24, 36): set them too.
        aspp_dropout: dropout after the ASPP projection (0.1).
        low_level_channels: width of the stride-4 skip's projection (48).
        deeplab_decoder_channels: width of the decoder's two 3x3 convs (256).
    """

    aspp_channels: int = 256
    aspp_rates: tuple[int, ...] = (6, 12, 18)
    aspp_dropout: float = 0.1
    low_level_channels: int = 48
    deeplab_decoder_channels: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        self.aspp_rates = tuple(int(r) for r in self.aspp_rates)
        _positive(self, "aspp_channels", "low_level_channels", "deeplab_decoder_channels")
        if not self.aspp_rates or min(self.aspp_rates) < 1:
            raise ValueError(f"aspp_rates must be positive, got {self.aspp_rates}")
        if not 0.0 <= self.aspp_dropout < 1.0:
            raise ValueError(f"aspp_dropout must be in [0, 1), got {self.aspp_dropout}")


@register_model("deeplabv3plus", DeepLabV3PlusConfig, "DeepLabV3+ (R50): ASPP + DeepLabV3+ decoder")
def build_deeplabv3plus(num_classes: int, config: DeepLabV3PlusConfig) -> Segmenter:
    widths = encoder_channels(config.encoder)  # encoder widths at strides 2, 4, 8, 16
    decoder = DeepLabV3PlusDecoder(
        config.pre_channels or widths[-1],
        widths[1],
        aspp_channels=config.aspp_channels,
        low_level_proj=config.low_level_channels,
        out_channels=config.deeplab_decoder_channels,
    )
    return build_segmenter(
        "deeplabv3plus",
        num_classes,
        config,
        lambda width: ASPP(width, config.aspp_channels, config.aspp_rates, config.aspp_dropout),
        decoder=decoder,
    )
