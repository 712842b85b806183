"""SynergyNet's bottleneck pieces (Gorade et al., "SynergyNet: Bridging the Gap between
Discrete and Continuous Representations for Precise Medical Image Segmentation", WACV 2024).

DisConX: multi-head cross-attention whose queries come from the discrete (quantised) tokens
z_dis and whose keys/values come from the continuous tokens z_con (``hs`` soft heads).
The three are fused by addition, z_con + z_dis + attended, then refined by *hard* multi-head
self-attention (``hh`` heads): each token takes the value of the one token whose key is most
similar to its query (argmax of q.k), i.e. one-hot attention, with a straight-through softmax
gradient so that the query and key projections still learn.
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn import functional as F


class DisConX(nn.Module):
    """Cross-attention, discrete queries on continuous keys/values; tokens (B, n, dim).

    Returns the attended tokens (B, n, dim) and the per-head weights (B, hs, n, n).
    """

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)

    def forward(self, z_dis: Tensor, z_con: Tensor) -> tuple[Tensor, Tensor]:
        q = self.norm_q(z_dis)
        kv = self.norm_kv(z_con)
        out, weights = self.attn(q, kv, kv, need_weights=True, average_attn_weights=False)
        return out, weights


class HardSelfAttention(nn.Module):
    """Multi-head self-attention with one-hot (argmax) weights; tokens (B, n, dim).

    Forward uses the one-hot map of argmax_j q_i.k_j per head; backward uses the softmax's
    gradient (straight-through). Returns the output (B, n, dim) and the chosen token per query
    and head (B, hh, n), int64.
    """

    def __init__(self, dim: int, num_heads: int = 2):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide dim={dim}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, n, d = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, hh, n, head_dim)
        sim = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, hh, n, n)
        soft = sim.softmax(dim=-1)
        index = sim.argmax(dim=-1)
        hard = F.one_hot(index, n).to(soft.dtype)
        weights = hard + soft - soft.detach()  # one-hot forward, softmax gradient
        out = (weights @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out), index


class SynergyMixer(nn.Module):
    """z_con, z_dis (B, dim, h, w) -> refined (B, dim, h, w) and the attention maps.

    fused = z_con + z_dis + DisConX(z_dis, z_con); out = fused + HardSelfAttention(fused).
    """

    def __init__(self, dim: int, soft_heads: int = 8, hard_heads: int = 2, dropout: float = 0.0):
        super().__init__()
        self.disconx = DisConX(dim, soft_heads, dropout=dropout)
        self.refine = HardSelfAttention(dim, hard_heads)

    def forward(self, z_con: Tensor, z_dis: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        b, d, h, w = z_con.shape
        con = z_con.flatten(2).transpose(1, 2)
        dis = z_dis.flatten(2).transpose(1, 2)
        attended, cross = self.disconx(dis, con)
        fused = con + dis + attended
        refined, hard_index = self.refine(fused)
        out = (fused + refined).transpose(1, 2).reshape(b, d, h, w)
        return out, {"cross": cross, "hard_index": hard_index}


__all__ = ["DisConX", "HardSelfAttention", "SynergyMixer"]
