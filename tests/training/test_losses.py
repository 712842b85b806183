"""training.fitting.losses and training.fitting.presets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src_model import build_model
from src_model.nets.l2gnet import PLAN_PRESETS
from src_model.testing import tiny_config
from training.fitting.losses import LossConfig, SegmentationLoss, spectral_correlation_loss
from training.fitting.presets import MODEL_NAMES, TrainingPreset, resolve_preset


def _target(b: int = 2, h: int = 32, w: int = 32, c: int = 4) -> torch.Tensor:
    t = torch.zeros(b, h, w, dtype=torch.long)
    t[:, 4:14, 5:15] = 1
    t[0, 18:28, 3:12] = 2
    t[1, 16:30, 18:30] = c - 1
    return t


def _perfect_logits(target: torch.Tensor, c: int, scale: float = 30.0) -> torch.Tensor:
    return F.one_hot(target, c).permute(0, 3, 1, 2).float() * scale


def _onehot(target: torch.Tensor, c: int) -> torch.Tensor:
    return F.one_hot(target, c).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("c", [2, 4])
def test_perfect_and_wrong_logits(c: int) -> None:
    target = _target(c=c).clamp_max(c - 1)
    loss = SegmentationLoss(LossConfig(spectral_weight=0.1), c)
    total, parts = loss(_perfect_logits(target, c), target, torch.tensor(0.0))
    assert parts["dice"] < 1e-4
    assert parts["ce"] < 1e-4
    assert parts["spectral"] < 1e-4
    assert total < 1e-3
    wrong = _perfect_logits((target + 1) % c, c)
    _, bad = loss(wrong, target, torch.tensor(0.0))
    assert bad["dice"] > 0.9
    assert bad["ce"] > 10.0
    assert bad["spectral"] > 1e-3


def test_gradient_flows_to_logits() -> None:
    target = _target()
    logits = torch.randn(2, 4, 32, 32, requires_grad=True)
    quant = torch.tensor(0.5, requires_grad=True)
    total, parts = SegmentationLoss(LossConfig(spectral_weight=1.0), 4)(logits, target, quant)
    total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0
    assert quant.grad == pytest.approx(1.0)
    assert set(parts) == {"ce", "dice", "quant", "spectral", "bucket", "vote", "total"}
    assert all(not v.requires_grad and v.ndim == 0 for v in parts.values())


def test_spectral_loss_only_gradient_is_finite() -> None:
    target = _target()
    logits = torch.randn(2, 4, 32, 32, requires_grad=True)
    cfg = LossConfig(ce_weight=0, dice_weight=0, quant_weight=0, spectral_weight=1.0)
    total, _ = SegmentationLoss(cfg, 4)(logits, target, None)
    total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_spectral_zero_for_identical_positive_otherwise() -> None:
    g = _onehot(_target(), 4)
    assert spectral_correlation_loss(g, g) == pytest.approx(0.0, abs=1e-5)
    other = _onehot(_target().transpose(1, 2).contiguous(), 4)
    eroded = g.clone()
    eroded[:, :, ::3] = 0
    assert spectral_correlation_loss(eroded, g) > 1e-3
    assert spectral_correlation_loss(other, g) >= 0.0
    blurred = F.avg_pool2d(g, 5, stride=1, padding=2)
    assert spectral_correlation_loss(blurred, g) > 1e-3


def test_spectral_invariances() -> None:
    g = _onehot(_target(), 4)
    probs = torch.rand(2, 4, 32, 32).softmax(1)
    base = spectral_correlation_loss(probs, g)
    shifted = torch.roll(probs, shifts=(5, -7), dims=(2, 3))
    assert spectral_correlation_loss(shifted, g) == pytest.approx(base.item(), abs=1e-5)
    assert spectral_correlation_loss(torch.roll(g, (3, 3), (2, 3)), g) == pytest.approx(
        0.0, abs=1e-5
    )
    assert spectral_correlation_loss(probs * 3.0, g) == pytest.approx(base.item(), abs=1e-5)


def test_spectral_skips_absent_classes() -> None:
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[0, 4:9, 4:9] = 1
    g = _onehot(target, 3)  # class 2 absent
    probs = g.clone()
    probs[:, 2] = torch.rand(16, 16)  # anything there is ignored by this term
    assert spectral_correlation_loss(probs, g) == pytest.approx(0.0, abs=1e-5)
    empty = _onehot(torch.zeros(1, 16, 16, dtype=torch.long), 3)
    assert spectral_correlation_loss(torch.rand(1, 3, 16, 16), empty) == 0.0


def test_binary_ce_equals_two_class_cross_entropy() -> None:
    target = _target(c=2).clamp_max(1)
    logits = torch.randn(2, 2, 32, 32)
    _, parts = SegmentationLoss(LossConfig(), 2)(logits, target)
    assert parts["ce"] == pytest.approx(F.cross_entropy(logits, target).item(), abs=1e-5)


def test_weights_respected() -> None:
    target = _target()
    logits = torch.randn(2, 4, 32, 32)
    quant = torch.tensor(0.25)
    full = LossConfig(ce_weight=2.0, dice_weight=0.5, quant_weight=3.0, spectral_weight=0.1)
    total, p = SegmentationLoss(full, 4)(logits, target, quant)
    expected = 2.0 * p["ce"] + 0.5 * p["dice"] + 3.0 * p["quant"] + 0.1 * p["spectral"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert p["quant"] == pytest.approx(0.25)
    names = ("ce", "dice", "quant", "spectral")
    for dropped in names:
        weights = {k: 0.0 if k == dropped else 1.0 for k in names}
        cfg = LossConfig(**{f"{k}_weight": v for k, v in weights.items()})
        t, q = SegmentationLoss(cfg, 4)(logits, target, quant)
        kept = sum(weights[k] * q[k].item() for k in names)
        assert t.item() == pytest.approx(kept, rel=1e-5)
        if dropped != "spectral":  # a zero-weight spectral term is not even computed
            assert q[dropped] > 0 and t.item() < kept + q[dropped].item()
    # the spectral term is not computed at all with a zero weight
    _, q = SegmentationLoss(LossConfig(), 4)(logits, target, quant)
    assert q["spectral"] == 0.0


def test_half_precision_logits_and_shape_errors() -> None:
    target = _target(h=24, w=40)
    logits = torch.randn(2, 4, 24, 40).half()
    total, _ = SegmentationLoss(LossConfig(spectral_weight=0.1), 4)(logits, target)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    with pytest.raises(ValueError, match="logits"):
        SegmentationLoss(LossConfig(), 3)(logits, target)
    with pytest.raises(ValueError, match="target shape"):
        SegmentationLoss(LossConfig(), 4)(logits, target[:, :10])
    with pytest.raises(ValueError, match="spectral_weight"):
        LossConfig(spectral_weight=-1.0)


def test_presets() -> None:
    ssnet = resolve_preset("ssnet")
    assert (ssnet.model, ssnet.loss_config()) == ("unet", LossConfig(spectral_weight=0.1))
    transsnet = resolve_preset("transsnet")
    assert (transsnet.model, transsnet.loss_config()) == (
        "transunet", LossConfig(spectral_weight=0.1))
    for name in set(MODEL_NAMES) - {"l2gnet"}:
        assert resolve_preset(name) == TrainingPreset(name)
        assert resolve_preset(name).loss_config() == LossConfig()
    cfg = resolve_preset("ssnet").loss_config()
    cfg.spectral_weight = 5.0  # a copy: the preset is not mutated
    assert resolve_preset("ssnet").loss_config().spectral_weight == 0.1


def test_l2gnet_trains_with_plans_tied_to_labels_and_the_paper_reading_stays_buildable():
    explain, paper = resolve_preset("l2gnet"), resolve_preset("l2gnet-paper")
    assert resolve_preset("l2gnet-explain") == explain
    assert explain.model == paper.model == "l2gnet"
    assert explain.model_config == {**PLAN_PRESETS["sharp"], "plan_vote": True}
    assert explain.loss_config() == LossConfig(bucket_weight=1.0, vote_weight=1.0)
    assert paper.model_config == {} and paper.loss_config() == LossConfig()
    paper_net = build_model("l2gnet", 4, **tiny_config("l2gnet"))  # dataclass defaults = paper
    for key, value in PLAN_PRESETS["paper"].items():
        assert getattr(paper_net.config, key) == value


def test_resolve_preset_error_lists_names() -> None:
    with pytest.raises(ValueError, match="unknown training preset 'nope'") as err:
        resolve_preset("nope")
    for name in ("ssnet", "transsnet", "l2gnet", "unet"):
        assert name in str(err.value)
