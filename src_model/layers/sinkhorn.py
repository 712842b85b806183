"""Entropic optimal transport by Sinkhorn iterations in the log domain (L2GNet eq. 2).

The plan for a cost ``M`` (..., n, t), marginals ``a`` (n) and ``b`` (t) and regularisation
``eps`` is ``T = diag(u) exp(-M / eps) diag(v)``; we keep ``log u`` and ``log v`` and update
them with ``logsumexp``, so neither ``exp(-M / eps)`` nor the scalings are ever formed. That is
what lets large costs and small ``eps`` run in fp16/bf16 without overflow or underflow
(Peyré & Cuturi, "Computational Optimal Transport", §4.4).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["sinkhorn_log"]

_HALF = (torch.float16, torch.bfloat16)


def _log_marginal(m: Tensor | None, size: int, like: Tensor, name: str) -> Tensor | float:
    """log of a marginal; ``None`` is the uniform 1/size (kept a scalar: it broadcasts)."""
    if m is None:
        return -math.log(size)
    m = torch.as_tensor(m, device=like.device).to(like.dtype)
    if m.shape[-1:] != (size,):
        raise ValueError(f"marginal {name} must end in size {size}, got shape {tuple(m.shape)}")
    return torch.log(m)


def sinkhorn_log(
    cost: Tensor,
    eps: float,
    iters: int = 10,
    a: Tensor | None = None,
    b: Tensor | None = None,
) -> Tensor:
    """Entropic OT plan for ``cost`` (..., n, t), batched over every leading dimension.

    Alternates the row (``a``) and column (``b``) scalings ``iters`` times, the column update
    last: the plan's column sums equal ``b`` to rounding, its row sums approach ``a`` as the
    iterations grow (paper: 10 iterations; docs/design.md "L2GMapper" step 2). Differentiable
    end to end by plain autograd through the iterations.

    Args:
        cost: transport cost M (..., n, t); L2GNet uses M = -<psi(z_i), z_ref_j>.
        eps: entropic regularisation epsilon (> 0); smaller is sharper and slower to converge.
        iters: number of (row, column) update pairs (>= 1).
        a: row marginal, shape (..., n) broadcastable to the batch, positive; default 1/n.
        b: column marginal, shape (..., t), positive; default 1/t.

    Returns:
        The plan T (..., n, t). Computed in float32 when ``cost`` is float16/bfloat16 and
        *returned in float32* (plan entries ~ 1/(n t) lose most of their precision in half
        types); float32/float64 inputs are computed and returned in their own dtype.
    """
    if eps <= 0:
        raise ValueError(f"sinkhorn eps must be > 0, got {eps}")
    if iters < 1:
        raise ValueError(f"sinkhorn iters must be >= 1, got {iters}")
    if cost.dim() < 2:
        raise ValueError(f"cost must be (..., n, t), got shape {tuple(cost.shape)}")
    if cost.dtype in _HALF:
        cost = cost.float()
    n, t = cost.shape[-2:]
    log_a = _log_marginal(a, n, cost, "a")
    log_b = _log_marginal(b, t, cost, "b")

    log_k = -cost / eps  # log of the Gibbs kernel, never exponentiated on its own
    log_v = torch.zeros_like(log_k[..., 0, :])  # (..., t)
    for _ in range(iters):
        log_u = log_a - torch.logsumexp(log_k + log_v.unsqueeze(-2), dim=-1)  # rows
        log_v = log_b - torch.logsumexp(log_k + log_u.unsqueeze(-1), dim=-2)  # columns (last)
    return torch.exp(log_k + log_u.unsqueeze(-1) + log_v.unsqueeze(-2))
