"""Class-aware sampling and loss weights for learning from a few painted slices.

A structure painted on two of six corrected slices is seen a third as often as one painted
on all six, and covers a hundredth of the voxels of the liver: plain repetition and plain
cross-entropy leave it unlearned. Two remedies, both computed from the painted labels:

- ``balanced_repeats``: the slices of an epoch drawn half uniformly, half by first choosing a
  painted class uniformly and then a slice that shows it (nnU-Net's class-aware foreground
  sampling, applied to whole slices), so every painted class is in about as many samples;
- ``small_structure_repeats`` (``l2gnet train --oversample-small``): extra samples of the
  slices where a class is small (its area in the lowest quartile of that class's areas over
  the training slices): the apical and end-systolic slices of a heart, where a slice-by-slice
  model loses the thin right ventricle;
- ``class_weights``: cross-entropy weights from the inverse square root of each class's voxel
  share on the painted slices (softened inverse frequency), normalised to a mean weight of 1
  per voxel and capped, so a small class's voxels count more without drowning the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_CLASS_WEIGHT", "balanced_repeats", "class_weights", "slice_probabilities",
           "small_structure_probabilities", "small_structure_repeats"]

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
    return _repeats(slice_probabilities(labels, uniform_share), total)


def _repeats(p: np.ndarray, total: int) -> list[int]:
    """Every slice once, then ``total - n`` more allotted in proportion to ``p`` (largest
    remainders)."""
    n = len(p)
    total = max(int(total), n)
    extra = total - n
    share = p * extra
    counts = np.floor(share).astype(int)
    left = extra - int(counts.sum())
    if left > 0:
        order = np.argsort(-(share - counts), kind="stable")
        counts[order[:left]] += 1
    return [i for i in range(n) for _ in range(1 + int(counts[i]))]


def small_structure_probabilities(labels: Sequence[np.ndarray],
                                  quantile: float = 0.25) -> np.ndarray:
    """Per-slice probability of the small-structure draw: a foreground class chosen uniformly,
    then uniformly one of the slices where that class's area is at most its ``quantile`` over
    the slices that show it. All zero when no slice shows a foreground class."""
    n = len(labels)
    if n == 0:
        raise ValueError("No slices to sample from")
    areas: dict[int, list[tuple[int, int]]] = {}
    for i, lab in enumerate(labels):
        counts = np.bincount(np.asarray(lab, np.int64).ravel())
        for c in np.flatnonzero(counts[1:]) + 1:
            areas.setdefault(int(c), []).append((i, int(counts[c])))
    p = np.zeros(n)
    for rows in areas.values():
        limit = np.quantile([a for _, a in rows], quantile)
        members = [i for i, a in rows if a <= limit]
        p[members] += 1.0 / (len(areas) * len(members))
    return p


def small_structure_repeats(labels: Sequence[np.ndarray], extra_share: float,
                            quantile: float = 0.25) -> list[int]:
    """Slice indices for one epoch: every slice once, plus ``extra_share`` x n samples of the
    small-structure draw (``small_structure_probabilities``)."""
    if not extra_share >= 0:
        raise ValueError(f"extra_share must be >= 0, got {extra_share}")
    p = small_structure_probabilities(labels, quantile)
    n = len(labels)
    if p.sum() == 0 or extra_share == 0:
        return list(range(n))
    return _repeats(p, n + int(round(extra_share * n)))


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
