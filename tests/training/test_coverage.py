"""Where a taught model labels slices beyond the corrections (training.finetuning.coverage), and
the warning a fine-tune's report carries about it."""

from __future__ import annotations

import numpy as np

from tests.helpers import two_squares
from training.finetuning.coverage import (
    MAX_SCANS,
    before_run_note,
    coverage_warnings,
    slice_ranges,
    slices_beyond,
    uncovered_slices,
)
from training.finetuning.finetune import CorrectedVolume, FinetuneSettings, run_finetune

NAMES = ["background", "liver", "pancreas"]


def _organs(n: int = 12) -> np.ndarray:
    """A liver on every slice, a pancreas on slices 4-6."""
    labels = np.zeros((n, 8, 8), np.uint8)
    labels[:, 1:4, 1:4] = 1
    labels[4:7, 5:7, 5:7] = 2
    return labels


def test_slice_ranges() -> None:
    assert slice_ranges([8, 0, 1, 2, 5, 7]) == "0-2, 5, 7-8"
    assert slice_ranges([3]) == "3" and slice_ranges([]) == ""


def test_uncovered_slices_beyond_the_corrected_span() -> None:
    labels = _organs()
    found = uncovered_slices("scan", labels, [5, 6], NAMES)
    # covered: 4-7 (one slice of margin each side); labelled beyond: 0-3 and 8-11
    assert found.slices == (0, 1, 2, 3, 8, 9, 10, 11)
    assert found.classes == (("liver", 8),)  # the pancreas stays within the margin
    text = found.message()
    assert "slices 5-6" in text and "8 slices beyond them (0-3, 8-11: liver)" in text
    assert found.suggested == (2, 10)  # the middle of each side's run
    assert text.endswith("or correct slices 2 and 10 too and fine-tune again.")
    one_side = uncovered_slices("scan", labels, [10, 11], NAMES)
    assert one_side.suggested == (4,) and "correct slice 4 too" in one_side.message()
    labels[0, 5, 5] = 2  # a pancreas far from the corrections is named too
    found = uncovered_slices("scan", labels, [5, 6], NAMES)
    assert found.classes == (("liver", 8), ("pancreas", 1))
    assert "(0-3, 8-11: liver, pancreas)" in found.message()
    labels[1, 7, 7], labels[2, 7, 7] = 3, 4
    many = uncovered_slices("scan", labels, [5, 6], [*NAMES, "x", "y"])
    assert "(0-3, 8-11: 4 classes)" in many.message()
    # only the classes asked about: the pancreas is found on one uncovered slice, too few
    assert uncovered_slices("scan", labels, [5, 6], NAMES, classes=[2]) is None
    # corrections spread over the scan leave nothing beyond them
    assert uncovered_slices("scan", labels, [1, 5, 10], NAMES) is None
    # background beyond the span is not a label
    empty = labels.copy()
    empty[:4] = 0
    empty[8:] = 0
    assert uncovered_slices("scan", empty, [5, 6], NAMES) is None
    assert uncovered_slices("scan", labels, [], NAMES) is None


def test_coverage_warnings_one_line_per_scan_at_most_max_scans() -> None:
    labels = _organs()
    found = [uncovered_slices(f"scan{i}", labels, [5, 6], NAMES) for i in range(MAX_SCANS + 2)]
    lines = coverage_warnings([None, *found])
    assert len(lines) == MAX_SCANS + 1
    assert lines[0].startswith("scan0: the corrections cover slices 5-6")
    assert lines[-1].startswith("... and 2 more scans")
    assert coverage_warnings([None, None]) == [] and coverage_warnings([]) == []


def test_fine_tune_warns_where_its_labels_lie_beyond_the_corrections(finetune_start,
                                                                     tmp_path) -> None:
    """An untrusted start learns every class from the corrections, so labels far from them are
    flagged; a start that already agrees with the corrections is not flagged for what it
    knew."""
    from src_model import read_metadata
    from training.inference import predict_volume

    image, labels = two_squares(n=12)
    settings = FinetuneSettings(epochs=4, samples_per_epoch=16, batch_size=2)
    report = run_finetune(finetune_start, [CorrectedVolume("scan", image, labels, [5, 6])],
                          settings, tmp_path / "taught")
    assert report.trust < 0.5 and report.chosen_epoch > 0
    names = read_metadata(report.checkpoint)["class_names"]
    plain = {"normalization": {"kind": "none"}}
    taught = predict_volume(image, report.checkpoint, metadata=plain).labels
    expected = uncovered_slices("scan", taught, [5, 6], names)
    assert expected is not None  # the squares are on every slice: so are its labels
    assert expected.message() in report.warnings
    assert expected.message() in report.describe()

    # the taught model as a start on another scan, corrected where it is already right: it
    # knew those classes before, nothing to flag
    other, _ = two_squares(seed=1, n=12)
    own = predict_volume(other, report.checkpoint, metadata=plain).labels
    kept = run_finetune(report.checkpoint, [CorrectedVolume("other", other, own, [5, 6])],
                        settings, tmp_path / "kept")
    assert kept.trust >= 0.5
    assert uncovered_slices("other", own, [5, 6], names) is not None  # labels beyond, yet
    assert not [w for w in kept.warnings if "corrections cover" in w]
    # on the scan it was taught on, the same corrections: beyond slices 5-6 it still guesses
    again = run_finetune(report.checkpoint, [CorrectedVolume("scan", image, taught, [5, 6])],
                         settings, tmp_path / "again")
    assert again.trust >= 0.5
    assert [w for w in again.warnings if w.startswith("scan: the corrections cover slices 5-6")]


def test_before_run_note_names_the_slices_beyond_and_two_to_add() -> None:
    """Before a run: corrections on slices 10-15 of labels on 0-29 leave 0-8 and 17-29
    beyond them; the note asks for their middles (4 and 23, the measured second round)."""
    labelled = list(range(30))
    assert slices_beyond(labelled, range(10, 16)) == tuple([*range(0, 9), *range(17, 30)])
    note = before_run_note(labelled, range(10, 16))
    assert note.startswith("Labels on slices 0-8, 17-29 lie beyond the corrections")
    assert "correct slices 4 and 23 too" in note
    assert before_run_note(labelled, [0, 6, 12, 17, 23, 29]) == ""  # spread: nothing beyond
    assert before_run_note(labelled, []) == ""
    assert before_run_note(list(range(12)), [2, 3]) == (
        "Labels on slices 0, 5-11 lie beyond the corrections, where a model taught on them "
        "guesses: correct slices 0 and 8 too (Where to correct next).")
