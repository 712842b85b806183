"""Which corrected slices a starting model was already taught on (no torch, no Qt).

A fine-tune guards a start that already agrees with the corrections (``finetune.TRUST``: its
body frozen, its own labels kept as targets). A start that was itself taught on some of
these slices agrees with them because it was taught them, not because it knows the scan:
on the real CT, a model taught on six middle slices, then given two more slices, scored 0.87
on all eight, was guarded, and learned nothing from the two (docs/results-teaching.md,
"A second round"). So each taught model records the slices it saw (``SeenSlices`` in its
card, by scan fingerprint), and trust is judged on the corrected slices it has not seen; its
own labels are kept as targets only near the slices of such a scan it was taught on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .coverage import MARGIN

STRIDE = (2, 4, 4)
"""The fingerprint hashes every 2nd slice, 4th row and 4th column (fast on a large CT)."""


def volume_fingerprint(image: np.ndarray) -> str:
    """A short hex digest of the (S, H, W) image as the fine-tune gets it (normalised), so the
    same scan is recognised in a later fine-tune without storing any of its pixels."""
    image = np.asarray(image)
    sample = np.ascontiguousarray(image[tuple(slice(None, None, s) for s in STRIDE)],
                                  np.float32)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(tuple(image.shape)).encode())
    digest.update(sample.tobytes())
    return digest.hexdigest()


def seen_records(volumes: Iterable[Any]) -> list[dict[str, Any]]:
    """The ``seen`` entries of a taught record: fingerprint and corrected slices per volume
    (``CorrectedVolume``) that has corrections."""
    return [{"fingerprint": v.fingerprint, "slices": [int(i) for i in v.corrected]}
            for v in volumes if v.corrected]


def seen_slices(meta: Mapping[str, Any]) -> dict[str, set[int]]:
    """Fingerprint -> slices, over every fine-tune in the checkpoint's card (``card.taught``,
    dict form); empty for a model never taught on corrections."""
    card = meta.get("card") or {}
    seen: dict[str, set[int]] = {}
    for record in card.get("taught") or []:
        for entry in record.get("seen") or []:
            seen.setdefault(str(entry["fingerprint"]), set()).update(
                int(z) for z in entry["slices"])
    return seen


def known_slices(volumes: Sequence[Any], seen: Mapping[str, set[int]]) -> list[set[int]]:
    """Per volume, the slices of it the start was taught on (empty for a scan it never saw)."""
    if not seen:
        return [set() for _ in volumes]
    return [set(seen.get(v.fingerprint, set())) for v in volumes]


def unseen_corrected(volumes: Sequence[Any], known: Sequence[set[int]]) -> list[list[int]]:
    """Per volume, its corrected slices the start was not taught on."""
    return [[i for i in v.corrected if i not in k] for v, k in zip(volumes, known, strict=True)]


def pseudo_label_candidates(volume: Any, known: set[int], margin: int = MARGIN) -> list[int]:
    """The uncorrected slices whose start labels may be kept as targets: all of them for a
    scan the start was not taught on; for one it was, only those within ``margin`` of the
    slices it was taught on (beyond them it guessed: ``coverage``)."""
    if not known:
        return list(volume.uncorrected)
    lo, hi = min(known) - margin, max(known) + margin
    return [i for i in volume.uncorrected if lo <= i <= hi]
