"""Class-aware sampling and loss weights for learning from a few painted slices.

A structure painted on two of six corrected slices is seen a third as often as one painted
on all six, and covers a hundredth of the voxels of the liver: plain repetition and plain
cross-entropy leave it unlearned. Two remedies, both computed from the painted labels:

- ``balanced_repeats``: the slices of an epoch drawn half uniformly, half by first choosing a
  painted class uniformly and then a slice that shows it (nnU-Net's class-aware foreground
  sampling, applied to whole slices), so every painted class is in about as many samples;
- ``class_weights``: cross-entropy weights from the inverse square root of each class's voxel
  share on the painted slices (softened inverse frequency), normalised to a mean weight of 1
  per voxel and capped, so a small class's voxels count more without drowning the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_CLASS_WEIGHT", "balanced_repeats", "class_weights", "slice_probabilities"]

MAX_CLASS_WEIGHT = 10.0


def slice_probabilities(labels: Sequence[np.ndarray], uniform_share: float = 0.5) -> np.ndarray:
    """Per-slice sampling probability: ``uniform_share`` uniform, the rest class-balanced
    (a painted class drawn uniformly, then a slice showing it; slices without foreground
    form one more group)."""
    n = len(labels)
    if n == 0:
        raise ValueError("No slices to sample from")
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels):
        present = [int(c) for c in np.unique(lab) if c > 0] or [0]
        for c in present:
            groups.setdefault(c, []).append(i)
    balanced = np.zeros(n)
    for members in groups.values():
        balanced[members] += 1.0 / (len(groups) * len(members))
    return uniform_share / n + (1.0 - uniform_share) * balanced


def balanced_repeats(labels: Sequence[np.ndarray], total: int,
                     uniform_share: float = 0.5) -> list[int]:
    """Slice indices for one epoch of at least ``total`` samples: every slice at least once,
    the others allotted in proportion to ``slice_probabilities`` (largest remainders)."""
    n = len(labels)
    total = max(int(total), n)
    p = slice_probabilities(labels, uniform_share)
    extra = total - n
    share = p * extra
    counts = np.floor(share).astype(int)
    left = extra - int(counts.sum())
    if left > 0:
        order = np.argsort(-(share - counts), kind="stable")
        counts[order[:left]] += 1
    return [i for i in range(n) for _ in range(1 + int(counts[i]))]


def class_weights(labels: Sequence[np.ndarray], num_classes: int,
                  cap: float = MAX_CLASS_WEIGHT, power: float = 0.5) -> tuple[float, ...]:
    """Cross-entropy weights per class (module docstring): the voxel share to the ``-power``
    (0: all 1, 0.5: the inverse square root, 1: inverse frequency); a class absent from
    ``labels`` gets 1. The voxel-weighted mean over the painted slices is 1 before capping."""
    counts = np.zeros(num_classes, np.float64)
    for lab in labels:
        counts += np.bincount(np.asarray(lab, np.int64).ravel(), minlength=num_classes)[
            :num_classes]
    total = counts.sum()
    weights = np.ones(num_classes)
    present = counts > 0
    if total == 0 or present.sum() < 2 or power == 0:
        return tuple(float(w) for w in weights)
    freq = counts[present] / total
    w = freq ** -float(power)
    w /= float((freq * w).sum())
    weights[present] = np.clip(w, 1.0 / cap, cap)
    return tuple(round(float(x), 4) for x in weights)
