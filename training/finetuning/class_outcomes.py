"""Per painted class: was it learned? What the Fine-tune result panel and ``l2gnet finetune``
show after a run (no torch, no Qt).

A fine-tune reports one Dice per class on the corrected slices, before and after
(``FinetuneReport.corrected_dice_before``/``_after``). A mean hides the class that was not
learned (a small structure painted on two slices stays at 0 while the liver goes to 0.95),
so each class the user painted gets a row: on how many corrected slices it was painted, its
Dice before and after, and, when the after-Dice is below ``LEARNED_DICE`` (or missing), what
to do ("pancreas: painted on 2 slices, not learned — paint it on 2 more").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LEARNED_DICE = 0.5
"""A painted class whose Dice on the corrected slices after the run is below this is flagged."""

MIN_MORE_SLICES = 2
"""The advice asks for at least this many more slices."""


@dataclass(frozen=True)
class ClassOutcome:
    """One class on the corrected slices: painted where, Dice before and after."""

    name: str
    painted_slices: int  # corrected slices holding this class
    before: float | None  # Dice on the corrected slices with the starting model (None: n/a)
    after: float | None  # ... with the fine-tuned one

    @property
    def painted(self) -> bool:
        return self.painted_slices > 0

    @property
    def learned(self) -> bool:
        """Painted and reaching ``LEARNED_DICE`` after the run (an unpainted class: True,
        nothing was asked of it)."""
        return not self.painted or (self.after is not None and self.after >= LEARNED_DICE)

    @property
    def more_slices(self) -> int:
        """How many more slices to paint it on: as many again, at least ``MIN_MORE_SLICES``."""
        return max(MIN_MORE_SLICES, self.painted_slices)

    def advice(self) -> str | None:
        """What to do about a painted class that was not learned; None when it was."""
        if self.learned:
            return None
        n = self.painted_slices
        return (f"{self.name}: painted on {n} slice{'s' * (n != 1)}, not learned — paint it "
                f"on {self.more_slices} more")


def painted_slice_counts(corrected_labels: Iterable[np.ndarray],
                         class_names: Sequence[str]) -> dict[str, int]:
    """Per foreground class name: on how many corrected slices it has a label.

    ``corrected_labels``: the labels of the corrected slices (2-D arrays, or stacks of them
    along axis 0), from every scan taught on. Label values without a name count as
    ``"class N"``.
    """
    counts: dict[str, int] = {}
    for labels in corrected_labels:
        labels = np.asarray(labels)
        stack = labels[None] if labels.ndim == 2 else labels
        for lab in stack:
            for c in np.unique(lab):
                c = int(c)
                if c <= 0:
                    continue
                name = class_names[c] if c < len(class_names) else f"class {c}"
                counts[name] = counts.get(name, 0) + 1
    return counts


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def class_outcomes(before: Mapping[str, float] | None, after: Mapping[str, float] | None,
                   painted: Mapping[str, int],
                   class_names: Sequence[str] | None = None) -> list[ClassOutcome]:
    """One ``ClassOutcome`` per class that was painted or scored, in class order.

    ``before``/``after``: Dice per class name on the corrected slices (``"mean"`` ignored);
    ``painted``: ``painted_slice_counts``; ``class_names``: the model's, for the order
    (background first, skipped).
    """
    before, after = dict(before or {}), dict(after or {})
    names = [n for n in (class_names or [])[1:]]
    for source in (painted, before, after):
        names += [n for n in source if n != "mean" and n not in names]
    rows = []
    for name in names:
        n = int(painted.get(name, 0))
        b, a = _finite(before.get(name)), _finite(after.get(name))
        if n == 0 and b is None and a is None:
            continue  # neither painted nor drawn on the corrected slices
        rows.append(ClassOutcome(name, n, b, a))
    return rows


def not_learned(outcomes: Iterable[ClassOutcome]) -> list[ClassOutcome]:
    """The painted classes that were not learned."""
    return [o for o in outcomes if not o.learned]


def outcome_lines(outcomes: Iterable[ClassOutcome]) -> list[str]:
    """The outcomes as text (the CLI's log): one line per class, then what to do."""
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    outcomes = list(outcomes)
    lines = [f"  {o.name}: painted on {o.painted_slices} slice(s), Dice {fmt(o.before)} -> "
             f"{fmt(o.after)}" + ("" if o.learned else "  NOT LEARNED") for o in outcomes]
    if lines:
        lines.insert(0, "Dice per class on the corrected slices (before -> after):")
    return lines + [advice for o in outcomes if (advice := o.advice())]


def outcomes_of(report, corrected_labels: Iterable[np.ndarray],
                class_names: Sequence[str]) -> list[ClassOutcome]:
    """``class_outcomes`` of a ``training.finetuning.FinetuneReport`` (or its dict), with the
    painted slices counted from ``corrected_labels``."""
    get = report.get if isinstance(report, Mapping) else lambda k: getattr(report, k)
    return class_outcomes(get("corrected_dice_before"), get("corrected_dice_after"),
                          painted_slice_counts(corrected_labels, class_names), class_names)
