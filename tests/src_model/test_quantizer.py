"""VectorQuantizer: nearest codes, straight-through gradient, loss by hand, usage, restarts."""

from __future__ import annotations

import math

import pytest
import torch

from src_model.layers import QuantizerOutput, VectorQuantizer


def _set_codebook(vq: VectorQuantizer, codes: list[list[float]]) -> None:
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor(codes))


def test_indices_are_the_brute_force_nearest_codes():
    vq = VectorQuantizer(codebook_size=32, dim=8)
    with torch.no_grad():
        vq.codebook.normal_()
    z = torch.randn(2, 8, 5, 7)  # (B, dim, h, w), h != w
    out = vq(z)
    assert isinstance(out, QuantizerOutput)
    assert out.indices.shape == (2, 5, 7) and out.indices.dtype == torch.int64
    vectors = z.permute(0, 2, 3, 1).reshape(-1, 8).double()
    brute = torch.stack([((vq.codebook.double() - v) ** 2).sum(1).argmin() for v in vectors])
    assert torch.equal(out.indices.flatten(), brute)
    # and the quantised map holds exactly those codes, channel first
    torch.testing.assert_close(out.quantized, vq.codebook[out.indices].permute(0, 3, 1, 2))


def test_straight_through_gradient_is_identity():
    vq = VectorQuantizer(codebook_size=16, dim=4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    g = torch.randn_like(z)
    (grad,) = torch.autograd.grad(out.quantized, z, g)
    assert torch.equal(grad, g)


def test_loss_value_and_gradients_by_hand():
    vq = VectorQuantizer(codebook_size=2, dim=2, beta=0.25)
    _set_codebook(vq, [[0.0, 0.0], [1.0, 1.0]])
    # two vectors (channel first, h=1, w=2): (0.2, 0.1) -> code 0, (0.9, 1.4) -> code 1
    z = torch.tensor([[[[0.2, 0.9]], [[0.1, 1.4]]]], requires_grad=True)
    out = vq(z)
    assert out.indices.tolist() == [[[0, 1]]]
    # squared errors 0.05 and 0.17 over 4 elements; both terms equal in value
    assert out.loss.item() == pytest.approx((0.05 + 0.17) / 4 * 1.25)
    out.loss.backward()
    # codebook term: d/de mean((e - sg z)^2) = 2 (e - z) / 4; commitment: beta 2 (z - e) / 4
    torch.testing.assert_close(vq.codebook.grad, torch.tensor([[-0.1, -0.05], [0.05, -0.2]]))
    expected_z = 0.25 * 0.5 * torch.tensor([[[[0.2, -0.1]], [[0.1, 0.4]]]])
    torch.testing.assert_close(z.grad, expected_z)


def test_perplexity_and_dead_codes():
    vq = VectorQuantizer(codebook_size=8, dim=3)
    with torch.no_grad():
        vq.codebook.normal_()
    every_code = vq.codebook.detach().T.reshape(1, 3, 2, 4)  # each code once
    out = vq(every_code)
    assert out.perplexity.item() == pytest.approx(8.0)
    assert out.dead_codes.item() == 0 and out.dead_codes.dtype == torch.int64
    two = vq.codebook.detach()[[1, 5, 1, 5]].T.reshape(1, 3, 2, 2)  # 2 codes, equal use
    out = vq(two)
    assert out.perplexity.item() == pytest.approx(2.0) and out.dead_codes.item() == 6
    skewed = vq.codebook.detach()[[1, 1, 1, 5]].T.reshape(1, 3, 2, 2)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert vq(skewed).perplexity.item() == pytest.approx(math.exp(entropy))


def test_channels_last_layout_gives_the_same_codes():
    first = VectorQuantizer(codebook_size=16, dim=6)
    last = VectorQuantizer(codebook_size=16, dim=6, channel_first=False)
    last.load_state_dict(first.state_dict())
    z = torch.randn(2, 6, 4, 3)
    a, b = first(z), last(z.permute(0, 2, 3, 1))
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(a.quantized.permute(0, 2, 3, 1), b.quantized)
    with pytest.raises(ValueError, match="dim=6"):
        first(z.permute(0, 2, 3, 1))


def test_restart_changes_only_dead_codes():
    vq = VectorQuantizer(codebook_size=6, dim=2)
    _set_codebook(vq, [[0, 0], [1, 0], [0, 1], [50, 50], [60, 60], [-70, 70]])
    z = torch.tensor([[0.1, 0.0], [0.9, 0.1], [0.0, 1.2], [0.2, 0.1], [1.0, 0.0]]).T
    z = z.reshape(1, 2, 1, 5)
    assert vq(z).dead_codes.item() == 3
    before = vq.codebook.detach().clone()
    restarted = vq.restart_dead_codes(z, generator=torch.Generator().manual_seed(0))
    assert restarted.tolist() == [3, 4, 5]
    after = vq.codebook.detach()
    assert torch.equal(after[:3], before[:3])  # used codes untouched
    vectors = z.reshape(2, 5).T
    for row in after[3:]:  # each restarted code is one of the batch's vectors
        assert (vectors == row).all(1).any()
    assert len({tuple(r.tolist()) for r in after[3:]}) == 3  # distinct vectors drawn
    assert vq(z).dead_codes.item() < 3


def test_restart_is_a_no_op_when_every_code_is_used():
    vq = VectorQuantizer(codebook_size=6, dim=2)
    with torch.no_grad():
        vq.codebook.normal_()
    before = vq.codebook.detach().clone()
    assert vq.restart_dead_codes(before.T.reshape(1, 2, 2, 3)).numel() == 0
    assert torch.equal(vq.codebook.detach(), before)


def test_restart_with_fewer_vectors_than_dead_codes():
    vq = VectorQuantizer(codebook_size=10, dim=3)
    z = torch.randn(1, 3, 1, 2)
    dead = vq.restart_dead_codes(z)
    assert dead.numel() >= 8 and torch.isfinite(vq.codebook).all()


def test_autocast_still_picks_the_nearest_code():
    vq = VectorQuantizer(codebook_size=64, dim=16)
    with torch.no_grad():
        vq.codebook.normal_()
    z = torch.randn(1, 16, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = vq(z)
    assert torch.equal(amp.indices, vq(z).indices)
