"""sinkhorn_log: marginals, agreement with plain Sinkhorn, half precision, gradients."""

from __future__ import annotations

import pytest
import torch

from src_model.layers import sinkhorn_log


def _plain_sinkhorn(cost: torch.Tensor, eps: float, iters: int, a, b) -> torch.Tensor:
    """Textbook Sinkhorn with explicit kernel and scalings (float64, well-conditioned only)."""
    k = torch.exp(-cost / eps)
    v = torch.ones(cost.shape[-1], dtype=cost.dtype)
    for _ in range(iters):
        u = a / (k @ v)
        v = b / (k.T @ u)
    return u[:, None] * k * v[None, :]


def _row_l1(plan: torch.Tensor, a: float) -> torch.Tensor:
    """Sum over rows of |row sum - a|: the mass misplaced on the row side (total mass 1)."""
    return (plan.sum(-1) - a).abs().sum(-1)


def test_column_marginals_exact_and_rows_within_what_10_iterations_give():
    n, t = 196, 16
    cost = torch.randn(3, n, t)
    plan = sinkhorn_log(cost, eps=0.5, iters=10)
    assert plan.shape == (3, n, t) and (plan >= 0).all()
    torch.testing.assert_close(plan.sum(-2), torch.full((3, t), 1 / t), atol=1e-5, rtol=0)
    # eps / std(cost) = 0.5: 10 iterations leave ~3e-6 (measured) of misplaced row mass.
    assert _row_l1(plan, 1 / n).max() < 1e-3
    # ... but one iteration is visibly not converged, so the bound above means something.
    assert _row_l1(sinkhorn_log(cost, eps=0.5, iters=1), 1 / n).max() > 1e-2


def test_row_marginal_error_decreases_with_iterations():
    cost = torch.randn(2, 196, 16)  # eps / std(cost) = 0.1: slow, measurable convergence
    errors = [_row_l1(sinkhorn_log(cost, 0.1, iters), 1 / 196).max().item()
              for iters in (1, 2, 5, 10, 20, 50)]
    pairs = zip(errors[:-1], errors[1:], strict=True)
    assert all(later < earlier for earlier, later in pairs), errors
    assert errors[3] > 1e-3  # after 10 iterations the rows are only approximate here
    assert errors[-1] < 1e-3


def test_matches_plain_sinkhorn_with_custom_marginals():
    cost = torch.rand(7, 5, dtype=torch.float64)
    a = torch.rand(7, dtype=torch.float64) + 0.5
    b = torch.rand(5, dtype=torch.float64) + 0.5
    a, b = a / a.sum(), b / b.sum()
    for iters in (1, 3, 10):
        ours = sinkhorn_log(cost, eps=0.3, iters=iters, a=a, b=b)
        torch.testing.assert_close(ours, _plain_sinkhorn(cost, 0.3, iters, a, b),
                                   atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(ours.sum(0), b, atol=1e-12, rtol=0)


def test_batched_over_leading_dims_equals_one_by_one():
    cost = torch.randn(2, 3, 10, 4)
    plan = sinkhorn_log(cost, eps=0.2)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(plan[i, j], sinkhorn_log(cost[i, j], eps=0.2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_large_costs_small_eps_stay_finite(dtype):
    n, t, eps = 196, 16, 0.01
    cost = (torch.randn(2, n, t) * 5e3).clamp(-6e4, 6e4).to(dtype)  # |cost| ~ 1e3 .. 1e4
    assert torch.isinf(torch.exp(-cost.float() / eps)).any()  # the naive kernel overflows
    plan = sinkhorn_log(cost, eps=eps, iters=10)
    assert plan.dtype == torch.float32  # documented: half inputs come back in float32
    assert torch.isfinite(plan).all() and (plan >= 0).all()
    torch.testing.assert_close(plan.sum(-2), torch.full((2, t), 1 / t), atol=1e-5, rtol=0)
    torch.testing.assert_close(plan, sinkhorn_log(cost.float(), eps=eps, iters=10))


def test_half_precision_gradients_are_finite():
    cost = (torch.randn(1, 50, 9) * 1e3).half().requires_grad_()
    plan = sinkhorn_log(cost, eps=0.05)
    (plan * torch.randn_like(plan)).sum().backward()
    assert cost.grad.dtype == torch.float16 and torch.isfinite(cost.grad).all()


def test_gradcheck_float64():
    cost = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: sinkhorn_log(c, eps=0.4, iters=4), (cost,))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="eps"):
        sinkhorn_log(torch.randn(3, 2), eps=0.0)
    with pytest.raises(ValueError, match="iters"):
        sinkhorn_log(torch.randn(3, 2), eps=1.0, iters=0)
    with pytest.raises(ValueError, match="marginal b"):
        sinkhorn_log(torch.randn(3, 2), eps=1.0, b=torch.ones(3) / 3)
