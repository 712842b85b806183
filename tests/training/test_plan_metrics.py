"""Plan anatomy measures on constructed plans: position copies gain 0, label copies score 1."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.evaluation.plan_metrics import (
    anatomy_scores,
    conditional_mutual_information,
    entropy,
    homogeneity,
    mutual_information,
    nmi,
    position_predictor,
    row_entropy_ratio,
    shuffle_within,
    token_labels,
)

RNG = np.random.default_rng(0)
SLICES, H, W, T = 30, 8, 8, 16


def _labels() -> np.ndarray:
    """(slices, h, w) classes 0-3: a disc of class 1-3 at a random place on background."""
    yy, xx = np.mgrid[:H, :W]
    out = np.zeros((SLICES, H, W), np.int64)
    for s in range(SLICES):
        cy, cx = RNG.integers(1, 7, size=2)
        out[s][(yy - cy) ** 2 + (xx - cx) ** 2 <= 4] = 1 + s % 3
    return out


def _plans_from(bucket_of_token: np.ndarray, sharp: float = 8.0) -> np.ndarray:
    """(slices, n, t) plans peaked on the given bucket of each token (soft, like Sinkhorn)."""
    logits = RNG.normal(size=(*bucket_of_token.shape, T))
    np.put_along_axis(logits, bucket_of_token[..., None], sharp, axis=-1)
    p = np.exp(logits)
    return p / p.sum(-1, keepdims=True) / bucket_of_token.shape[-1]


def _argmax_buckets(plans: np.ndarray) -> np.ndarray:
    return plans.argmax(-1)


POSITIONS = np.broadcast_to(np.arange(H * W), (SLICES, H * W))


def test_a_plan_that_copies_position_gains_nothing():
    labels = _labels().reshape(SLICES, -1)
    band = (POSITIONS // W) * 2  # the 1-D filter's horizontal bands
    s = anatomy_scores(labels, _argmax_buckets(_plans_from(band)), POSITIONS)
    assert s.homogeneity > 0  # position alone says something about the class ...
    assert s.homogeneity_gain == pytest.approx(0.0, abs=1e-12)  # ... and the plan adds nothing
    assert s.nmi == pytest.approx(s.nmi_position)
    assert s.conditional_mi == pytest.approx(0.0, abs=1e-12)


def test_a_plan_that_copies_the_labels_scores_one():
    labels = _labels().reshape(SLICES, -1)
    s = anatomy_scores(labels, _argmax_buckets(_plans_from(labels)), POSITIONS)
    assert s.homogeneity == pytest.approx(1.0)
    assert s.nmi == pytest.approx(1.0)
    assert s.homogeneity_gain > 0.3  # position alone is far from the labels here
    # beyond the shuffle baseline: the plan knows the class at a given position
    assert s.conditional_mi == pytest.approx(s.class_entropy_given_position)
    assert s.conditional_mi > 2 * s.conditional_mi_shuffled


def test_foreground_subset_and_empty_input():
    labels = _labels().reshape(SLICES, -1)
    fg = labels > 0
    s = anatomy_scores(labels[fg], labels[fg] + 5, POSITIONS[fg])
    assert s.tokens == int(fg.sum()) and s.homogeneity == pytest.approx(1.0)
    assert math.isnan(anatomy_scores([], [], []).homogeneity)
    with pytest.raises(ValueError, match="one entry per token"):
        anatomy_scores([0, 1], [0], [0, 1])


def test_information_measures_on_hand_examples():
    x = np.array([0, 0, 1, 1])
    assert entropy(x) == pytest.approx(math.log(2))
    assert mutual_information(x, np.array([5, 5, 7, 7])) == pytest.approx(math.log(2))
    assert mutual_information(x, np.array([0, 1, 0, 1])) == pytest.approx(0.0)
    # one cluster split in two pure halves: homogeneity 1, but NMI < 1 (H(clusters) larger)
    c = np.array([0, 1, 2, 2])
    assert homogeneity(x, c) == pytest.approx(1.0)
    assert nmi(x, c) == pytest.approx(math.log(2) / (0.5 * (math.log(2) + 1.5 * math.log(2))))
    assert homogeneity(np.zeros(4), c) == 1.0
    z = np.array([0, 0, 1, 1])
    assert conditional_mutual_information(x, c, z) == pytest.approx(0.0)


def test_shuffle_within_keeps_each_group_multiset_and_position_predictor_is_the_mode():
    values, groups = np.arange(12), np.repeat([0, 1, 2], 4)
    shuffled = shuffle_within(values, groups, seed=1)
    for g in range(3):
        assert sorted(shuffled[groups == g]) == sorted(values[groups == g])
    assert not np.array_equal(shuffled, values)
    buckets = np.array([3, 3, 1, 2, 2, 2])
    pos = np.array([0, 0, 0, 1, 1, 1])
    assert position_predictor(buckets, pos).tolist() == [3, 3, 3, 2, 2, 2]


def test_row_entropy_ratio_bounds():
    assert row_entropy_ratio(np.full((5, 16), 1 / 80)) == pytest.approx(1.0)
    assert row_entropy_ratio(np.eye(16)[:5] / 5) == pytest.approx(0.0)
    soft = row_entropy_ratio(_plans_from(np.zeros((1, 64), np.int64), sharp=2.0))
    sharp = row_entropy_ratio(_plans_from(np.zeros((1, 64), np.int64), sharp=8.0))
    assert 0 < sharp < soft < 1


def test_token_labels_majority_per_cell():
    label = np.zeros((6, 9), np.int64)
    label[:3, :3] = 2
    label[3:, 6:] = 1
    label[0, 3] = 1  # a minority voxel does not win its cell
    assert token_labels(label, (2, 3)).tolist() == [[2, 0, 0], [0, 0, 1]]
