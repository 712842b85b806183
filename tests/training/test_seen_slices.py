"""A taught model records the slices it was taught on (``training.finetuning.seen_slices``), and a
later fine-tune judges whether it already agrees with the user on the other slices only."""

from __future__ import annotations

import numpy as np

from src_model import read_metadata
from tests.helpers import two_squares
from training.finetuning.finetune import TRUST, CorrectedVolume, FinetuneSettings, run_finetune
from training.finetuning.seen_slices import (
    known_slices,
    pseudo_label_candidates,
    seen_slices,
    unseen_corrected,
    volume_fingerprint,
)


def test_fingerprint_knows_the_same_scan_only() -> None:
    image, _ = two_squares(n=8)
    assert volume_fingerprint(image) == volume_fingerprint(image.copy())
    other = image.copy()
    other[0, 0, 0] += 0.5  # a sampled voxel
    assert volume_fingerprint(other) != volume_fingerprint(image)
    assert volume_fingerprint(image[:6]) != volume_fingerprint(image)
    assert len(volume_fingerprint(image)) == 32


def test_seen_slices_union_and_unseen_corrected() -> None:
    image, labels = two_squares(n=8)
    fp = volume_fingerprint(image)
    meta = {"card": {"taught": [{"seen": [{"fingerprint": fp, "slices": [1, 2]}]},
                                {"seen": [{"fingerprint": fp, "slices": [2, 5]},
                                          {"fingerprint": "other", "slices": [0]}]},
                                {"derived_from": "an old record without seen"}]}}
    assert seen_slices(meta) == {fp: {1, 2, 5}, "other": {0}}
    assert seen_slices({}) == {} and seen_slices({"card": None}) == {}
    volumes = [CorrectedVolume("a", image, labels, [1, 3, 5]),
               CorrectedVolume("b", image[::-1].copy(), labels, [1])]
    known = known_slices(volumes, seen_slices(meta))
    assert known == [{1, 2, 5}, set()]
    assert unseen_corrected(volumes, known) == [[3], [1]]
    assert known_slices(volumes, {}) == [set(), set()]
    # own labels kept as targets only near the slices it was taught on (1-5, margin 1)
    assert pseudo_label_candidates(volumes[0], known[0]) == [0, 2, 4, 6]
    assert pseudo_label_candidates(volumes[1], known[1]) == [0, 2, 3, 4, 5, 6, 7]


def test_second_round_trust_is_judged_on_the_new_slices(finetune_start, tmp_path) -> None:
    """Taught on five slices, then corrected on one more where it is wrong: on all six it
    agrees (it was taught five of them), on the new one it does not, so it learns freely."""
    image, labels = two_squares(n=12)
    settings = FinetuneSettings(epochs=6, samples_per_epoch=16, batch_size=2)
    first = run_finetune(finetune_start, [CorrectedVolume("scan", image, labels,
                                                          [3, 4, 5, 6, 7])],
                         settings, tmp_path / "first")
    card = read_metadata(first.checkpoint)["card"]["taught"][-1]
    assert card["seen"] == [{"fingerprint": volume_fingerprint(image),
                             "slices": [3, 4, 5, 6, 7]}]

    swapped = labels.copy()
    swapped[11] = np.where(labels[11] == 1, 2, np.where(labels[11] == 2, 1, 0))
    second = run_finetune(first.checkpoint, [CorrectedVolume("scan", image, swapped,
                                                             [3, 4, 5, 6, 7, 11])],
                          settings, tmp_path / "second")
    assert second.corrected_dice_before["mean"] >= TRUST  # on all six: it would be trusted
    assert second.trust_slices == 1 and second.trust < TRUST  # on the new one: it is not
    assert not second.froze_body and second.pseudo_slices == 0
    assert "taught on 5 of these slices before" in second.describe()
    seen = read_metadata(second.checkpoint)["card"]["taught"]
    assert [r["seen"][0]["slices"] for r in seen] == [[3, 4, 5, 6, 7], [3, 4, 5, 6, 7, 11]]


def test_own_labels_are_kept_only_near_the_slices_it_was_taught_on(finetune_start,
                                                                   tmp_path) -> None:
    """A start taught on slices 3-7 that agrees with a new correction on slice 9 is guarded,
    but its own labels are targets only on slices 2 and 8: beyond them it guessed."""
    from training.inference import predict_volume

    image, labels = two_squares(n=12)
    settings = FinetuneSettings(epochs=6, samples_per_epoch=16, batch_size=2)
    first = run_finetune(finetune_start, [CorrectedVolume("scan", image, labels,
                                                          [3, 4, 5, 6, 7])],
                         settings, tmp_path / "first")
    own = predict_volume(image, first.checkpoint,
                         metadata={"normalization": {"kind": "none"}}).labels
    again = run_finetune(first.checkpoint, [CorrectedVolume("scan", image, own,
                                                            [3, 4, 5, 6, 7, 9])],
                         settings, tmp_path / "again")
    assert again.trust_slices == 1 and again.trust >= TRUST
    assert again.pseudo_slices == 2  # slices 2 and 8 (keep_weight would allow 24)
