"""Positional filter S of L2GNet eq. 3: a Gaussian affinity between token and bucket positions.

Indexing convention (one for 1-D and 2-D, stated once): a token or bucket index ``i`` over a
length ``n`` sits at the *centre of its cell*, ``(i + 0.5) / n`` in [0, 1]. The paper writes
``i / n``; with zero-based ``i`` that puts token 0 and bucket 0 both at 0 but the last token at
(n-1)/n and the last bucket at (t-1)/t, a shift of order 1/t - 1/n toward the start. Cell centres
are symmetric: ``S`` is unchanged when both tokens and buckets are reversed, so the first and
last anatomy rows of a slice are treated alike. ``offset=0.0`` gives the paper's literal i/n.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["positional_filter_1d", "positional_filter_2d"]


def _coords(size: int, offset: float, device: torch.device | None) -> Tensor:
    """(i + offset) / size for i = 0 .. size-1, float32."""
    return (torch.arange(size, dtype=torch.float32, device=device) + offset) / size


def _gauss(x: Tensor, y: Tensor, sigma: float) -> Tensor:
    """exp(-(x_i - y_j)^2 / sigma^2) for every pair: (len(x), len(y))."""
    return torch.exp(-((x[:, None] - y[None, :]) ** 2) / sigma**2)


def positional_filter_1d(
    n: int,
    t: int,
    sigma: float,
    *,
    offset: float = 0.5,
    device: torch.device | str | None = None,
) -> Tensor:
    """S (n, t), S_ij = exp(-((i + offset)/n - (j + offset)/t)^2 / sigma^2), float32.

    ``i`` is the token's row-major index over the n = h*w tokens (paper eq. 3), ``j`` the
    bucket's index over the t reference elements. On a grid, i/n is close to the row
    coordinate, so this filter mostly encodes vertical position.
    """
    if n < 1 or t < 1 or sigma <= 0:
        raise ValueError(f"need n >= 1, t >= 1, sigma > 0; got {n}, {t}, {sigma}")
    device = torch.device(device) if device is not None else None
    return _gauss(_coords(n, offset, device), _coords(t, offset, device), sigma)


def positional_filter_2d(
    h: int,
    w: int,
    t: int,
    sigma: float,
    *,
    offset: float = 0.5,
    device: torch.device | str | None = None,
) -> Tensor:
    """S (h*w, t) for an h x w token grid and t = s*s buckets on an s x s grid, float32.

    Token (r, c) is row ``r * w + c`` (row-major, as ``flatten`` on (h, w)); bucket (p, q) is
    column ``p * s + q``. S = G_row[r, p] * G_col[c, q] with G_row = positional_filter_1d(h, s)
    and G_col = positional_filter_1d(w, s): a product of a row and a column Gaussian over
    normalised coordinates (OTKE's 2-D filter), so h != w is fine.
    """
    s = math.isqrt(t)
    if s * s != t:
        raise ValueError(f"2-D positional filter needs a square ref_size t = s*s, got t={t}")
    g_row = positional_filter_1d(h, s, sigma, offset=offset, device=device)  # (h, s)
    g_col = positional_filter_1d(w, s, sigma, offset=offset, device=device)  # (w, s)
    return (g_row[:, None, :, None] * g_col[None, :, None, :]).reshape(h * w, t)
