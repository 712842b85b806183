"""Small-structure oversampling (``l2gnet train --oversample-small``) and the
``transunet_scale_intensity`` augmentation: what the cardiac model's retraining used to show
the model more apical and end-systolic slices, where the thin right ventricle is lost."""

from __future__ import annotations

import numpy as np
import pytest

from src_model import load_checkpoint
from training.cli import main
from training.data.sampling import small_structure_probabilities, small_structure_repeats
from training.data.transforms import AUGMENTATIONS, FLIPS, SCALED, augment_pair


def _hearts() -> list[np.ndarray]:
    """Eight slices: class 1 with areas 4, 9, 16, ..., 81 (a ventricle shrinking towards the
    apex); class 2 the same large square on every slice; slice 7 has no foreground."""
    out = []
    for i in range(8):
        lab = np.zeros((24, 24), np.uint8)
        if i < 7:
            lab[14:24, 14:24] = 2
            side = 9 - i  # 9 ... 3
            lab[:side, :side] = 1
        out.append(lab)
    return out


def test_small_structure_draw_picks_the_smallest_areas():
    labels = _hearts()
    p = small_structure_probabilities(labels)
    assert p.sum() == pytest.approx(1.0)
    assert p[7] == 0  # no foreground
    # class 1: areas 81, 64, ..., 9; its lowest quartile is the two smallest (slices 5, 6);
    # class 2 is the same on every slice, so all seven are "small" for it
    assert p[6] == pytest.approx(p[5]) and p[5] > 3 * p[0]
    assert p[0] == pytest.approx(p[4]) == pytest.approx(0.5 / 7)
    assert p[6] == pytest.approx(0.5 / 7 + 0.5 / 2)


def test_small_structure_repeats_keep_every_slice_and_add_the_share():
    labels = _hearts()
    order = small_structure_repeats(labels, 0.5)
    counts = np.bincount(order, minlength=8)
    assert len(order) == 12 and counts.min() >= 1  # 8 slices + 4 extra samples
    assert counts[5] + counts[6] >= 4  # most extra samples are the small ventricles
    assert small_structure_repeats(labels, 0) == list(range(8))
    assert small_structure_repeats([np.zeros((4, 4), np.uint8)] * 3, 1.0) == [0, 1, 2]
    with pytest.raises(ValueError, match="extra_share"):
        small_structure_repeats(labels, -1)


def test_real_acdc_small_rv_slices_are_apical_and_end_systolic(shared_data):
    """On the real ACDC training slices the RV's small group lies towards the apex (the
    later slices of a stack) and at end-systole more often than the stack as a whole."""
    from training.data.normalization import NO_NORMALIZATION
    from training.data.specs import load_slices

    slices = load_slices(str(shared_data / "acdc" / "train_slices"), NO_NORMALIZATION)
    rv_only = [(s.label == 1).astype(np.uint8) for s in slices]
    chosen = np.flatnonzero(small_structure_probabilities(rv_only) > 0)
    names = [s.source.rsplit("/", 1)[-1] for s in slices]
    stack = {}
    for name in names:
        volume, index = name.rsplit("_slice_", 1)
        stack[volume] = max(stack.get(volume, 0), int(index))

    def depth(i: int) -> float:
        volume, index = names[i].rsplit("_slice_", 1)
        return int(index) / max(1, stack[volume])

    with_rv = [i for i, lab in enumerate(rv_only) if lab.any()]
    assert np.mean([depth(i) for i in chosen]) > np.mean([depth(i) for i in with_rv]) + 0.1
    es = np.mean(["frame01" not in names[i] for i in chosen])
    assert es > np.mean(["frame01" not in names[i] for i in with_rv])


def test_transunet_scale_intensity_flips_zooms_and_keeps_labels():
    assert "transunet_scale_intensity" in AUGMENTATIONS
    assert "transunet_scale_intensity" in FLIPS and "transunet_scale_intensity" in SCALED
    rng = np.random.default_rng(0)
    image = rng.random((32, 32)).astype(np.float32)
    label = np.zeros((32, 32), np.uint8)
    label[8:20, 10:16], label[20:26, 4:30] = 1, 2
    areas, changed_intensity = set(), 0
    for seed in range(24):
        img, lab = augment_pair(image, label, np.random.default_rng(seed),
                                "transunet_scale_intensity")
        assert img.shape == image.shape and set(np.unique(lab)) <= {0, 1, 2}
        assert 0.0 <= img.min() and img.max() <= 1.0
        areas.add(int((lab == 1).sum()))
        changed_intensity += not np.allclose(np.sort(img.ravel()), np.sort(image.ravel()),
                                             atol=1e-3)
    assert len(areas) > 3  # zooms change the area (rot90/flip alone would not)
    assert changed_intensity > 5
    again = augment_pair(image, label, np.random.default_rng(3), "transunet_scale_intensity")
    first = augment_pair(image, label, np.random.default_rng(3), "transunet_scale_intensity")
    np.testing.assert_array_equal(again[0], first[0])  # reproducible from the seed


def test_train_oversample_small_records_its_epoch(tmp_path, capsys):
    args = ["train", "--tiny", "--data", "phantom:1", "--phantom-shape", "8", "48", "48",
            "--input-size", "48", "48", "--epochs", "1", "--max-steps", "1", "--device", "cpu",
            "--augment", "transunet_scale_intensity", "--out-dir", str(tmp_path / "run")]
    assert main([*args, "--oversample-small", "0.5"]) == 0
    err = capsys.readouterr().err
    _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    record = meta["training"]["oversample_small"]
    assert record["share"] == 0.5 and record["distinct_slices"] == 8
    assert record["samples_per_epoch"] == 12
    assert meta["training"]["train_slices"] == 12
    assert "on 12 slices" in err
    assert meta["training"]["config"]["augment"] == "transunet_scale_intensity"


def test_train_oversample_small_refuses_a_bad_share(tmp_path, capsys):
    assert main(["train", "--tiny", "--data", "phantom:1", "--oversample-small", "-1",
                 "--out-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--oversample-small -1" in err[0]
    assert not (tmp_path / "run").exists()
