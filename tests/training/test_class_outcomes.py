"""Per painted class on the corrected slices: painted where, Dice before/after, learned or not."""

from __future__ import annotations

import numpy as np

from training.finetuning.class_outcomes import (
    LEARNED_DICE,
    ClassOutcome,
    class_outcomes,
    not_learned,
    painted_slice_counts,
)

NAMES = ["background", "liver", "aorta", "pancreas", "spleen"]


def _slices() -> list[np.ndarray]:
    """Two scans' corrected slices: liver everywhere, pancreas on 2 slices, aorta on 1."""
    a = np.zeros((3, 8, 8), np.uint8)
    a[:, 1:4, 1:4] = 1
    a[0, 5:7, 5:7] = 3
    a[1, 5:7, 5:7] = 3
    b = np.zeros((8, 8), np.uint8)  # one corrected slice of another scan
    b[1:4, 1:4] = 1
    b[6, 6] = 2
    return [a, b]


def test_painted_slice_counts_counts_slices_not_voxels() -> None:
    counts = painted_slice_counts(_slices(), NAMES)
    assert counts == {"liver": 4, "pancreas": 2, "aorta": 1}
    extra = np.zeros((1, 4, 4), np.uint8)
    extra[0, 0, 0] = 7  # a label without a name
    assert painted_slice_counts([extra], NAMES) == {"class 7": 1}


def test_unlearned_painted_class_is_flagged_with_what_to_do() -> None:
    painted = painted_slice_counts(_slices(), NAMES)
    before = {"liver": 0.7, "aorta": 0.0, "pancreas": 0.0, "spleen": 0.0, "mean": 0.2}
    after = {"liver": 0.95, "aorta": 0.62, "pancreas": 0.1, "spleen": 0.0, "mean": 0.4}
    rows = class_outcomes(before, after, painted, NAMES)
    assert [r.name for r in rows] == ["liver", "aorta", "pancreas", "spleen"]  # class order
    liver, aorta, pancreas, spleen = rows
    assert liver.learned and liver.advice() is None
    assert aorta.learned and aorta.painted_slices == 1  # 0.62 >= 0.5
    assert not pancreas.learned
    assert pancreas.advice() == "pancreas: painted on 2 slices, not learned — paint it on 2 more"
    # drawn by the model on the corrected slices but never painted: nothing was asked of it
    assert not spleen.painted and spleen.learned and spleen.advice() is None
    assert not_learned(rows) == [pancreas]


def test_painted_class_missing_from_the_scores_is_not_learned() -> None:
    rows = class_outcomes({"mean": 1.0}, {"liver": float("nan"), "mean": 1.0},
                          {"liver": 5}, NAMES)
    [liver] = rows
    assert liver.after is None and not liver.learned
    assert liver.advice() == "liver: painted on 5 slices, not learned — paint it on 5 more"
    one = ClassOutcome("aorta", 1, None, LEARNED_DICE - 0.01)
    assert one.advice() == "aorta: painted on 1 slice, not learned — paint it on 2 more"
    assert ClassOutcome("aorta", 1, None, LEARNED_DICE).learned


def test_classes_neither_painted_nor_scored_have_no_row() -> None:
    assert class_outcomes({"mean": 0.5}, {"mean": 0.5}, {}, NAMES) == []
    assert class_outcomes(None, None, {"kidney": 2}) == [ClassOutcome("kidney", 2, None, None)]
