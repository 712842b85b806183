"""``Segmenter``: the one body every system shares; systems differ only in the bottleneck.

encoder -> pre-bottleneck (2 conv blocks) -> bottleneck -> post-bottleneck (2 conv blocks)
-> decoder with skips -> 1x1 head (docs/design.md "The model").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..blocks.bottleneck import Bottleneck
from ..blocks.conv import DoubleConv
from ..blocks.decoder import SkipGateFactory, UNetDecoder
from ..config import BodyConfig
from ..encoders import get_encoder
from ..types import SegOutput


class Segmenter(nn.Module):
    """Wires encoder, pre/post blocks, bottleneck, decoder and head; ``forward`` is shared.

    Build it with ``src_model.build_model(name, num_classes, **config)``.
    """

    def __init__(
        self,
        *,
        name: str,
        num_classes: int,
        config: BodyConfig,
        encoder: nn.Module,
        bottleneck: Bottleneck,
        decoder: nn.Module,
        pre: nn.Module,
        post: nn.Module,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + classes), got {num_classes}")
        self.name = name
        self.num_classes = num_classes
        self.config = config
        self.encoder = encoder
        self.pre = pre
        self.bottleneck = bottleneck
        self.post = post
        self.decoder = decoder
        self.head = nn.Conv2d(decoder.out_channels, num_classes, kernel_size=1)
        self.output_stride = encoder.output_stride

    @property
    def in_channels(self) -> int:
        return self.encoder.in_channels

    def check_input(self, x: Tensor) -> None:
        """Say exactly what is wrong with an input the body cannot take."""
        if x.ndim != 4:
            raise ValueError(f"Expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name} takes {self.in_channels} input channels, got {x.shape[1]} "
                f"(shape {tuple(x.shape)}); repeat a grey slice to 3 channels"
            )
        h, w = x.shape[-2:]
        s = self.output_stride
        if h % s or w % s:
            raise ValueError(
                f"Input height and width must be multiples of {s}, got {h} x {w}; resize or pad "
                f"to e.g. {-(-h // s) * s} x {-(-w // s) * s}"
            )

    def forward_features(self, x: Tensor) -> tuple[list[Tensor], Tensor, dict[str, Any]]:
        """Encoder features, the post-bottleneck map, and the bottleneck's aux outputs."""
        feats = self.encoder(x)
        z, aux = self.bottleneck(self.pre(feats[-1]))
        return feats, self.post(z), aux

    def forward(self, x: Tensor) -> SegOutput:
        self.check_input(x)
        feats, z, aux = self.forward_features(x)
        logits = self.head(self.decoder(z, feats[:-1]))
        votes = aux.get("vote_logits")
        if votes is not None:  # token-level class votes of a bottleneck (L2GNet plan_vote)
            logits = logits + nn.functional.interpolate(
                votes.to(logits.dtype), size=logits.shape[-2:], mode="bilinear",
                align_corners=False)
        if "quant_loss" not in aux:
            aux["quant_loss"] = torch.zeros((), device=x.device, dtype=logits.dtype)
        return SegOutput(logits=logits, aux=aux)


def body_width(config: BodyConfig, encoder: nn.Module) -> int:
    """Width of the pre/post-bottleneck blocks (the encoder's stride-16 width by default)."""
    return config.pre_channels or encoder.out_channels[-1]


def build_segmenter(
    name: str,
    num_classes: int,
    config: BodyConfig,
    make_bottleneck,
    *,
    use_skips: bool = True,
    skip_gate: SkipGateFactory | None = None,
    decoder: nn.Module | None = None,
) -> Segmenter:
    """Assemble the shared body around ``make_bottleneck(width) -> Bottleneck``.

    The pre-bottleneck maps the encoder's stride-16 map to the bottleneck's input width and the
    post-bottleneck maps its output back to ``width``; ``decoder`` overrides the UNet/CUP one.
    """
    encoder = get_encoder(config.encoder, config.in_channels, config.encoder_weights,
                          output_stride=config.encoder_output_stride)
    width = body_width(config, encoder)
    bottleneck = make_bottleneck(width)
    pre = DoubleConv(encoder.out_channels[-1], bottleneck.in_channels, mid_channels=width)
    post = DoubleConv(bottleneck.out_channels, width)
    if decoder is None:
        decoder = UNetDecoder(
            width,
            encoder.out_channels[:-1],
            config.decoder_channels,
            head_channels=config.decoder_head_channels,
            first_upsample=encoder.output_stride // 8,
            use_skips=use_skips,
            skip_gate=skip_gate,
        )
    return Segmenter(
        name=name,
        num_classes=num_classes,
        config=config,
        encoder=encoder,
        bottleneck=bottleneck,
        decoder=decoder,
        pre=pre,
        post=post,
    )
