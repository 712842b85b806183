"""training.fitting.losses.bucket_class_loss: the term that ties L2GNet's plans to the labels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from src_model import build_model
from src_model.testing import tiny_config
from training.fitting.losses import (
    LossConfig,
    SegmentationLoss,
    bucket_class_loss,
    bucket_vote_loss,
    token_class_mixture,
)


def _labels() -> torch.Tensor:
    """Two 16 x 16 slices, 4 x 4 tokens of 4 x 4 pixels, each token one class."""
    t = torch.zeros(2, 16, 16, dtype=torch.long)
    t[0, :8, :8] = 1
    t[0, 8:, 8:] = 2
    t[1, :4, 4:12] = 2
    t[1, 12:, :8] = 1
    return t


def _token_classes(labels: torch.Tensor) -> torch.Tensor:
    return token_class_mixture(labels, 3, 16).argmax(-1)  # (B, n)


def test_token_mixture_follows_the_patches() -> None:
    y = token_class_mixture(_labels(), 3, 16)
    assert y.shape == (2, 16, 3)
    assert torch.allclose(y.sum(-1), torch.ones(2, 16))
    assert y[0, 0].tolist() == [0.0, 1.0, 0.0] and y[0, 15].tolist() == [0.0, 0.0, 1.0]
    mixed = torch.zeros(1, 16, 16, dtype=torch.long)
    mixed[0, :2, :4] = 1  # half of the first token
    assert token_class_mixture(mixed, 3, 16)[0, 0].tolist() == [0.5, 0.5, 0.0]
    with pytest.raises(ValueError, match="cannot place 15 tokens"):
        token_class_mixture(_labels(), 3, 15)


def test_plans_that_route_by_class_score_zero_and_uniform_plans_the_class_entropy() -> None:
    labels = _labels()
    cls = _token_classes(labels)  # (B, n)
    t = 4
    by_class = F.one_hot(cls, t).float().unsqueeze(1) / (16 * t)  # (B, q=1, n, t)
    assert bucket_class_loss(by_class, labels, 3).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((2, 1, 16, t), 1.0 / (16 * t))
    prior = torch.bincount(cls.flatten(), minlength=3).float() / cls.numel()
    entropy = -(prior * prior.log()).sum().item()
    assert bucket_class_loss(uniform, labels, 3).item() == pytest.approx(entropy, rel=1e-5)
    by_position = F.one_hot(torch.arange(16) % t, t).float().expand(2, 1, 16, t) / (16 * t)
    assert bucket_class_loss(by_position, labels, 3).item() > 0.5 * entropy  # position: no class


def test_descending_the_loss_makes_rows_sharp_and_buckets_class_pure() -> None:
    labels = _labels()
    cls = _token_classes(labels)
    torch.manual_seed(0)
    logits = (0.01 * torch.randn(2, 1, 16, 4)).requires_grad_()
    opt = torch.optim.Adam([logits], lr=0.1)
    start = None
    for _ in range(200):
        plans = logits.softmax(-1) / 16
        loss = bucket_class_loss(plans, labels, 3)
        start = loss.item() if start is None else start
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 < start
    buckets = logits.argmax(-1).squeeze(1)  # (B, n)
    for b in buckets.unique():  # every used bucket holds one class
        assert cls[buckets == b].unique().numel() == 1
    rows = plans.squeeze(1) * 16
    entropy = -(rows * rows.clamp_min(1e-12).log()).sum(-1).mean().item() / math.log(4)
    assert entropy < 0.3


def test_the_term_reaches_the_model_through_the_training_loss() -> None:
    torch.manual_seed(0)
    model = build_model("l2gnet", 3, **tiny_config("l2gnet"))
    x = torch.randn(2, 3, 32, 32)
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, 8:24, 8:24] = 1
    out = model(x)
    with_term = SegmentationLoss(LossConfig(bucket_weight=1.0), 3)
    total, parts = with_term(out.logits, target, out.aux["quant_loss"], out.aux["plans"])
    assert parts["bucket"].item() > 0
    total.backward()
    refs = [p for name, p in model.named_parameters() if "references" in name]
    assert refs and all(p.grad is not None and p.grad.abs().sum() > 0 for p in refs)
    _, parts = SegmentationLoss(LossConfig(), 3)(out.logits, target, out.aux["quant_loss"],
                                                 out.aux["plans"])
    assert parts["bucket"].item() == 0.0  # weight 0: the paper's loss
    with pytest.raises(ValueError, match="bucket_weight"):
        LossConfig(bucket_weight=-1.0)


def test_a_finetune_keeps_the_bucket_term_its_checkpoint_was_trained_with() -> None:
    from training.finetuning.finetune import finetune_loss

    trained = {"training": {"config": {"loss": {"bucket_weight": 1.0, "ce_weight": 1.0}}}}
    assert finetune_loss(trained) == LossConfig(bucket_weight=1.0)
    voted = {"training": {"config": {"loss": {"bucket_weight": 1.0, "vote_weight": 2.0}}}}
    assert finetune_loss(voted) == LossConfig(bucket_weight=1.0, vote_weight=2.0)
    assert finetune_loss({}) == LossConfig()  # paper-literal or older checkpoints
    assert finetune_loss({"training": {"config": {"loss": {}}}}) == LossConfig()


def test_vote_loss_is_the_cross_entropy_of_the_votes_against_the_token_classes() -> None:
    labels = _labels()
    classes = _token_classes(labels).reshape(2, 4, 4)
    right = 20.0 * F.one_hot(classes, 3).permute(0, 3, 1, 2).float()  # confident, correct
    assert bucket_vote_loss(right, labels).item() < 1e-6
    flat = torch.zeros(2, 3, 4, 4)
    assert bucket_vote_loss(flat, labels).item() == pytest.approx(math.log(3), abs=1e-6)
    wrong = right.roll(1, dims=1)
    assert bucket_vote_loss(wrong, labels).item() > 10.0


def test_class_weights_can_weight_the_votes_as_the_cross_entropy() -> None:
    """A small class fills a few percent of its tokens: unweighted, the votes learn to say
    'not that class' everywhere; weighted as the CE term, its vote is pushed up there."""
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, :8] = 1
    labels[0, 9:10, 2:4] = 2  # 2 voxels of class 2 in one token
    votes = torch.zeros(1, 3, 4, 4, requires_grad=True)
    ones = torch.ones(3)
    assert bucket_vote_loss(votes, labels, ones).item() == pytest.approx(
        bucket_vote_loss(votes, labels).item(), abs=1e-6)

    def push(weight) -> float:  # d loss / d (class 2's vote) in the token that holds it
        grad, = torch.autograd.grad(bucket_vote_loss(votes, labels, weight), votes)
        return float(grad[0, 2, 2, 0])

    assert push(ones) > 0  # 2/16 of the token: its vote is pushed below the flat 1/3
    assert push(torch.tensor([1.0, 1.0, 8.0])) < 0  # weighted: pushed up


def test_vote_term_trains_the_votes_and_the_plans_through_the_training_loss() -> None:
    torch.manual_seed(0)
    model = build_model("l2gnet", 3, **{**tiny_config("l2gnet"), "plan_vote": True,
                                        "cost": "cosine", "pos_mode": "none"})
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, 8:24, 8:24] = 1
    out = model(torch.randn(2, 3, 32, 32))
    loss = SegmentationLoss(LossConfig(ce_weight=0.0, dice_weight=0.0, quant_weight=0.0,
                                       vote_weight=1.0), 3)
    total, parts = loss(out.logits, target, out.aux["quant_loss"], out.aux["plans"],
                        out.aux["vote_logits"])
    assert parts["vote"].item() == pytest.approx(math.log(3), abs=1e-5)  # zero-start votes
    total.backward()
    assert model.bottleneck.bucket_votes.grad.abs().sum() > 0
    _, parts = SegmentationLoss(LossConfig(), 3)(out.logits, target, None, None,
                                                 out.aux["vote_logits"])
    assert parts["vote"].item() == 0.0  # weight 0: no term
