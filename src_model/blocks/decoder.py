"""UNet / TransUNet-CUP decoder: upsample x2 per stage, concatenate the skip, two convs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .conv import ConvNormAct, DoubleConv

# A gate refines a skip with the decoder's coarser signal: gate(skip, gating) -> skip.
SkipGateFactory = Callable[[int, int], nn.Module]  # (skip_channels, gating_channels) -> module


class DecoderBlock(nn.Module):
    """Upsample (bilinear, x2 unless told), optionally gate and concatenate a skip, two convs."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        skip_gate: SkipGateFactory | None = None,
        upsample: int = 2,
    ):
        super().__init__()
        self.upsample = upsample
        self.gate = skip_gate(skip_channels, in_channels) if skip_gate and skip_channels else None
        self.convs = DoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if self.upsample != 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="bilinear",
                              align_corners=False)
        if skip is not None:
            if self.gate is not None:
                skip = self.gate(skip, x)
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class UNetDecoder(nn.Module):
    """As deep as the encoder: one stage per stride (16 -> 8 -> 4 -> 2 -> 1).

    After an output-stride-8 encoder the first stage does not upsample (8 -> 8 -> 4 -> 2 -> 1),
    so the weights' shapes, and the output's resolution, do not depend on the stride.

    Args:
        in_channels: width of the stride-16 map coming out of the post-bottleneck.
        skip_channels: encoder widths at strides 2, 4, 8 (shallow to deep).
        decoder_channels: output width of each stage, deepest first (TransUNet: 256,128,64,16).
        head_channels: width of the first 3x3 conv on the bottleneck map (TransUNet's
            ``conv_more``: 512).
        first_upsample: the first stage's upsampling factor: 2 after a stride-16 map, 1 after
            a stride-8 one.
        use_skips: ``False`` gives R50-ViT's decoder (no skip connections).
        skip_gate: optional factory for a gate applied to each skip (Attention U-Net).
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: Sequence[int],
        decoder_channels: Sequence[int] = (256, 128, 64, 16),
        head_channels: int = 512,
        first_upsample: int = 2,
        use_skips: bool = True,
        skip_gate: SkipGateFactory | None = None,
    ):
        super().__init__()
        skips = list(skip_channels)[::-1] if use_skips else []  # deepest first: s8, s4, s2
        if len(decoder_channels) < len(skips) + 1:
            raise ValueError(
                f"The encoder gives {len(skips)} skips, so the decoder needs at least "
                f"{len(skips) + 1} stages, but decoder_channels has {len(decoder_channels)}: "
                f"{tuple(decoder_channels)}"
            )
        self.use_skips = use_skips
        self.conv_more = ConvNormAct(in_channels, head_channels)
        widths = [head_channels, *decoder_channels]
        self.blocks = nn.ModuleList(
            DecoderBlock(
                widths[i], skips[i] if i < len(skips) else 0, widths[i + 1], skip_gate=skip_gate,
                upsample=first_upsample if i == 0 else 2,
            )
            for i in range(len(decoder_channels))
        )
        self.out_channels = decoder_channels[-1]

    def forward(self, x: Tensor, skips: Sequence[Tensor]) -> Tensor:
        feats = list(skips)[::-1] if self.use_skips else []
        x = self.conv_more(x)
        for i, block in enumerate(self.blocks):
            x = block(x, feats[i] if i < len(feats) else None)
        return x
