"""The L2G ablation switches (docs/design.md "Plan design choices"): shapes, plan sums,
gradients, defaults."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from src_model import build_model
from src_model.blocks import L2GMapper
from src_model.nets.l2gnet import L2GNetConfig
from src_model.testing import tiny_config

SMALL = dict(num_refs=2, ref_size=4, num_anchors=8)


def _mapper(**kwargs) -> L2GMapper:
    torch.manual_seed(0)
    return L2GMapper(32, **{**SMALL, **kwargs})


def test_defaults_are_the_first_release_behaviour():
    """A saved config without the new fields must rebuild exactly the old model."""
    cfg = L2GNetConfig()
    assert (cfg.cost, cfg.pos_mode, cfg.pos_before_sinkhorn, cfg.renormalize_rows,
            cfg.column_marginal, cfg.plan_return) == ("dot", "1d", True, False, "uniform",
                                                      "residual")
    assert cfg.plan_vote is False
    old = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
           if f.name not in ("cost", "cost_temperature", "pos_before_sinkhorn",
                             "renormalize_rows", "column_marginal", "plan_return",
                             "plan_vote")}
    assert L2GNetConfig(**old) == cfg


def test_cosine_cost_is_scale_free():
    m = _mapper(cost="cosine", cost_temperature=0.1)
    psi = torch.randn(2, 6, 8)
    sim = m.similarities(psi)
    assert sim.shape == (2, 2, 6, 4) and float(sim.detach().abs().max()) <= 10.0 + 1e-5
    torch.testing.assert_close(m.similarities(5.0 * psi), sim)
    dot = _mapper().similarities(psi)
    torch.testing.assert_close(_mapper().similarities(5.0 * psi), 5.0 * dot)


def test_lower_temperature_gives_sharper_plans():
    z = torch.randn(1, 32, 4, 4)

    def entropy(tau: float) -> float:
        p = _mapper(cost="cosine", cost_temperature=tau, sinkhorn_eps=1.0,
                    pos_mode="none").raw_plans(z) * 16
        return float(-(p * p.clamp_min(1e-30).log()).sum(-1).mean().detach())

    assert entropy(0.02) < entropy(0.5) < entropy(10.0)


@pytest.mark.parametrize("mode", ["1d", "2d"])
def test_renormalised_rows_sum_to_one_over_n(mode):
    z = torch.randn(2, 32, 4, 6)
    plans = _mapper(pos_mode=mode, renormalize_rows=True)(z)[1]
    torch.testing.assert_close(plans.sum(-1), torch.full((2, 2, 24), 1 / 24))
    shrunk = _mapper(pos_mode=mode)(z)[1].sum(-1) * 24
    assert float(shrunk.max()) < 0.999  # without renormalising, S shrinks every row


def test_s_before_sinkhorn_changes_the_plan_and_raw_plans_have_exact_columns():
    z = torch.randn(1, 32, 4, 4)
    before = _mapper(pos_mode="2d").raw_plans(z)
    after_only = _mapper(pos_mode="2d", pos_before_sinkhorn=False).raw_plans(z)
    assert not torch.allclose(before, after_only)
    torch.testing.assert_close(after_only.sum(-2), torch.full((1, 2, 4), 1 / 4))


def test_learned_column_marginal_sets_the_bucket_mass_and_gets_gradients():
    m = _mapper(column_marginal="learned", pos_mode="none")
    with torch.no_grad():
        m.column_logits[:] = torch.tensor([[2.0, 0.0, 0.0, -1.0]] * 2)
    z = torch.randn(2, 32, 4, 4)
    dense, plans = m(z)
    torch.testing.assert_close(plans.sum(-2), m.column_mass().expand(2, 2, 4))
    dense.square().mean().backward()
    assert m.column_logits.grad is not None and m.column_logits.grad.abs().sum() > 0
    assert _mapper().column_logits is None


def test_plan_overrides_give_uniform_plans():
    m = _mapper(pos_mode="none")
    z = torch.randn(1, 32, 4, 4)
    m.plan_override = "uniform"
    torch.testing.assert_close(m(z)[1], torch.full((1, 2, 16, 4), 1 / 64))
    m.pos_mode, m.plan_override = "1d", "uniform_content"
    from src_model.layers import positional_filter_1d
    torch.testing.assert_close(m(z)[1][0, 0], positional_filter_1d(16, 4, 0.5) / 64)


@pytest.mark.parametrize("plan_return", ["residual", "replace", "gate"])
def test_plan_return_modes_build_run_and_train_the_mapper(plan_return):
    torch.manual_seed(0)
    model = build_model("l2gnet", 3, **{**tiny_config("l2gnet"), "plan_return": plan_return,
                                        "cost": "cosine", "pos_mode": "2d"})
    out = model(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, 3, 32, 32)
    (out.logits.square().mean() + out.aux["quant_loss"]).backward()
    mapper = model.bottleneck.mapper
    assert mapper.references.grad is not None and mapper.references.grad.abs().sum() > 0
    assert mapper.proj.weight.grad.abs().sum() > 0
    if plan_return == "gate":
        g = out.aux["gate"]
        assert g.shape == (2, model.config.code_dim, 2, 2) and 0 < float(g.min()) <= 1
        assert model.bottleneck.gate.weight.grad.abs().sum() > 0


def test_replace_uses_only_the_mapper():
    """With ``replace``, zeroing the mapper's output leaves nothing of z_con at the bottleneck."""
    torch.manual_seed(0)
    model = build_model("l2gnet", 3, **{**tiny_config("l2gnet"), "plan_return": "replace"})
    model.eval()
    z_con = torch.randn(1, model.config.code_dim, 2, 2)
    handle = model.bottleneck.mapper.register_forward_hook(
        lambda mod, args, out: (torch.zeros_like(out[0]), out[1]))
    try:
        out, _ = model.bottleneck(z_con)
    finally:
        handle.remove()
    assert float(out.abs().max()) == 0.0


