"""Atrous Spatial Pyramid Pooling (Chen et al., "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation" (DeepLabV3+), ECCV 2018; ASPP from DeepLabV3).

One 1x1 conv, three 3x3 atrous convs (rates 6, 12, 18 at output stride 16) and image-level
pooling, concatenated and projected to 256 channels. The pooling branch has no BatchNorm
(torchvision's has one, which fails on a batch of one image in training mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .bottleneck import Bottleneck


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
    padding = dilation * (kernel_size // 2)
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ASPP(Bottleneck):
    """(B, in_channels, h, w) -> (B, out_channels, h, w); ``aux`` is empty.

    Args:
        in_channels: width of the stride-16 map.
        out_channels: width of every branch and of the projection (256).
        rates: dilation rates of the atrous branches (6, 12, 18 at stride 16).
        dropout: dropout after the projection (DeepLab: 0.5 in torchvision, 0.1 in the paper's
            reference code).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        dropout: float = 0.1,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_channels, out_channels, 1)]
            + [_conv_bn_relu(in_channels, out_channels, 3, dilation=r) for r in rates]
        )
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=True),
            nn.ReLU(inplace=True),
        )
        self.project = nn.Sequential(
            _conv_bn_relu((len(rates) + 2) * out_channels, out_channels, 1),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        feats = [branch(x) for branch in self.branches]
        pooled = self.image_pool(x)
        feats.append(pooled.expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(feats, dim=1)), {}


class DeepLabV3PlusDecoder(nn.Module):
    """DeepLabV3+ decoder under the ``UNetDecoder`` contract ``decoder(z, skips)``.

    z (stride 16) -> 1x1 to ``in_proj`` width -> upsample to the stride-4 skip -> concatenate a
    48-channel 1x1 projection of that skip -> two 3x3 convs -> upsample to full size (x4).

    Args:
        in_channels: width of ``z`` (the post-bottleneck map).
        low_level_channels: width of the stride-4 encoder skip.
        aspp_channels: width ``z`` is reduced to first (the ASPP's 256).
        low_level_proj: width of the skip's projection (48).
        out_channels: width of the two 3x3 convs and of the output (256).
    """

    def __init__(
        self,
        in_channels: int,
        low_level_channels: int,
        aspp_channels: int = 256,
        low_level_proj: int = 48,
        out_channels: int = 256,
    ):
        super().__init__()
        self.in_proj = (
            _conv_bn_relu(in_channels, aspp_channels, 1)
            if in_channels != aspp_channels
            else nn.Identity()
        )
        self.low_level = _conv_bn_relu(low_level_channels, low_level_proj, 1)
        self.fuse = nn.Sequential(
            _conv_bn_relu(aspp_channels + low_level_proj, out_channels, 3),
            _conv_bn_relu(out_channels, out_channels, 3),
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor, skips: Sequence[Tensor]) -> Tensor:
        low = skips[1]  # strides 2, 4, 8: the stride-4 map
        x = F.interpolate(self.in_proj(x), size=low.shape[-2:], mode="bilinear",
                          align_corners=False)
        x = self.fuse(torch.cat([x, self.low_level(low)], dim=1))
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
