"""The bottleneck contract: the one place where the papers' systems differ."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class Bottleneck(nn.Module):
    """Maps (B, in_channels, h, w) -> ((B, out_channels, h, w), aux dict of explanations)."""

    in_channels: int
    out_channels: int

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        raise NotImplementedError


class IdentityBottleneck(Bottleneck):
    """UNet's bottleneck: nothing between the pre- and post-bottleneck blocks."""

    def __init__(self, channels: int):
        super().__init__()
        self.in_channels = self.out_channels = channels

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        return x, {}