@pytest.mark.parametrize("bad", [dict(cost="l2"), dict(plan_return="add"),
                                 dict(column_marginal="free"), dict(cost_temperature=0.0)])
def test_bad_switches_name_the_field(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        build_model("l2gnet", 3, **{**tiny_config("l2gnet"), **bad})


def test_paper_preset_is_the_default_and_presets_build():
    from src_model.nets.l2gnet import PLAN_PRESETS

    cfg = L2GNetConfig()
    assert all(getattr(cfg, k) == v for k, v in PLAN_PRESETS["paper"].items())
    for overrides in PLAN_PRESETS.values():
        model = build_model("l2gnet", 3, **{**tiny_config("l2gnet"), **overrides})
        assert model(torch.randn(1, 3, 32, 32)).logits.shape == (1, 3, 32, 32)


def _vote_model():
    torch.manual_seed(0)
    model = build_model("l2gnet", 3, **{**tiny_config("l2gnet"), "plan_vote": True,
                                        "cost": "cosine", "pos_mode": "none"})
    with torch.no_grad():
        model.bottleneck.bucket_votes.normal_(0, 3.0)
    return model.eval()


def test_plan_vote_reads_each_tokens_bucket_vote():
    """A row on one bucket gets that bucket's vote; a uniform row the reference's mean vote."""
    bottleneck = _vote_model().bottleneck
    votes = bottleneck.bucket_votes.detach()  # (q=2, t=4, C=3)
    n, t = 4, 4
    plans = torch.zeros(1, 2, n, t)
    plans[0, :, torch.arange(n), torch.tensor([0, 1, 2, 3])] = 1 / n
    got = bottleneck.vote_logits(plans, 2, 2)[0].reshape(3, n)
    torch.testing.assert_close(got.T, votes[0] + votes[1])
    uniform = bottleneck.vote_logits(torch.full((1, 2, n, t), 1 / (n * t)), 2, 2)[0]
    torch.testing.assert_close(uniform.reshape(3, n).T,
                               (votes[0].mean(0) + votes[1].mean(0)).expand(n, 3))


def test_plan_vote_makes_the_output_depend_on_the_plans_and_trains_the_votes():
    model = _vote_model()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        logits = model(x).logits
        model.bottleneck.mapper.plan_override = "uniform"
        uniform = model(x).logits
        model.bottleneck.mapper.plan_override = None
        model.bottleneck.bucket_votes.zero_()
        no_vote = model(x).logits
    assert float((logits - uniform).abs().max()) > 0.1  # the plans now move the output
    assert float((logits - no_vote).abs().max()) > 0.1  # and the votes are added to it
    model.train()
    out = model(x)
    assert out.aux["vote_logits"].shape == (1, 3, 2, 2)
    out.logits.square().mean().backward()
    assert model.bottleneck.bucket_votes.grad.abs().sum() > 0
    assert model.bottleneck.mapper.references.grad.abs().sum() > 0


def test_without_plan_vote_there_is_no_vote():
    model = build_model("l2gnet", 3, **tiny_config("l2gnet"))
    assert model.bottleneck.bucket_votes is None
    assert "vote_logits" not in model(torch.randn(1, 3, 32, 32)).aux
