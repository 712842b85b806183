"""An honest card for a taught model: run_finetune records what it was derived from, on how
many corrected slices of how many scans and when (``card.taught``, validated); the summary the
Segment panel shows says so, and calls the training-slice score what it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from src_model.checkpoint import read_checkpoint_meta
from src_model.checkpoint_meta import CheckpointError, CheckpointMeta, TaughtRecord
from tests.helpers import FINETUNE_NAMES as NAMES
from tests.helpers import save_finetune_start, two_squares
from training.finetuning.finetune import CorrectedVolume, FinetuneSettings, run_finetune
from training.inference.shipped_models import describe_checkpoint


@pytest.fixture
def phantom_start(tmp_path) -> Path:
    """A tiny model whose training record says it saw only phantoms (as the demo's does)."""
    return save_finetune_start(tmp_path / "start.safetensors", training={
        "data": "phantom:1-2", "val_dice": {"a": 0.9, "b": 0.9, "mean": 0.9}})


def test_taught_model_card_and_summary(phantom_start, tmp_path) -> None:
    before = describe_checkpoint(phantom_start).details()
    assert "Phantom-only demo" in before and "Validation mean Dice: 0.900" in before
    volumes = [CorrectedVolume("p1", *two_squares(0), [1, 4]),
               CorrectedVolume("p2", *two_squares(1), [2])]
    report = run_finetune(phantom_start, volumes,
                          FinetuneSettings(epochs=4, lr=0.01, samples_per_epoch=4,
                                           batch_size=2), tmp_path / "run")
    assert report.chosen_epoch > 0  # the untrained start is beaten on these easy slices
    meta = read_checkpoint_meta(report.checkpoint)  # validated on reading
    [record] = meta.card.taught
    assert record.derived_from == "start" and record.derived_from_file == "start.safetensors"
    assert (record.corrected_slices, record.scans) == (3, 2)
    assert record.date[:2] == "20"
    assert meta.training["data"] == "phantom:1-2"  # the start's record, kept as history

    text = describe_checkpoint(report.checkpoint).details()
    assert "Phantom-only" not in text and "not on real scans" not in text
    assert "Validation mean Dice" not in text
    assert ("Taught on your corrections: derived from start, taught on 3 corrected slices of "
            "2 scans") in text
    assert "Dice on the corrected slices it was taught on:" in text
    assert "First trained on: phantom:1-2" in text

    # taught again: the record is appended, the latest is shown
    again = run_finetune(report.checkpoint, volumes[:1],
                         FinetuneSettings(epochs=1, lr=0.01, samples_per_epoch=4,
                                          batch_size=2), tmp_path / "run2")
    if again.chosen_epoch > 0:
        records = read_checkpoint_meta(again.checkpoint).card.taught
        assert [r.scans for r in records] == [2, 1]
        assert "taught 2 times in all" in describe_checkpoint(again.checkpoint).details()


def test_taught_records_are_validated() -> None:
    base = {"model": {"name": "unet", "num_classes": 3, "config": {}}, "class_names": NAMES}
    good = {"derived_from": "demo", "corrected_slices": 6, "scans": 1,
            "date": "2026-12-07T13:00:00+00:00"}
    meta = CheckpointMeta.from_dict({**base, "card": {"taught": [good]}})
    assert meta.card.taught == (TaughtRecord("demo", 6, 1, "2026-12-07T13:00:00+00:00"),)
    assert meta.card.to_dict()["taught"] == [good]
    assert meta.resolved_card().taught == meta.card.taught
    assert meta.card.taught[0].describe() == (
        "derived from demo, taught on 6 corrected slices of 1 scan (2026-12-07)")
    for bad, words in (
        ([{**good, "scans": 0}], "scans' = 0 is out of range"),
        ([{k: v for k, v in good.items() if k != "date"}], "date' must be text"),
        ([{**good, "corrected_slices": "6"}], "must be a whole number"),
        ("demo", "must be a list"),
    ):
        with pytest.raises(CheckpointError, match=words):
            CheckpointMeta.from_dict({**base, "card": {"taught": bad}})
