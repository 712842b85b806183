"""Where to correct next (``training.finetuning.next_slices``): the slices beyond the corrected
and taught ones first, the uncertain ones after, on the demo model and its sample scan."""

from __future__ import annotations

import numpy as np
import pytest

from napari_l2gnet._sample import sample_abdomen_ct
from src_model import read_metadata
from training.data.normalization import IntensityNormalization
from training.finetuning.finetune import volume_from_arrays
from training.finetuning.next_slices import (
    BEYOND,
    SPREAD_OUT,
    UNCERTAIN,
    slices_to_correct,
    spread_slices,
    taught_slices,
)
from training.inference import predict_volume
from training.inference.uncertainty import rank_slices

DEMO = "napari_l2gnet/resources/demo_l2gnet.safetensors"


@pytest.fixture(scope="module")
def scan() -> tuple[np.ndarray, tuple[float, ...]]:
    (image, kw, _), _truth = sample_abdomen_ct()
    return np.asarray(image), tuple(kw["scale"])


def _no_neighbours(indices: list[int]) -> bool:
    return all(abs(a - b) >= 2 for i, a in enumerate(indices) for b in indices[i + 1:])


def test_nothing_corrected_opens_with_evenly_spaced_slices(scan) -> None:
    """Nothing corrected or taught: six slices spread from the first to the last labelled
    slice, then the most uncertain of the rest (never a listed slice's neighbour)."""
    image, spacing = scan
    listed = slices_to_correct(image, DEMO, spacing=spacing)
    result = predict_volume(image, DEMO, spacing=spacing, return_probabilities=True)
    labelled = [z for z in range(image.shape[0]) if result.labels[z].any()]
    spread = [s for s in listed if s.reason == SPREAD_OUT]
    assert len(spread) == 6 and listed[:6] == spread
    assert [s.index for s in spread] == [
        int(round(v)) for v in np.linspace(labelled[0], labelled[-1], 6)]
    assert spread[0].text() == (f"slice {labelled[0]}   spread over the labelled slices "
                                f"{labelled[0]}-{labelled[-1]}")
    rest = [s.index for s in listed[6:]]
    assert rest and all(s.reason == UNCERTAIN for s in listed[6:])
    ranked = rank_slices(result.probabilities, None, spacing=2)
    assert rest == [i for i in ranked if all(abs(i - j) >= 2 for j in
                                             [s.index for s in spread])][:len(rest)]
    assert _no_neighbours([s.index for s in listed])


def test_spread_slices_on_short_stacks() -> None:
    assert spread_slices(list(range(0, 30))) == [0, 6, 12, 17, 23, 29]
    assert spread_slices(list(range(3, 12))) == [3, 7, 11]  # 9 labelled: a third of them
    assert spread_slices([2, 3, 4, 5, 9]) == [4]  # fewer than 6: the middle one
    assert spread_slices([]) == []


def test_slices_beyond_the_corrections_come_first(scan) -> None:
    """Corrections on three middle slices: the list opens with the middle of the labelled
    slices below them and of those above them, then the uncertain slices elsewhere."""
    image, spacing = scan
    labels = predict_volume(image, DEMO, spacing=spacing).labels
    labelled = [z for z in range(labels.shape[0]) if labels[z].any()]
    mid = labelled[len(labelled) // 2]
    corrected = [mid - 1, mid, mid + 1]
    listed = slices_to_correct(image, DEMO, corrected=corrected, spacing=spacing)
    below = [z for z in labelled if z < mid - 2]
    above = [z for z in labelled if z > mid + 2]
    first, second, *rest = listed
    assert first.reason == second.reason == BEYOND
    assert first.span == tuple(below) and first.index == below[len(below) // 2]
    assert second.span == tuple(above) and second.index == above[len(above) // 2]
    assert "not taught near: middle of slices" in first.text()
    assert rest and all(s.reason == UNCERTAIN for s in rest)
    assert [s.uncertainty for s in rest] == sorted((s.uncertainty for s in rest), reverse=True)
    indices = [s.index for s in listed]
    assert not set(indices) & set(corrected) and _no_neighbours(indices)


def test_taught_slices_are_found_by_the_fine_tunes_fingerprint(scan) -> None:
    """The slices a checkpoint's card says it was taught on are found for the same scan as
    the fine-tune saw it (``volume_from_arrays``: normalised, slices first), whatever axis
    the panel slices along, and for no other scan."""
    image, _ = scan
    meta = read_metadata(DEMO)
    norm = IntensityNormalization.from_metadata(meta["normalization"])
    transposed = np.moveaxis(image, 0, 2)
    seen = volume_from_arrays(transposed, np.zeros(transposed.shape, np.uint8), [5, 6],
                              axis=2, normalization=norm, num_classes=9)
    meta["card"] = {"taught": [{"seen": [{"fingerprint": seen.fingerprint,
                                          "slices": [5, 6]}]}]}
    assert taught_slices(transposed, meta, axis=2) == {5, 6}
    assert taught_slices(image, meta, axis=0) == {5, 6}  # the same slices, other layout
    assert taught_slices(image[::-1].copy(), meta, axis=0) == set()
    assert taught_slices(image, read_metadata(DEMO), axis=0) == set()  # never taught
