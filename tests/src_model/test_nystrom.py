"""Nyström embedding: kernel by hand, exactness on anchors, convergence in k, stable gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from src_model.layers import NystromEmbedding, exp_kernel, kernel_inv_sqrt


def _plain_inv_sqrt(a: torch.Tensor, floor: float = 1e-6, reg: float = 1e-2) -> torch.Tensor:
    """The same function through eigh's own autograd (NaN gradients on repeated eigenvalues)."""
    evals, evecs = torch.linalg.eigh(a)
    return (evecs * (1.0 / (evals.clamp_min(floor).sqrt() + reg))) @ evecs.T


def test_exp_kernel_by_hand():
    w = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    z = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    expected = torch.tensor([
        [2 * math.exp(4 * (0.0 - 1)), 2 * math.exp(4 * (0.8 - 1))],  # ||z||=2, cos = 0, 0.8
        [3 * math.exp(0.0), 3 * math.exp(4 * (0.6 - 1))],  # ||z||=3, cos = 1, 0.6
    ])
    torch.testing.assert_close(exp_kernel(w, z, alpha=4.0), expected)
    assert exp_kernel(w, torch.zeros(1, 2), alpha=4.0).abs().max() == 0  # zero token -> 0


def test_anchors_embedded_reproduce_the_kernel_matrix_exactly_without_regulariser():
    emb = NystromEmbedding(8, 12, kernel_sigma=0.5, reg=0.0).double()
    w = emb.unit_anchors(torch.float64)
    psi = emb(w)
    torch.testing.assert_close(psi @ psi.T, emb.kernel_matrix(torch.float64),
                               atol=1e-10, rtol=0)


def test_regulariser_shrinks_the_reproduction_by_the_predicted_amount():
    emb = NystromEmbedding(8, 12, kernel_sigma=0.5).double()  # default reg = 1e-2
    kmat = emb.kernel_matrix(torch.float64)
    psi = emb(emb.unit_anchors(torch.float64))
    gap = torch.linalg.matrix_norm(psi @ psi.T - kmat, ord=2)
    # per eigenvalue l: l - l^2 / (sqrt(l) + r)^2 <= 2 r sqrt(l)
    bound = 2 * emb.reg * torch.linalg.eigvalsh(kmat).max().sqrt()
    assert 0.1 * bound < gap <= bound


def test_approximation_improves_with_more_anchors():
    """Nested anchor sets: K(x, x) - ||psi(x)||^2 is a projection residual in the kernel's
    feature space, so it can only shrink as anchors are added; the cross terms follow."""
    d, alpha, ks = 3, 4.0, (2, 4, 8, 16, 32, 64, 128)
    anchors = F.normalize(torch.randn(ks[-1], d, dtype=torch.float64), dim=-1)
    x = 2.0 * F.normalize(torch.randn(200, d, dtype=torch.float64), dim=-1)
    y = 0.5 * F.normalize(torch.randn(200, d, dtype=torch.float64), dim=-1)
    # between two tokens the kernel is ||x|| ||y|| exp(alpha (<x/||x||, y/||y||> - 1))
    true_xx = torch.full((200,), 4.0, dtype=torch.float64)
    true_xy = 1.0 * torch.exp(alpha * ((x * y).sum(-1) - 1))
    diag_err, cross_err = [], []
    for k in ks:
        emb = NystromEmbedding(d, k, kernel_sigma=0.5, reg=0.0, eig_floor=1e-12).double()
        with torch.no_grad():
            emb.anchors.copy_(anchors[:k])
        px, py = emb(x), emb(y)
        diag_err.append((true_xx - (px * px).sum(-1)).mean().item())
        cross_err.append((true_xy - (px * py).sum(-1)).abs().mean().item())
    assert all(e >= -1e-9 for e in diag_err)  # psi never overshoots K(x, x)
    assert all(b < a for a, b in zip(diag_err[:-1], diag_err[1:], strict=True)), diag_err
    assert diag_err[-1] < 1e-3 * diag_err[0], diag_err  # measured: 3.5 -> 1e-3
    assert cross_err[-1] < 1e-2 * cross_err[0], cross_err  # measured: 0.09 -> 1e-5


def test_embedding_is_positively_homogeneous_and_anchor_scale_free():
    emb = NystromEmbedding(16, 8)
    z = torch.randn(5, 16)
    torch.testing.assert_close(emb(3.0 * z), 3.0 * emb(z), rtol=1e-5, atol=1e-6)
    before = emb(z)
    with torch.no_grad():
        emb.anchors.mul_(7.0)  # anchors are normalised in forward
    torch.testing.assert_close(emb(z), before)


def test_inv_sqrt_gradient_matches_eigh_autograd_and_gradcheck():
    w = F.normalize(torch.randn(6, 8, dtype=torch.float64), dim=-1)
    w = torch.cat([w, w[:1]])  # one repeated anchor: one eigenvalue clamped at the floor
    for kmat in (exp_kernel(w[:6], w[:6], 4.0), exp_kernel(w, w, 4.0)):
        g = torch.randn_like(kmat)
        grads = []
        for fn in (_plain_inv_sqrt, kernel_inv_sqrt):
            a = kmat.clone().requires_grad_()
            (fn(a) * g).sum().backward()
            grads.append(a.grad)
        torch.testing.assert_close(grads[1], grads[0], atol=1e-10, rtol=1e-8)
    spd = exp_kernel(w[:5], w[:5], 4.0).requires_grad_()
    sym = lambda a: kernel_inv_sqrt(0.5 * (a + a.T))  # noqa: E731
    assert torch.autograd.gradcheck(sym, (spd,))


def test_inv_sqrt_gradient_finite_for_repeated_eigenvalues():
    """At the identity (all eigenvalues equal) eigh's autograd is NaN; ours is f'(1) sym(G)."""
    g = torch.randn(4, 4, dtype=torch.float64)
    plain = torch.eye(4, dtype=torch.float64, requires_grad=True)
    (_plain_inv_sqrt(plain) * g).sum().backward()
    assert torch.isnan(plain.grad).any()  # the failure this backward exists for
    ours = torch.eye(4, dtype=torch.float64, requires_grad=True)
    (kernel_inv_sqrt(ours, reg=0.01) * g).sum().backward()
    f_prime = -1.0 / (2 * 1.0 * (1.0 + 0.01) ** 2)  # d/dl 1/(sqrt(l) + r) at l = 1
    torch.testing.assert_close(ours.grad, f_prime * 0.5 * (g + g.T))


def test_identical_anchors_train_without_nan():
    emb = NystromEmbedding(8, 6)
    with torch.no_grad():
        emb.anchors[1:4] = emb.anchors[0]  # three copies: a repeated zero eigenvalue
    emb(torch.randn(10, 8)).pow(2).sum().backward()
    assert torch.isfinite(emb.anchors.grad).all() and emb.anchors.grad.abs().sum() > 0


def test_autocast_keeps_float32():
    emb = NystromEmbedding(16, 8)
    z = torch.randn(2, 5, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = emb(z.bfloat16())
    assert out.dtype == torch.float32 and out.shape == (2, 5, 8)
    torch.testing.assert_close(out, emb(z.bfloat16().float()))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="kernel_sigma"):
        NystromEmbedding(4, 4, kernel_sigma=0.0)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        NystromEmbedding(4, 4)(torch.randn(3, 5))
