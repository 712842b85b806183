"""Where to correct next: slices spread over the scan or beyond the taught ones first, then the
ones the model is least sure of (no Qt; the Fine-tune panel's *Where to correct next* list
and ``teach_curve.py``).

Uncertainty alone (``training.inference.uncertainty``) points to where the model hesitates,
not to where it is confidently wrong, and it crowds neighbouring slices. Measured on the real
CT (docs/results-teaching.md):

- first round, nothing corrected yet: six slices evenly spaced over the labelled ones taught
  a model scoring 0.879 on the other slices, six adjacent ones 0.710 (the six most uncertain:
  0.601 against 0.774 for evenly spaced, docs/results.md, with older defaults). So with
  nothing corrected and nothing taught the list opens with evenly spaced slices (``SPREAD``);
- next round, taught on slices 10-15: the model calls the upper spleen "left kidney" with
  confidence; the two most uncertain slices (0 and 2) took the mean on the slices still
  uncorrected from 0.725 to 0.728, the middle of each range beyond the taught slices (4 and
  23, ``coverage.Uncovered.suggested``) from 0.711 to 0.808. So once some slices are
  corrected, or the model was taught on some (its card's ``seen`` slices, matched by the
  scan's fingerprint), the list opens with those middles.

The uncertain slices follow in both cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .coverage import end_runs, run_middle, slice_ranges, uncovered_slices
from .seen_slices import seen_slices, volume_fingerprint

LISTED = 10
"""How many slices the list holds."""

SPREAD = 6
"""With nothing corrected, this many evenly spaced slices open the list (a third of the
labelled slices when there are fewer than three times as many)."""

UNCERTAIN, BEYOND, SPREAD_OUT = "uncertain", "beyond", "spread"


@dataclass(frozen=True)
class SliceToCorrect:
    """One slice to correct next: its index along the slicing axis, the model's mean
    probability entropy there (nats), why it is listed (``UNCERTAIN``; ``BEYOND``: the middle
    of ``span``, labelled slices beyond the corrected and taught ones; ``SPREAD_OUT``: evenly
    spaced over ``span``, the first and last labelled slice)."""

    index: int
    uncertainty: float
    reason: str = UNCERTAIN
    span: tuple[int, ...] = ()

    def text(self) -> str:
        """The list entry: why this slice."""
        if self.reason == BEYOND:
            return (f"slice {self.index}   not taught near: middle of slices "
                    f"{slice_ranges(self.span)}")
        if self.reason == SPREAD_OUT:
            return (f"slice {self.index}   spread over the labelled slices "
                    f"{self.span[0]}-{self.span[-1]}")
        return f"slice {self.index}   uncertainty {self.uncertainty:.3f}"


def spread_slices(labelled: Sequence[int], count: int = SPREAD) -> list[int]:
    """``count`` slices evenly spaced from the first to the last of ``labelled`` (fewer when
    there are fewer than ``3 * count`` labelled slices: a third of them; the middle one when
    that is fewer than two)."""
    if not len(labelled):
        return []
    lo, hi = int(min(labelled)), int(max(labelled))
    count = min(count, len(labelled) // 3)
    if count < 2:  # one slice: the middle one
        return [sorted(int(z) for z in labelled)[len(labelled) // 2]]
    return sorted({int(round(v)) for v in np.linspace(lo, hi, count)})


def taught_slices(volume: np.ndarray, meta: dict, axis: int) -> set[int]:
    """The slices (along ``axis``) of this scan the checkpoint was taught on, found by the
    fingerprint of the scan as its fine-tune saw it (normalised, slices first)."""
    seen = seen_slices(meta)
    if not seen or np.ndim(volume) != 3:
        return set()
    from ..data.normalization import IntensityNormalization, normalize

    normalization = IntensityNormalization.from_metadata(meta.get("normalization"))
    image = np.moveaxis(normalize(np.asarray(volume), normalization), axis, 0)
    return set(seen.get(volume_fingerprint(image.astype(np.float32)), set()))


def slices_to_correct(volume: np.ndarray, checkpoint: str | Path, *, axis: int = 0,
                      corrected: Sequence[int] = (), spacing: Sequence[float] | None = None,
                      count: int = LISTED, **predict_options: Any) -> list[SliceToCorrect]:
    """Segment ``volume`` (raw, as opened) with ``checkpoint`` and list up to ``count``
    slices to correct next, never a corrected one: first the middle of each run of labelled
    slices beyond the corrected and taught ones (``coverage``), or, with none of those,
    ``SPREAD`` slices evenly spaced over the labelled ones; then the most uncertain,
    neighbours of a listed slice left out. ``spacing``: the voxel size in mm in the volume's
    axis order, so a model with a pixel size segments at its scale (as Segment does).
    ``predict_options``: ``predict_volume``'s (``device``, ``batch_size``)."""
    from src_model import read_metadata

    from ..inference import predict_volume
    from ..inference.uncertainty import rank_scores, slice_entropy

    meta = read_metadata(checkpoint)
    result = predict_volume(np.asarray(volume), str(checkpoint), axis=axis, spacing=spacing,
                            return_probabilities=True, **predict_options)
    probs = result.probabilities
    if probs.ndim == 3:  # one 2-D slice
        probs, axis = probs[:, None], 0
    scores = slice_entropy(probs, axis)
    done = {int(i) for i in corrected}
    covered = sorted(done | taught_slices(volume, meta, axis))
    labels = np.moveaxis(np.asarray(result.labels).reshape(probs.shape[1:]), axis, 0)
    picks: list[SliceToCorrect] = []
    if covered:
        found = uncovered_slices("scan", labels, covered, list(meta.get("class_names") or []))
        for run in end_runs(found.slices) if found else ():
            middle = run_middle(run)
            picks.append(SliceToCorrect(middle, float(scores[middle]), BEYOND, run))
    elif labels.shape[0] > 2:
        labelled = np.flatnonzero(labels.reshape(labels.shape[0], -1).any(1)).tolist()
        span = (labelled[0], labelled[-1]) if labelled else ()
        picks = [SliceToCorrect(z, float(scores[z]), SPREAD_OUT, span)
                 for z in spread_slices(labelled)]
    chosen = [p.index for p in picks[:count]]
    rest = rank_scores(scores, None, exclude=set(covered) | set(chosen), spacing=2)
    rest = [i for i in rest if all(abs(i - j) >= 2 for j in chosen)]
    picks += [SliceToCorrect(i, float(scores[i])) for i in rest]
    return picks[:count]
