"""Class-aware sampling and loss weights (``training.data.sampling``, ``training.losses``):
a class painted on few slices is drawn more often and weighs more in the cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.sampling import balanced_repeats, class_weights, slice_probabilities
from training.losses import LossConfig, SegmentationLoss


def _painted() -> list[np.ndarray]:
    """Six corrected slices: the liver (1) on all, the pancreas (2) on one only."""
    out = []
    for i in range(6):
        lab = np.zeros((20, 20), np.uint8)
        lab[2:12, 2:12] = 1
        if i == 3:
            lab[15:17, 15:17] = 2
        out.append(lab)
    return out


def test_sampler_picks_rare_class_slices_more_often():
    labels = _painted()
    p = slice_probabilities(labels)
    assert p.sum() == pytest.approx(1.0)
    assert p[3] > 2 * p[0]  # the only slice with the pancreas
    order = balanced_repeats(labels, 32)
    counts = np.bincount(order, minlength=6)
    assert len(order) == 32 and counts.min() >= 1  # every corrected slice is used
    assert counts[3] >= 2 * counts[0]
    # the pancreas is in about a third of the samples, not a sixth
    assert counts[3] / len(order) > 0.3


def test_sampler_without_rare_classes_is_uniform():
    labels = [np.ones((4, 4), np.uint8)] * 4
    assert sorted(np.bincount(balanced_repeats(labels, 8))) == [2, 2, 2, 2]
    assert len(balanced_repeats(labels, 2)) == 4  # never fewer samples than slices


def test_class_weights_favour_small_painted_classes():
    w = class_weights(_painted(), 4)
    assert w[2] > w[1] > w[0]  # pancreas > liver > background
    assert w[3] == 1.0  # not painted
    assert max(w) <= 10.0
    assert class_weights([np.zeros((4, 4), np.uint8)], 3) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_weighted_cross_entropy_counts_the_small_class_more(num_classes):
    """The same error costs more on a small class once the weights are on."""
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, :2, :2] = 1
    logits = torch.zeros(1, num_classes, 8, 8)
    logits[:, 0] = 2.0  # everything predicted background: the small class is missed
    weights = class_weights([target[0].numpy()], num_classes)
    plain = SegmentationLoss(LossConfig(dice_weight=0, quant_weight=0), num_classes)
    weighted = SegmentationLoss(LossConfig(dice_weight=0, quant_weight=0,
                                           class_weights=weights), num_classes)
    assert weighted(logits, target)[1]["ce"] > 1.5 * plain(logits, target)[1]["ce"]
    # all weights equal: exactly the unweighted loss
    same = SegmentationLoss(LossConfig(dice_weight=0, quant_weight=0,
                                       class_weights=(2.0,) * num_classes), num_classes)
    assert same(logits, target)[1]["ce"] == pytest.approx(plain(logits, target)[1]["ce"])
    with pytest.raises(ValueError, match="class_weights"):
        SegmentationLoss(LossConfig(class_weights=(1.0,) * (num_classes + 1)), num_classes)
