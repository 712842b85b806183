"""L2GMapper: the optimal-transport bottleneck of L2GNet (Gorade et al., 2026, eq. 1-3).

For the n = h*w discrete tokens z_dis of an image (docs/design.md "L2GMapper"):

1. psi = Nyström embedding of each token in R^k (eq. 1);
2. for each of q learnable references z_ref^r (t x k): T^r = Sinkhorn(M^r, eps, iters) with
   M^r_ij = -<psi_i, z_ref^r_j> (eq. 2), uniform marginals 1/n and 1/t, log domain;
3. T^r <- T^r * S, S the positional filter (eq. 3);
4. phi^r = pool_scale * (T^r)^T psi (t x k); heads concatenated, times head_scale.

Then (our choice, not the paper's) the t pooled buckets go back to the token grid through the
same plan, ``transport_back``, and a 1x1 convolution projects q*k -> out_dim channels.

The choices the paper leaves open are switches here (defaults = the paper-literal reading, what
every checkpoint before them was trained with; docs/design.md "Plan design choices"): the cost
(raw dot
product, or a scale-free cosine over a temperature), where S enters (before Sinkhorn too, or
only after), whether rows are renormalised after S, and the column marginal (uniform 1/t, or
learned per reference).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..layers.nystrom import NystromEmbedding
from ..layers.positional import positional_filter_1d, positional_filter_2d
from ..layers.sinkhorn import sinkhorn_log

__all__ = ["L2GMapper", "transport_back"]

POS_MODES = ("1d", "2d", "none")
COSTS = ("dot", "cosine")
COLUMN_MARGINALS = ("uniform", "learned")
PLAN_OVERRIDES = (None, "uniform", "uniform_content")


def transport_back(plans: Tensor, phi: Tensor) -> Tensor:
    """Dense token features from pooled buckets: token i gets n * sum_j T_ij phi_j, per reference.

    plans (B, q, n, t), phi (B, q, t, k) -> (B, n, q*k), references concatenated along the
    channels (reference-major). Row sums of T are ~1/n, so n * T is close to a row-stochastic
    matrix: each token receives a weighted mean of its buckets. The paper does not say how the
    buckets become a dense map again; this function is the one place to change that.
    """
    b, q, n, _ = plans.shape
    dense = n * (plans.to(phi.dtype) @ phi)  # (B, q, n, k)
    return dense.permute(0, 2, 1, 3).reshape(b, n, q * phi.shape[-1])


class L2GMapper(nn.Module):
    """(B, dim, h, w) discrete codes -> ((B, out_dim, h, w) dense features, (B, q, n, t) plans).

    Args:
        dim: channels of the input z_dis (the code width).
        num_refs: q, learnable references (paper: 2 or 4; default 4).
        ref_size: t, elements ("buckets") per reference (default 16 = 4 x 4, square so that
            ``pos_mode="2d"`` works too).
        num_anchors: k, Nyström anchors, the width of psi (default 256: a quarter of the paper's
            1024-wide codes, so that q*k = 1024 channels come back at the paper's q = 4).
        kernel_sigma: kernel sigma, alpha = 1/sigma^2 (OTKE range 0.3-0.5; default 0.5).
        sinkhorn_eps: entropic epsilon (OTKE range 0.1-1.0; default 0.5, which keeps the row
            marginals within ~1e-4 after 10 iterations for unit-scale costs).
        sinkhorn_iters: Sinkhorn iterations (paper: 10).
        pos_sigma: sigma_pos of the positional filter (default 0.5: a bucket still sees tokens
            half the image away with weight exp(-1)).
        pos_mode: ``"1d"`` (row-major token index i/n, as the paper), ``"2d"`` (row x column
            Gaussians; t must be a square) or ``"none"``.
        pos_before_sinkhorn: also multiply the similarities by S before Sinkhorn (what OTKE
            does; the paper only writes the weighting after). Default True.
        pool_scale: ``"paper"`` = (sqrt(t), 1/sqrt(q)) for (bucket scale, head scale) as paper
            eq. 3; ``"none"`` = (1, 1) as OTKE; or an explicit (bucket_scale, head_scale) pair.
        out_dim: channels of the dense output (default ``dim``, for the residual add).
        cost: ``"dot"`` (M = -<psi_i, ref_j>, the paper) or ``"cosine"`` (M = -cos(psi_i,
            ref_j) / cost_temperature: scale-free, so eps and the temperature alone set the
            sharpness rather than the learned norms of psi and the references).
        cost_temperature: tau of the cosine cost (ignored for ``"dot"``).
        renormalize_rows: after the positional weighting, rescale each row of the plan back to
            1/n, so n*T is row-stochastic again (default False, as the paper).
        column_marginal: ``"uniform"`` (1/t: every bucket holds the same mass, the paper) or
            ``"learned"`` (softmax of a learnable vector per reference: buckets for small
            structures may hold little mass).

    By default the plan is not renormalised after the positional weighting (paper eq. 3 and
    OTKE do not): its sums are then at most 1/n per row and 1/t per column, shrunk where S is
    small (``renormalize_rows`` restores the rows). The returned ``plans`` are exactly the
    weighted plans used for pooling and transport back.
    """

    def __init__(
        self,
        dim: int,
        num_refs: int = 4,
        ref_size: int = 16,
        num_anchors: int = 256,
        kernel_sigma: float = 0.5,
        sinkhorn_eps: float = 0.5,
        sinkhorn_iters: int = 10,
        pos_sigma: float = 0.5,
        pos_mode: str = "1d",
        pool_scale: str | tuple[float, float] = "paper",
        out_dim: int | None = None,
        *,
        pos_before_sinkhorn: bool = True,
        cost: str = "dot",
        cost_temperature: float = 0.05,
        renormalize_rows: bool = False,
        column_marginal: str = "uniform",
    ):
        super().__init__()
        if min(dim, num_refs, ref_size, num_anchors, sinkhorn_iters) < 1:
            raise ValueError("dim, num_refs, ref_size, num_anchors and sinkhorn_iters must be "
                             f">= 1, got {dim}, {num_refs}, {ref_size}, {num_anchors}, "
                             f"{sinkhorn_iters}")
        if sinkhorn_eps <= 0 or pos_sigma <= 0:
            raise ValueError(f"sinkhorn_eps and pos_sigma must be > 0, got {sinkhorn_eps}, "
                             f"{pos_sigma}")
        if pos_mode not in POS_MODES:
            raise ValueError(f"pos_mode must be one of {POS_MODES}, got {pos_mode!r}")
        if cost not in COSTS:
            raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
        if cost_temperature <= 0:
            raise ValueError(f"cost_temperature must be > 0, got {cost_temperature}")
        if column_marginal not in COLUMN_MARGINALS:
            raise ValueError(f"column_marginal must be one of {COLUMN_MARGINALS}, "
                             f"got {column_marginal!r}")
        if pos_mode == "2d" and math.isqrt(ref_size) ** 2 != ref_size:
            raise ValueError(f"pos_mode='2d' needs a square ref_size (t = s*s), got {ref_size}")
        self.dim = dim
        self.num_refs = num_refs
        self.ref_size = ref_size
        self.num_anchors = num_anchors
        self.sinkhorn_eps = sinkhorn_eps
        self.sinkhorn_iters = sinkhorn_iters
        self.pos_sigma = pos_sigma
        self.pos_mode = pos_mode
        self.pos_before_sinkhorn = pos_before_sinkhorn
        self.cost = cost
        self.cost_temperature = cost_temperature
        self.renormalize_rows = renormalize_rows
        self.column_marginal = column_marginal
        # Diagnostics only (benchmarks/plan_diagnostics.py), never saved: "uniform" replaces the
        # final plan by 1/(n t); "uniform_content" replaces the Sinkhorn plan before S.
        self.plan_override: str | None = None
        self.out_dim = out_dim or dim
        self.bucket_scale, self.head_scale = self._scales(pool_scale, ref_size, num_refs)

        self.embed = NystromEmbedding(dim, num_anchors, kernel_sigma)
        self.references = nn.Parameter(torch.empty(num_refs, ref_size, num_anchors))
        self.column_logits = (nn.Parameter(torch.zeros(num_refs, ref_size))
                              if column_marginal == "learned" else None)
        self.proj = nn.Conv2d(num_refs * num_anchors, self.out_dim, kernel_size=1)
        self.reset_parameters()

    @staticmethod
    def _scales(pool_scale: str | tuple[float, float], t: int, q: int) -> tuple[float, float]:
        if pool_scale == "paper":
            return math.sqrt(t), 1.0 / math.sqrt(q)
        if pool_scale == "none":
            return 1.0, 1.0
        if isinstance(pool_scale, (tuple, list)) and len(pool_scale) == 2:
            return float(pool_scale[0]), float(pool_scale[1])
        raise ValueError(f"pool_scale must be 'paper', 'none' or (bucket_scale, head_scale), "
                         f"got {pool_scale!r}")

    def reset_parameters(self) -> None:
        """References uniform(+-1/sqrt(t)) as OTKE; anchors on the sphere; default conv init."""
        bound = 1.0 / math.sqrt(self.ref_size)
        nn.init.uniform_(self.references, -bound, bound)
        self.embed.reset_parameters()
        self.proj.reset_parameters()

    def positional_filter(self, h: int, w: int, device: torch.device) -> Tensor | None:
        """S (n, t) for an h x w token grid, or None when ``pos_mode="none"``."""
        if self.pos_mode == "1d":
            return positional_filter_1d(h * w, self.ref_size, self.pos_sigma, device=device)
        if self.pos_mode == "2d":
            return positional_filter_2d(h, w, self.ref_size, self.pos_sigma, device=device)
        return None

    def similarities(self, psi: Tensor) -> Tensor:
        """(B, n, k) embeddings -> (B, q, n, t) similarities, the negated transport cost."""
        refs = self.references.to(psi.dtype)
        if self.cost == "cosine":
            psi = nn.functional.normalize(psi, dim=-1)
            refs = nn.functional.normalize(refs, dim=-1)
        sim = psi.unsqueeze(1) @ refs.transpose(-1, -2).unsqueeze(0)
        return sim / self.cost_temperature if self.cost == "cosine" else sim

    def column_mass(self) -> Tensor | None:
        """(q, t) column marginals (rows sum to 1), or None for the uniform 1/t."""
        if self.column_logits is None:
            return None
        return torch.softmax(self.column_logits.float(), dim=-1)

    def raw_plans(self, z_dis: Tensor) -> Tensor:
        """The Sinkhorn plans (B, q, n, t) before the positional weighting (diagnostics)."""
        _, _, h, w = z_dis.shape
        psi = self.embed(z_dis.flatten(2).transpose(1, 2))
        return self._sinkhorn(psi, self.positional_filter(h, w, z_dis.device))

    def _sinkhorn(self, psi: Tensor, pos: Tensor | None) -> Tensor:
        sim = self.similarities(psi)  # (B, q, n, t)
        if pos is not None and self.pos_before_sinkhorn:
            sim = sim * pos
        b = self.column_mass()
        return sinkhorn_log(-sim, self.sinkhorn_eps, self.sinkhorn_iters, b=b)  # eq. 2

    def plans_and_buckets(self, z_dis: Tensor) -> tuple[Tensor, Tensor]:
        """Eq. 1-3: weighted plans (B, q, n, t) and scaled pooled buckets phi (B, q, t, k).

        ``phi`` already carries ``bucket_scale`` and ``head_scale``.
        """
        if z_dis.dim() != 4 or z_dis.shape[1] != self.dim:
            raise ValueError(f"L2GMapper expects (B, {self.dim}, h, w), got {tuple(z_dis.shape)}")
        _, _, h, w = z_dis.shape
        psi = self.embed(z_dis.flatten(2).transpose(1, 2))  # (B, n, k), eq. 1
        n = psi.shape[1]
        pos = self.positional_filter(h, w, z_dis.device)
        plans = self._sinkhorn(psi, pos)
        if self.plan_override == "uniform_content":
            plans = torch.full_like(plans, 1.0 / (n * self.ref_size))
        if pos is not None:
            plans = plans * pos  # eq. 3
        if self.renormalize_rows:
            plans = plans / (n * plans.sum(-1, keepdim=True).clamp_min(1e-30))
        if self.plan_override == "uniform":
            plans = torch.full_like(plans, 1.0 / (n * self.ref_size))
        phi = plans.transpose(-1, -2).to(psi.dtype) @ psi.unsqueeze(1)  # (B, q, t, k)
        return plans, phi * (self.bucket_scale * self.head_scale)

    def features(self, z_dis: Tensor) -> tuple[Tensor, Tensor]:
        """Transported-back features before the projection: ((B, q*k, h, w), plans)."""
        b, _, h, w = z_dis.shape
        plans, phi = self.plans_and_buckets(z_dis)
        dense = transport_back(plans, phi)  # (B, n, q*k)
        return dense.transpose(1, 2).reshape(b, -1, h, w), plans

    def forward(self, z_dis: Tensor) -> tuple[Tensor, Tensor]:
        feats, plans = self.features(z_dis)
        return self.proj(feats.to(z_dis.dtype)), plans

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, q={self.num_refs}, t={self.ref_size}, k={self.num_anchors}, "
                f"eps={self.sinkhorn_eps}, iters={self.sinkhorn_iters}, "
                f"pos_mode={self.pos_mode!r}, pos_sigma={self.pos_sigma}, "
                f"pos_before_sinkhorn={self.pos_before_sinkhorn}, cost={self.cost!r}, "
                f"cost_temperature={self.cost_temperature}, "
                f"renormalize_rows={self.renormalize_rows}, "
                f"column_marginal={self.column_marginal!r}, "
                f"bucket_scale={self.bucket_scale:.4g}, head_scale={self.head_scale:.4g}, "
                f"out_dim={self.out_dim}")
