"""Class-aware sampling and loss weights (``training.data.sampling``, ``training.fitting.losses``):
a class painted on few slices is drawn more often and weighs more in the cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.sampling import balanced_repeats, class_weights, slice_probabilities
from training.fitting.losses import LossConfig, SegmentationLoss


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
    # the power tempers them: 0 is plain cross-entropy, 1 the full inverse frequency
    assert class_weights(_painted(), 4, power=0) == (1.0, 1.0, 1.0, 1.0)
    full = class_weights(_painted(), 4, power=1.0, cap=1e6)
    assert full[2] / full[0] > w[2] / w[0] > 1.0


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


def test_windows_are_centred_on_each_painted_class_alike():
    """A slice larger than the input: windows centred on a foreground voxel show the small
    class as often as the large one (nnU-Net's class-aware foreground oversampling)."""
    from training.data.dataset import fit_window, foreground_focus

    label = np.zeros((200, 200), np.uint8)
    label[:100, :100] = 1  # large, top-left
    label[180:184, 180:184] = 2  # small, bottom-right corner
    image = label.astype(np.float32) / 2
    rng = np.random.default_rng(0)
    shown = {1: 0, 2: 0}
    for _ in range(200):
        focus = foreground_focus(label, rng)
        _, window = fit_window(image, label, (64, 64), rng, focus)
        for c in shown:
            shown[c] += bool((window == c).any())
    assert shown[2] > 70 and shown[1] > 70


def test_dataset_resamples_to_the_target_pixel_size():
    """A 40 mm square at 0.5 mm pixels reaches the model 40 px wide at 1 mm, padded (not
    resized) into the input window; without a pixel size it is resized as before."""
    from training.data import Slice, SliceDataset

    label = np.zeros((200, 200), np.uint8)
    label[80:160, 60:140] = 1
    image = label.astype(np.float32)
    physical = SliceDataset([Slice(image, label, "a", spacing=(0.5, 0.5))], (128, 128),
                            augment="none", in_channels=1, target_spacing=(1.0, 1.0))
    x, y = physical[0]
    assert tuple(y.shape) == (128, 128)
    assert int((y == 1).sum()) == pytest.approx(40 * 40, rel=0.05)
    plain = SliceDataset([Slice(image, label, "a")], (128, 128), augment="none",
                         in_channels=1, target_spacing=(1.0, 1.0))
    _, y = plain[0]
    assert int((y == 1).sum()) == pytest.approx(80 * 80 * (128 / 200) ** 2, rel=0.05)


def test_dice_over_present_classes_ignores_absent_ones():
    """``dice_present_only``: a class absent from the batch adds nothing to the Dice term
    (otherwise every batch without the rare class pushes it towards zero)."""
    from training.fitting.losses import dice_loss

    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, :4] = 1  # class 1 present, class 2 absent
    onehot = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()
    probs = onehot.clone()
    probs[:, 2] += 0.3  # some mass on the absent class
    probs = probs / probs.sum(1, keepdim=True)
    every = dice_loss(probs, onehot)
    present = dice_loss(probs, onehot, present_only=True)
    assert present < every
    exact = dice_loss(onehot, onehot, present_only=True)
    assert float(exact) == pytest.approx(0.0, abs=1e-6)
    assert float(dice_loss(probs, torch.zeros_like(onehot), present_only=True)) == 0.0
