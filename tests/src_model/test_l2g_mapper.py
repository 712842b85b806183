"""L2GMapper: eq. 1-3 against a loop-by-loop reference, plans, scaling constants, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from src_model.blocks import L2GMapper, transport_back
from src_model.layers import positional_filter_1d, sinkhorn_log

SMALL = dict(num_refs=2, ref_size=4, num_anchors=8)


def _mapper(**kwargs) -> L2GMapper:
    torch.manual_seed(0)
    return L2GMapper(32, **{**SMALL, **kwargs})


def _reference_dense(m: L2GMapper, z: torch.Tensor) -> torch.Tensor:
    """One image, one reference and one token at a time, straight from docs/design.md."""
    b, _, h, w = z.shape
    n, t, q, k = h * w, m.ref_size, m.num_refs, m.num_anchors
    out = torch.zeros(b, q * k, h, w)
    s = positional_filter_1d(n, t, m.pos_sigma)
    for bi in range(b):
        tokens = torch.stack([z[bi, :, r, c] for r in range(h) for c in range(w)])  # row-major
        psi = m.embed(tokens)  # (n, k)
        for ri in range(q):
            sim = psi @ m.references[ri].T * s  # filter before Sinkhorn
            plan = sinkhorn_log(-sim, m.sinkhorn_eps, m.sinkhorn_iters) * s  # and after
            phi = math.sqrt(t) * plan.T @ psi / math.sqrt(q)  # (t, k)
            for i in range(n):
                got = n * sum(plan[i, j] * phi[j] for j in range(t))
                out[bi, ri * k:(ri + 1) * k, i // w, i % w] = got
    return out


def test_matches_the_loop_reference_on_a_non_square_grid():
    m = _mapper()
    z = torch.randn(2, 32, 4, 3)
    feats, plans = m.features(z)
    with torch.no_grad():
        torch.testing.assert_close(feats, _reference_dense(m, z), rtol=1e-4, atol=1e-6)
        dense, plans2 = m(z)
        torch.testing.assert_close(dense, m.proj(feats))
    torch.testing.assert_close(plans, plans2)  # grad vs no-grad: same up to rounding


def test_shapes_for_h_not_equal_w_and_plans_nonnegative():
    m = _mapper(out_dim=24)
    dense, plans = m(torch.randn(2, 32, 16, 14))
    assert dense.shape == (2, 24, 16, 14)
    assert plans.shape == (2, 2, 16 * 14, 4)
    assert (plans >= 0).all() and torch.isfinite(dense).all()
    assert L2GMapper(32, **SMALL)(torch.randn(1, 32, 2, 5))[0].shape == (1, 32, 2, 5)


def test_returned_plans_are_the_ones_used():
    m = _mapper()
    z = torch.randn(1, 32, 6, 5)
    feats, plans = m.features(z)
    psi = m.embed(z.flatten(2).transpose(1, 2))  # (1, n, k)
    phi = m.bucket_scale * m.head_scale * plans.transpose(-1, -2) @ psi.unsqueeze(1)
    back = transport_back(plans, phi).transpose(1, 2).reshape(1, -1, 6, 5)
    torch.testing.assert_close(feats, back)


def test_without_positional_filter_columns_are_exact_rows_close():
    m = _mapper(pos_mode="none")
    _, plans = m(torch.randn(2, 32, 7, 7))
    n, t = 49, 4
    torch.testing.assert_close(plans.sum(-2), torch.full((2, 2, t), 1 / t), atol=1e-5, rtol=0)
    assert (plans.sum(-1) - 1 / n).abs().sum(-1).max() < 1e-3


def test_positional_weighting_shrinks_the_plan_by_s():
    """Not renormalised: plan = Sinkhorn(S-weighted similarities) * S."""
    m = _mapper(pos_sigma=0.3)
    _, plans = m(torch.randn(1, 32, 5, 4))
    s = positional_filter_1d(20, 4, 0.3)
    assert (plans.sum(-2) <= 1 / 4 + 1e-6).all() and (plans.sum(-2) < 0.2).any()
    unweighted = plans / s
    torch.testing.assert_close(unweighted.sum(-2), torch.full((1, 2, 4), 0.25))


def test_pos_before_sinkhorn_flag_changes_the_plan():
    z = torch.randn(1, 32, 4, 4)
    with torch.no_grad():
        on = _mapper()(z)[1]
        off = _mapper(pos_before_sinkhorn=False)(z)[1]
    assert not torch.allclose(on, off)


@pytest.mark.parametrize("scale", [(2.0, 0.5), (3.0, 1.0), (1.0, 0.25)])
def test_pool_scale_multiplies_the_output_exactly(scale):
    z = torch.randn(1, 32, 4, 5)
    none = _mapper(pool_scale="none")
    scaled = _mapper(pool_scale=scale)
    with torch.no_grad():
        none.proj.bias.zero_()
        scaled.proj.bias.zero_()
        factor = scale[0] * scale[1]
        torch.testing.assert_close(scaled.features(z)[0], factor * none.features(z)[0])
        torch.testing.assert_close(scaled(z)[0], factor * none(z)[0])


def test_paper_scale_is_sqrt_t_over_sqrt_q():
    m = L2GMapper(32, num_refs=4, ref_size=9, num_anchors=8)
    assert (m.bucket_scale, m.head_scale) == (3.0, 0.5)
    z = torch.randn(1, 32, 3, 3)
    torch.manual_seed(1)
    paper = L2GMapper(32, num_refs=4, ref_size=9, num_anchors=8)
    torch.manual_seed(1)
    none = L2GMapper(32, num_refs=4, ref_size=9, num_anchors=8, pool_scale="none")
    with torch.no_grad():
        torch.testing.assert_close(paper.features(z)[0], 1.5 * none.features(z)[0])
    with pytest.raises(ValueError, match="pool_scale"):
        L2GMapper(32, pool_scale="otke")


def test_gradients_reach_references_anchors_and_input():
    m = _mapper()
    z = torch.randn(2, 32, 4, 4, requires_grad=True)
    dense, plans = m(z)
    (dense.pow(2).sum() + plans.pow(2).sum()).backward()
    for name, grad in [("references", m.references.grad), ("anchors", m.embed.anchors.grad),
                       ("input", z.grad), ("proj", m.proj.weight.grad)]:
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name
    m.zero_grad()
    m(z)[1].pow(2).sum().backward()  # the returned plans themselves are differentiable
    assert m.references.grad.abs().sum() > 0


def test_deterministic():
    z = torch.randn(2, 32, 4, 6)
    a, b = _mapper(), _mapper()
    with torch.no_grad():
        out_a = a(z)
        out_b = b(z)
        again = a(z)
    assert torch.equal(out_a[0], out_b[0]) and torch.equal(out_a[1], out_b[1])
    assert torch.equal(out_a[0], again[0])


def test_2d_positional_mode():
    m = _mapper(pos_mode="2d")
    dense, plans = m(torch.randn(1, 32, 16, 14))
    assert dense.shape == (1, 32, 16, 14) and plans.shape == (1, 2, 224, 4)
    assert not torch.allclose(plans, _mapper()(torch.randn(1, 32, 16, 14))[1])
    with pytest.raises(ValueError, match="square ref_size"):
        L2GMapper(32, ref_size=8, pos_mode="2d")


def test_autocast_bf16_forward_is_finite():
    m = _mapper()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dense, plans = m(torch.randn(1, 32, 8, 8))
    assert plans.dtype == torch.float32 and torch.isfinite(dense.float()).all()


def test_input_shape_is_checked():
    with pytest.raises(ValueError, match=r"\(B, 32, h, w\)"):
        _mapper()(torch.randn(1, 16, 4, 4))
