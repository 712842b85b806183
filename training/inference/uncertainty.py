"""Where to correct next: rank slices by how unsure the model is (no torch, no Qt).

The score of a slice is the mean over its pixels of the entropy of the class probabilities
(``-sum_c p_c log p_c``, in nats): high where the model hesitates between classes. The
Fine-tune widget lists the top slices; correcting those first is measured against evenly
spaced slices in ``benchmarks/finetune_curve.py`` (README, "Where to correct next").
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def slice_entropy(probabilities: np.ndarray, axis: int = 0, chunk: int = 8) -> np.ndarray:
    """Mean probability entropy of each slice along ``axis`` of the volume.

    ``probabilities`` is (C, S, H, W)-like: classes first, then the volume's axes (what
    ``training.inference.predict_volume(..., return_probabilities=True)`` returns).
    """
    probs = np.asarray(probabilities)
    if probs.ndim != 4:
        raise ValueError(f"Expected (classes, *volume) probabilities, got shape {probs.shape}")
    probs = np.moveaxis(probs, axis + 1, 1)
    out = np.empty(probs.shape[1], np.float64)
    for start in range(0, probs.shape[1], chunk):  # float32 copies a few slices at a time
        p = probs[:, start:start + chunk].astype(np.float32)
        ent = -(p * np.log(np.clip(p, 1e-7, 1.0))).sum(0)
        out[start:start + chunk] = ent.reshape(ent.shape[0], -1).mean(1)
    return out


def rank_slices(probabilities: np.ndarray, count: int | None = None, axis: int = 0,
                exclude: Iterable[int] = (), spacing: int = 1) -> list[int]:
    """Slice indices, most uncertain first; see ``rank_scores``."""
    return rank_scores(slice_entropy(probabilities, axis), count, exclude, spacing)


def rank_scores(scores: np.ndarray, count: int | None = None, exclude: Iterable[int] = (),
                spacing: int = 1) -> list[int]:
    """Indices of ``scores``, highest first; ``exclude`` (e.g. already corrected) left out.

    ``spacing`` > 1 skips slices closer than that to one already chosen: neighbouring slices
    look alike, and correcting two of them teaches little more than one.
    """
    skip = {int(i) for i in exclude}
    chosen: list[int] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        i = int(i)
        if i in skip or any(abs(i - j) < spacing for j in chosen):
            continue
        chosen.append(i)
        if count is not None and len(chosen) >= count:
            break
    return chosen
