"""Where a taught model draws labels that no correction covers (no torch, no Qt).

A model taught on a few corrected slices is reliable near them and guesses far from them.
Measured on the real CT (docs/results-teaching.md, "Where the taught model guesses"): taught
on six adjacent slices in the middle third, 97 % of the wrong voxels on the uncorrected slices
lay more than one slice beyond the first or last corrected slice (Dice 0.68 there, 0.91
within); taught on slices spread over the scan, no labelled slice lay beyond them. So after a
run the user is told, per scan, which labelled slices lie beyond the corrections and which
classes the model draws there: the slices to check, or to correct one of and teach again.
Only classes the corrections taught count: all of them when the start did not already agree
with the corrections or was itself taught on the scan (then the slices it was taught on
count as corrected: ``seen_slices``), only the added ones when it agreed with the
corrections on a scan it had not been taught on (its other classes it knew before).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

MARGIN = 1
"""Slices this far beyond the first or last corrected slice still count as covered."""

MIN_SLICES = 3
"""Fewer uncovered labelled slices than this in a scan: no warning (an end slice or two)."""

MAX_SCANS = 3
"""At most this many scans get a warning line each; the rest are counted in one line."""


@dataclass(frozen=True)
class Uncovered:
    """A scan's labelled slices beyond its corrected span, and the classes drawn there."""

    scan: str
    first: int  # first corrected slice
    last: int  # last corrected slice
    slices: tuple[int, ...]  # labelled slices more than MARGIN beyond [first, last]
    classes: tuple[tuple[str, int], ...]  # (class name, uncovered slices it is on), most first

    @property
    def suggested(self) -> tuple[int, ...]:
        """Slices to correct next: the middle of the first and of the last run of uncovered
        slices (one per side of the corrections; measured in docs/results-teaching.md)."""
        return tuple(run_middle(run) for run in end_runs(self.slices))

    def message(self) -> str:
        """One line for the result panel and the CLI's log."""
        n = len(self.slices)
        names = [name for name, _ in self.classes]
        drawn = ", ".join(names) if len(names) <= 3 else f"{len(names)} classes"
        suggested = self.suggested
        picks = " and ".join(map(str, suggested))
        return (f"{self.scan}: the corrections cover slices {self.first}-{self.last}; the "
                f"model labels {n} slices beyond them ({slice_ranges(self.slices)}: {drawn}), "
                f"where nothing taught it: check those, or correct slice"
                f"{'s' * (len(suggested) > 1)} {picks} too and fine-tune again.")


def _runs(slices: Sequence[int]) -> list[list[int]]:
    """Consecutive runs: ``[0, 1, 2, 5, 7, 8]`` -> ``[[0, 1, 2], [5], [7, 8]]``."""
    runs: list[list[int]] = []
    for s in sorted(int(v) for v in slices):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def end_runs(slices: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """The first and the last run of consecutive ``slices`` (one if there is one)."""
    runs = _runs(slices)
    return tuple(tuple(run) for run in ([runs[0], runs[-1]] if len(runs) > 1 else runs))


def run_middle(run: Sequence[int]) -> int:
    """The slice in the middle of a run (the upper one of two middles)."""
    return int(run[len(run) // 2])


def slice_ranges(slices: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    return ", ".join(_run_text(run) for run in _runs(slices))


def _run_text(run: Sequence[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def uncovered_slices(scan: str, labels: np.ndarray, corrected: Sequence[int],
                     class_names: Sequence[str], *, classes: Collection[int] | None = None,
                     margin: int = MARGIN, min_slices: int = MIN_SLICES) -> Uncovered | None:
    """The slices of ``labels`` (S, H, W: the taught model's output) holding any of
    ``classes`` (None: any foreground) more than ``margin`` slices beyond the corrected span;
    None when fewer than ``min_slices`` (or nothing was corrected)."""
    if not len(corrected):
        return None
    labels = np.asarray(labels)
    taught = labels > 0 if classes is None else np.isin(labels, list(classes))
    first, last = int(min(corrected)), int(max(corrected))
    beyond = slices_beyond([z for z in range(labels.shape[0]) if taught[z].any()], corrected,
                           margin=margin, min_slices=min_slices)
    if not beyond:
        return None
    counts: dict[str, int] = {}
    for z in beyond:
        for c in np.unique(labels[z][taught[z]]):
            if c > 0:
                name = class_names[c] if c < len(class_names) else f"class {int(c)}"
                counts[name] = counts.get(name, 0) + 1
    ranked = tuple(sorted(counts.items(), key=lambda item: -item[1]))
    return Uncovered(scan, first, last, tuple(beyond), ranked)


def slices_beyond(labelled: Sequence[int], corrected: Sequence[int], *, margin: int = MARGIN,
                  min_slices: int = MIN_SLICES) -> tuple[int, ...]:
    """The ``labelled`` slices more than ``margin`` beyond the first or last ``corrected``
    slice; () when fewer than ``min_slices`` of them, or nothing is corrected."""
    if not len(corrected):
        return ()
    first, last = int(min(corrected)), int(max(corrected))
    beyond = tuple(sorted(int(z) for z in labelled
                          if z < first - margin or z > last + margin))
    return beyond if len(beyond) >= min_slices else ()


def before_run_note(labelled: Sequence[int], corrected: Sequence[int]) -> str:
    """What the Fine-tune panel says before a run when the corrections leave labelled slices
    far beyond them ("" when they do not): where the taught model would guess, and the two
    slices to correct as well (the middle of each end run, as ``Uncovered.suggested``)."""
    beyond = slices_beyond(labelled, corrected)
    if not beyond:
        return ""
    picks = [run_middle(run) for run in end_runs(beyond)]
    return (f"Labels on slices {slice_ranges(beyond)} lie beyond the corrections, where a "
            f"model taught on them guesses: correct slice{'s' * (len(picks) > 1)} "
            f"{' and '.join(map(str, picks))} too (Where to correct next).")


def coverage_warnings(found: Sequence[Uncovered | None]) -> list[str]:
    """Warning lines for the scans with uncovered labelled slices (``uncovered_slices``, one
    per scan, None where there are none): one line each, at most ``MAX_SCANS``."""
    found = [u for u in found if u is not None]
    lines = [u.message() for u in found[:MAX_SCANS]]
    if len(found) > MAX_SCANS:
        lines.append(f"... and {len(found) - MAX_SCANS} more scans with labelled slices "
                     "beyond their corrections.")
    return lines
