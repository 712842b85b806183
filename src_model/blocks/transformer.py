"""TransUNet's transformer bottleneck (Chen et al., "TransUNet: Transformers Make Strong
Encoders for Medical Image Segmentation", arXiv 2102.04306, 2021; ViT-B/16 sizes).

The stride-16 map is embedded token by token (1x1 conv, the hybrid ViT's patch size 1), a
learned position embedding is added (sized for ``grid_size`` x ``grid_size`` tokens and resized
bilinearly for any other grid, as ViT does at a new resolution), then ``num_layers`` pre-norm
encoder layers (``torch.nn.TransformerEncoderLayer``) and a final LayerNorm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import BodyConfig, _positive
from .bottleneck import Bottleneck


@dataclass
class TransformerFields:
    """The transformer's sizes (TransUNet / ViT-B/16 defaults).

    Args:
        num_layers: encoder layers (12).
        hidden_size: token width D (768).
        num_heads: attention heads (12); must divide ``hidden_size``.
        mlp_dim: MLP hidden width (3072).
        dropout: dropout on the embeddings, attention weights and MLP (0.1).
        grid_size: side of the token grid the position embedding is sized for (224 / 16 = 14).
    """

    num_layers: int = 12
    hidden_size: int = 768
    num_heads: int = 12
    mlp_dim: int = 3072
    dropout: float = 0.1
    grid_size: int = 14

    def check_transformer(self) -> None:
        _positive(self, "num_layers", "hidden_size", "num_heads", "mlp_dim", "grid_size")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must divide hidden_size={self.hidden_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TransUNetConfig(BodyConfig, TransformerFields):
    """Body + TransUNet transformer (``transunet``, ``r50_vit``); see ``TransformerFields``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_transformer()


class TransformerBottleneck(Bottleneck):
    """(B, in_channels, h, w) -> tokens -> transformer -> (B, hidden_size, h, w).

    ``aux`` is empty: ``nn.TransformerEncoderLayer`` does not return its attention weights.
    """

    def __init__(self, in_channels: int, cfg: TransformerFields):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = cfg.hidden_size
        self.grid_size = cfg.grid_size
        self.embed = nn.Conv2d(in_channels, cfg.hidden_size, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid_size**2, cfg.hidden_size))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            cfg.hidden_size,
            cfg.num_heads,
            dim_feedforward=cfg.mlp_dim,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer,
            cfg.num_layers,
            norm=nn.LayerNorm(cfg.hidden_size, eps=1e-6),
            enable_nested_tensor=False,
        )

    def position_embedding(self, h: int, w: int) -> Tensor:
        """(1, h*w, D): the learned embedding, resized bilinearly when the grid differs."""
        g = self.grid_size
        if (h, w) == (g, g):
            return self.pos_embed
        grid = self.pos_embed.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        return grid.flatten(2).transpose(1, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        b, _, h, w = x.shape
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (B, n, D)
        tokens = self.dropout(tokens + self.position_embedding(h, w))
        tokens = self.encoder(tokens)
        return tokens.transpose(1, 2).reshape(b, self.out_channels, h, w), {}
