"""training.evaluation.metrics against medpy, on hand-made masks, and on every empty case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from medpy.metric import binary as mp
from scipy.ndimage import binary_dilation, gaussian_filter

from training.evaluation.metrics import dice, hd95, score_case, summarize


def _blob(rng: np.random.Generator, shape: tuple[int, ...], level: float = 0.6) -> np.ndarray:
    """Smooth random blobs (several components, holes, touching the edges sometimes)."""
    field = gaussian_filter(rng.standard_normal(shape), sigma=max(1.0, min(shape) / 10))
    return field > np.quantile(field, level)


CASES = [
    (seed, shape, spacing)
    for seed in range(4)
    for shape, spacing in [
        ((48, 40), None),
        ((48, 40), (0.7, 1.9)),
        ((20, 32, 28), None),
        ((20, 32, 28), (3.0, 0.8, 0.8)),
    ]
]


@pytest.mark.parametrize(("seed", "shape", "spacing"), CASES)
def test_matches_medpy_on_random_blobs(seed, shape, spacing) -> None:
    rng = np.random.default_rng(seed)
    a, b = _blob(rng, shape), _blob(rng, shape, 0.7)
    assert a.any() and b.any()
    assert dice(a, b) == pytest.approx(mp.dc(a, b), abs=1e-6)
    assert hd95(a, b, spacing) == pytest.approx(mp.hd95(a, b, voxelspacing=spacing), abs=1e-6)
    assert hd95(b, a, spacing) == pytest.approx(mp.hd95(b, a, voxelspacing=spacing), abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_matches_medpy_small_masks_far_from_each_other(seed) -> None:
    rng = np.random.default_rng(100 + seed)
    a = np.zeros((30, 30, 30), bool)
    b = np.zeros_like(a)
    a[tuple(rng.integers(0, 30, size=(3, 5)))] = True
    b[tuple(rng.integers(0, 30, size=(3, 7)))] = True
    b = binary_dilation(b)
    spacing = (2.5, 1.0, 0.6)
    assert hd95(a, b, spacing) == pytest.approx(mp.hd95(a, b, voxelspacing=spacing), abs=1e-6)
    assert dice(a, b) == pytest.approx(mp.dc(a, b), abs=1e-6)


def test_score_case_matches_medpy_per_class_3d() -> None:
    rng = np.random.default_rng(7)
    shape = (16, 24, 24)
    truth = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    for c in (1, 2, 3):
        truth[_blob(rng, shape, 0.85)] = c
        pred[_blob(rng, shape, 0.85)] = c
    spacing = (2.0, 0.75, 0.75)
    for protocol in ("transunet", "clinical"):
        rows = score_case(pred, truth, 4, protocol=protocol, spacing=spacing)
        assert [r["class"] for r in rows] == [1, 2, 3]
        for c, row in zip((1, 2, 3), rows, strict=True):
            p, t = pred == c, truth == c
            sp = spacing if protocol == "clinical" else None
            assert row["dice"] == pytest.approx(mp.dc(p, t), abs=1e-6)
            assert row["hd95"] == pytest.approx(mp.hd95(p, t, voxelspacing=sp), abs=1e-6)
            assert row["empty"] is None


def test_squares_shifted_by_three_pixels() -> None:
    a = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    b = np.roll(a, 3, axis=1)
    assert hd95(a, b) == pytest.approx(3.0)
    # overlap 10 x 7 of two 100-pixel squares
    assert dice(a, b) == pytest.approx(2 * 70 / 200)
    assert hd95(a, b, spacing=(1.0, 0.5)) == pytest.approx(1.5)
    assert hd95(a, b, spacing=2.0) == pytest.approx(6.0)


def test_identical_masks_and_disjoint_masks() -> None:
    a = np.zeros((20, 20, 20), bool)
    a[5:12, 4:9, 6:15] = True
    assert dice(a, a) == 1.0
    assert hd95(a, a) == 0.0
    b = np.zeros_like(a)
    b[15:18, 15:18, 15:18] = True
    assert dice(a, b) == 0.0
    assert dice(np.zeros(5), np.zeros(5)) == 0.0  # medpy's convention


def test_hd95_needs_objects() -> None:
    a = np.zeros((5, 5), bool)
    b = a.copy()
    b[2, 2] = True
    with pytest.raises(ValueError, match="pred_mask"):
        hd95(a, b)
    with pytest.raises(ValueError, match="truth_mask"):
        hd95(b, a)


def _labels() -> tuple[np.ndarray, np.ndarray]:
    """Class 1 in both, 2 only predicted, 3 only in truth, 4 in neither (5 classes)."""
    pred = np.zeros((6, 20, 20), np.int64)
    truth = np.zeros_like(pred)
    pred[1:4, 2:8, 2:8] = 1
    truth[1:4, 3:9, 2:8] = 1
    pred[2:4, 12:15, 12:15] = 2
    truth[4:6, 14:18, 1:5] = 3
    return pred, truth


def test_transunet_protocol_empty_cases() -> None:
    pred, truth = _labels()
    rows = score_case(pred, truth, 5, spacing=(5.0, 1.0, 1.0))  # spacing ignored
    assert rows[0]["dice"] == pytest.approx(mp.dc(pred == 1, truth == 1))
    assert rows[0]["hd95"] == pytest.approx(mp.hd95(pred == 1, truth == 1))
    assert (rows[1]["dice"], rows[1]["hd95"]) == (1.0, 0.0)  # predicted, truth empty
    assert (rows[2]["dice"], rows[2]["hd95"]) == (0.0, 0.0)  # missed
    assert (rows[3]["dice"], rows[3]["hd95"]) == (0.0, 0.0)  # both empty
    assert all(r["empty"] is None for r in rows)


def test_clinical_protocol_empty_cases() -> None:
    pred, truth = _labels()
    spacing = (5.0, 1.0, 1.0)
    rows = score_case(pred, truth, 5, protocol="clinical", spacing=spacing)
    assert rows[0]["empty"] is None
    assert rows[0]["hd95"] == pytest.approx(
        mp.hd95(pred == 1, truth == 1, voxelspacing=spacing), abs=1e-6
    )
    assert [r["empty"] for r in rows[1:]] == ["truth", "prediction", "both"]
    for r in rows[1:]:
        assert r["hd95"] is None
    # A missed organ scores Dice 0; truth-empty and both-empty cases are not scored.
    assert [r["dice"] for r in rows[1:]] == [None, 0.0, None]


def test_clinical_without_spacing_is_voxel_units() -> None:
    pred, truth = _labels()
    rows = score_case(pred, truth, 5, protocol="clinical")
    assert rows[0]["hd95"] == pytest.approx(mp.hd95(pred == 1, truth == 1))


def test_2d_labels() -> None:
    truth = np.zeros((32, 32), np.uint8)
    truth[4:12, 4:12] = 1
    truth[20:28, 20:28] = 2
    pred = np.roll(truth, 3, axis=0)
    rows = score_case(pred, truth, 3)
    assert [r["hd95"] for r in rows] == [pytest.approx(3.0)] * 2
    assert [r["dice"] for r in rows] == [pytest.approx(2 * 40 / 128)] * 2


def test_shape_mismatch_message() -> None:
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 6\)"):
        score_case(np.zeros((4, 5), int), np.zeros((4, 6), int), 2)
    with pytest.raises(ValueError, match=r"\(3, 3\).*\(3, 4\)"):
        dice(np.zeros((3, 3)), np.zeros((3, 4)))


def test_label_validation() -> None:
    ok = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="integer"):
        score_case(ok.astype(np.float32), ok, 3)
    bad = ok.copy()
    bad[0, 0] = 7
    with pytest.raises(ValueError, match="7"):
        score_case(ok, bad, 3)
    with pytest.raises(ValueError, match="-1"):
        score_case(ok.astype(np.int16) - 1, ok, 3)
    with pytest.raises(ValueError, match="protocol"):
        score_case(ok, ok, 3, protocol="nnunet")
    with pytest.raises(ValueError, match="spacing"):
        score_case(ok, ok, 3, protocol="clinical", spacing=(1.0, 1.0, 1.0))


def test_summarize_means_ignore_none() -> None:
    cases = [
        [{"dice": 0.8, "hd95": 2.0, "empty": None}, {"dice": None, "hd95": None, "empty": "both"}],
        [{"dice": 0.6, "hd95": 4.0, "empty": None}, {"dice": 0.5, "hd95": 10.0, "empty": None}],
    ]
    out = summarize(cases, ["background", "liver", "spleen"])
    assert out["per_class"]["liver"]["dice"] == pytest.approx(0.7)
    assert out["per_class"]["liver"]["hd95"] == pytest.approx(3.0)
    assert out["per_class"]["spleen"]["dice"] == pytest.approx(0.5)
    assert out["per_class"]["spleen"]["n"] == 1
    assert out["per_class"]["spleen"]["empty"] == {"both": 1}
    assert out["mean"]["dice"] == pytest.approx(0.6)
    assert out["mean"]["hd95"] == pytest.approx(6.5)
    assert out["num_cases"] == 2


def test_summarize_on_score_case_output() -> None:
    pred, truth = _labels()
    cases = [score_case(pred, truth, 5), score_case(truth, truth, 5)]
    out = summarize(cases, ["a", "b", "c", "d"])
    assert out["per_class"]["a"]["dice"] == pytest.approx((mp.dc(pred == 1, truth == 1) + 1) / 2)
    assert out["per_class"]["b"]["dice"] == pytest.approx(0.5)  # (1 + 0) / 2 under transunet
    clinical = summarize([score_case(pred, truth, 5, "clinical")], ["a", "b", "c", "d"])
    assert clinical["per_class"]["d"]["dice"] is None
    assert clinical["per_class"]["c"]["dice"] == 0.0  # missed organ
    expected = (clinical["per_class"]["a"]["dice"] + 0.0) / 2
    assert math.isclose(clinical["mean"]["dice"], expected)
    with pytest.raises(ValueError, match="class names"):
        summarize(cases, ["a"])


def test_bounding_box_with_margin():
    from training.evaluation.metrics import bounding_box

    mask = np.zeros((5, 6, 7), bool)
    mask[1, 2, 3] = mask[2, 4, 3] = True
    assert bounding_box(mask) == (slice(1, 3), slice(2, 5), slice(3, 4))
    assert bounding_box(mask, margin=2) == (slice(0, 5), slice(0, 7), slice(1, 6))
    with pytest.raises(ValueError, match="empty"):
        bounding_box(np.zeros((3, 3), bool))
