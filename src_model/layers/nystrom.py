"""Nyström embedding of an exponential (Gaussian-on-the-sphere) kernel (L2GNet eq. 1).

psi(z) = kappa(w, w)^(-1/2) kappa(w, z) in R^k, with k learnable anchors w, so that
<psi(x), psi(y)> approximates the kernel k(x, y) and equals it exactly when x and y are anchors.
Kernel and inverse square root follow the public OTKE/CKN code of Mialon et al. (ICLR 2021).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NystromEmbedding", "exp_kernel", "kernel_inv_sqrt"]

_NORM_EPS = 1e-6  # smallest norm treated as non-zero when normalising tokens and anchors


def exp_kernel(w: Tensor, z: Tensor, alpha: float) -> Tensor:
    """k(w, z) = ||z|| exp(alpha (<w, z / ||z||> - 1)) for every anchor; (..., d) -> (..., k).

    ``w`` (k, d) are unit-norm anchors (the caller normalises them); ``alpha = 1 / sigma^2``.
    For unit ``z`` this is the Gaussian kernel exp(-alpha ||w - z||^2 / 2) on the sphere; the
    ``||z||`` factor makes it homogeneous, as in OTKE. Between two tokens the kernel that psi
    approximates is K(x, y) = ||x|| ||y|| exp(alpha (<x/||x||, y/||y||> - 1)), which is this
    formula when x is a (unit) anchor. A zero token maps to zero.
    """
    norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    cos = (z / norm.clamp_min(_NORM_EPS)) @ w.transpose(-1, -2)
    return norm * torch.exp(alpha * (cos - 1.0))


class _InvSqrtPSD(torch.autograd.Function):
    """f(A) = V diag(f(lambda)) V^T, f(l) = 1 / (sqrt(max(l, floor)) + reg), A symmetric PSD.

    The backward is the Daleckii-Krein formula, V (D o V^T G V) V^T, with the first divided
    differences D_ij = (f(l_i) - f(l_j)) / (l_i - l_j) written as the product of two stable
    factors: f's own, -1 / ((s_i + reg)(s_j + reg)(s_i + s_j)) on the clamped values
    s = sqrt(max(l, floor)), and the clamp's, which is 1 above the floor and 0 below. It is the
    exact gradient of f(A), yet stays finite for repeated eigenvalues, where eigh's own
    backward divides by l_i - l_j = 0 and returns NaN.
    """

    @staticmethod
    def forward(ctx, a: Tensor, floor: float, reg: float) -> Tensor:  # type: ignore[override]
        evals, evecs = torch.linalg.eigh(a)
        s = evals.clamp_min(floor).sqrt()
        ctx.save_for_backward(evals, evecs)
        ctx.floor, ctx.reg = floor, reg
        return (evecs * (1.0 / (s + reg)).unsqueeze(-2)) @ evecs.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        evals, evecs = ctx.saved_tensors
        c = evals.clamp_min(ctx.floor)
        s = c.sqrt()
        sr = s + ctx.reg
        d_f = -1.0 / (sr.unsqueeze(-1) * sr.unsqueeze(-2) * (s.unsqueeze(-1) + s.unsqueeze(-2)))
        diff = evals.unsqueeze(-1) - evals.unsqueeze(-2)
        apart = diff.abs() > 1e-12 * evals.abs().amax(-1, keepdim=True).unsqueeze(-1)
        above = (evals > ctx.floor).to(evals.dtype).unsqueeze(-1).expand_as(diff)
        d_clamp = torch.where(
            apart, (c.unsqueeze(-1) - c.unsqueeze(-2)) / torch.where(apart, diff, 1.0), above
        )
        g = 0.5 * (grad + grad.transpose(-1, -2))  # a is symmetric: symmetric gradient
        inner = evecs.transpose(-1, -2) @ g @ evecs
        return evecs @ (d_f * d_clamp * inner) @ evecs.transpose(-1, -2), None, None


def kernel_inv_sqrt(gram: Tensor, eig_floor: float = 1e-6, reg: float = 1e-2) -> Tensor:
    """kappa(w, w)^(-1/2) by ``torch.linalg.eigh``: eigenvalues clamped at ``eig_floor``,
    then ``reg`` added to their square roots (OTKE's regulariser), 1/(sqrt(l) + reg).

    ``reg`` bounds the result by 1/reg; ``reg = 0`` is the exact inverse square root of the
    clamped matrix. Differentiable, with a backward that tolerates repeated eigenvalues.
    """
    if eig_floor <= 0 or reg < 0:
        raise ValueError(f"need eig_floor > 0 and reg >= 0, got {eig_floor} and {reg}")
    return _InvSqrtPSD.apply(gram, eig_floor, reg)


class NystromEmbedding(nn.Module):
    """psi(z) = kappa(w, w)^(-1/2) kappa(w, z): tokens (..., dim) -> (..., num_anchors).

    Paper eq. 1; docs/design.md "L2GMapper" step 1. The anchors are free parameters, projected onto
    the unit sphere in every forward (OTKE keeps them unit-norm). The whole embedding runs in
    float32 (float64 if the input or anchors are) with autocast off: ``eigh`` needs it, and the
    kernel's exponent must not be rounded to half precision. The output is in that dtype.

    Args:
        dim: token width d.
        num_anchors: k, the number of anchors and the embedding's width.
        kernel_sigma: sigma of the kernel; alpha = 1 / sigma^2 (OTKE: 0.3-0.5).
        eig_floor: eigenvalues of kappa(w, w) are clamped to at least this.
        reg: added to the square roots of the eigenvalues before inverting (OTKE: 1e-2).
    """

    def __init__(
        self,
        dim: int,
        num_anchors: int,
        kernel_sigma: float = 0.5,
        *,
        eig_floor: float = 1e-6,
        reg: float = 1e-2,
    ):
        super().__init__()
        if dim < 1 or num_anchors < 1 or kernel_sigma <= 0:
            raise ValueError(
                f"need dim >= 1, num_anchors >= 1, kernel_sigma > 0; got {dim}, {num_anchors}, "
                f"{kernel_sigma}"
            )
        self.dim = dim
        self.num_anchors = num_anchors
        self.kernel_sigma = kernel_sigma
        self.alpha = 1.0 / kernel_sigma**2
        self.eig_floor = eig_floor
        self.reg = reg
        self.anchors = nn.Parameter(torch.empty(num_anchors, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Anchors uniform on the sphere (a normalised Gaussian draw)."""
        with torch.no_grad():
            self.anchors.copy_(F.normalize(torch.randn_like(self.anchors), dim=-1))

    def unit_anchors(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The anchors w as used: projected to unit norm (k, dim)."""
        return F.normalize(self.anchors.to(dtype), dim=-1, eps=_NORM_EPS)

    def kernel_matrix(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """kappa(w, w) (k, k)."""
        w = self.unit_anchors(dtype)
        return exp_kernel(w, w, self.alpha)

    def forward(self, z: Tensor) -> Tensor:
        if z.shape[-1] != self.dim:
            raise ValueError(f"NystromEmbedding expects (..., {self.dim}) tokens, got "
                             f"{tuple(z.shape)}")
        # float32 at least (float64 stays float64, for gradient checks)
        dtype = torch.promote_types(torch.promote_types(z.dtype, self.anchors.dtype),
                                    torch.float32)
        with torch.autocast(device_type=z.device.type, enabled=False):
            w = self.unit_anchors(dtype)
            lintrans = kernel_inv_sqrt(exp_kernel(w, w, self.alpha), self.eig_floor, self.reg)
            return exp_kernel(w, z.to(dtype), self.alpha) @ lintrans

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_anchors={self.num_anchors}, "
                f"kernel_sigma={self.kernel_sigma}, alpha={self.alpha:.4g}, "
                f"eig_floor={self.eig_floor}, reg={self.reg}")
