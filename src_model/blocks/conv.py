"""Convolution blocks shared by every network (pre/post-bottleneck, decoder stages)."""

from __future__ import annotations

from torch import nn


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> norm -> activation; the unit every block here is made of."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        act_layer: type[nn.Module] = nn.ReLU,
    ):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            norm_layer(out_channels),
            act_layer(inplace=True) if act_layer is nn.ReLU else act_layer(),
        )


class DoubleConv(nn.Sequential):
    """Two ``ConvNormAct`` blocks: the papers' pre- and post-bottleneck "2 conv blocks"."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        mid = mid_channels or out_channels
        super().__init__(ConvNormAct(in_channels, mid), ConvNormAct(mid, out_channels))
