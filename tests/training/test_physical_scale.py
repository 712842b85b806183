"""Physical scale (``training.data.physical_scale``): slices go to the model at the checkpoint's
pixel size and come back on their own grid; checkpoints without a target pixel size, and
volumes without a voxel size, are segmented exactly as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src_model import CheckpointMeta, build_model, load_checkpoint, save_checkpoint
from src_model.checkpoint_meta import CheckpointError
from src_model.testing import tiny_config
from training.data.physical_scale import (
    fill_spacing,
    in_plane_spacing,
    median_spacing,
    plan_geometry,
    resample,
)
from training.inference import predict_volume

NUM_CLASSES = 3


def _disk_scene(pixel_mm: float, fov_mm: float = 240.0) -> np.ndarray:
    """One slice of a 60 mm-wide bright disk in a ``fov_mm`` field of view."""
    n = int(round(fov_mm / pixel_mm))
    yy, xx = (np.mgrid[:n, :n] + 0.5) * pixel_mm - fov_mm / 2
    return (np.hypot(yy, xx) < 30.0).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("l2gnet", NUM_CLASSES, **tiny_config("l2gnet")).eval()


def test_small_slice_is_padded_into_one_window_on_the_stride_grid():
    geo = plan_geometry((101, 122), (3.0, 3.0), (3.0, 3.0), (224, 224), 16)
    assert geo.resampled == (101, 122)
    assert geo.canvas == (224, 224) and geo.tiles == ((0, 0),)
    assert all(o % 16 == 0 for o in geo.offset)
    # the slice sits inside the canvas, roughly centred
    assert all(0 <= o <= c - r for o, c, r in zip(geo.offset, geo.canvas, geo.resampled,
                                                  strict=True))


def test_large_slice_is_covered_by_overlapping_windows():
    geo = plan_geometry((512, 512), (0.5, 0.5), (1.0, 1.0), (96, 96), 16)
    assert geo.resampled == (256, 256)
    assert geo.canvas == (256, 256)
    covered = np.zeros(geo.canvas, int)
    for y, x in geo.tiles:
        assert y % 16 == 0 and x % 16 == 0
        covered[y:y + 96, x:x + 96] += 1
    assert covered.min() >= 1 and len(geo.tiles) > 4


def test_a_structure_has_the_same_size_in_pixels_whatever_the_pixel_size():
    """The same 60 mm disk scanned at 1 mm and at 2 mm reaches the model the same size."""
    sizes = []
    for pixel in (1.0, 2.0):
        image = _disk_scene(pixel)
        geo = plan_geometry(image.shape, (pixel, pixel), (1.5, 1.5), (224, 224), 16)
        canvas = geo.to_canvas(torch.from_numpy(image)[None, None])[0, 0].numpy()
        sizes.append(float((canvas > 0.5).sum()))
    assert sizes[0] == pytest.approx(sizes[1], rel=0.05)
    assert sizes[0] == pytest.approx(np.pi * (30 / 1.5) ** 2, rel=0.1)


@pytest.mark.parametrize("shape,pixel,inp", [((101, 122), 3.0, (224, 224)),
                                             ((200, 180), 0.8, (64, 64))])
def test_round_trip_through_the_windows_returns_the_slice(shape, pixel, inp):
    """Resample -> canvas -> windows -> stitch -> resample back is the identity on a smooth
    image (what an identity model would return)."""
    yy, xx = np.mgrid[:shape[0], :shape[1]] / max(shape)
    image = (0.5 + 0.4 * np.sin(3 * yy) * np.cos(2 * xx)).astype(np.float32)
    geo = plan_geometry(shape, (pixel, pixel), (1.5, 1.5), inp, 16)
    x = torch.from_numpy(image)[None, None]
    back = geo.stitch(geo.windows(geo.to_canvas(x)))
    assert tuple(back.shape[-2:]) == geo.resampled
    back = resample(back, shape)[0, 0].numpy()
    np.testing.assert_allclose(back, image, atol=0.03)


def test_spacing_arguments():
    assert in_plane_spacing((2.0, 0.8, 0.9), axis=0) == (0.8, 0.9)
    assert in_plane_spacing((2.0, 0.8, 0.9), axis=2) == (2.0, 0.8)
    assert in_plane_spacing((0.8, 0.9)) == (0.8, 0.9)
    assert in_plane_spacing(None) is None and in_plane_spacing((1.0, 0.0, 1.0)) is None
    assert median_spacing([(1.0, 1.0), None, (3.0, 2.0), (2.0, 2.0)]) == (2.0, 2.0)
    assert median_spacing([None]) is None


def test_fill_spacing_makes_the_median_field_of_view_fill_the_input():
    # a 3 mm CT of 122 x 101 pixels (366 mm wide): 366 / 224 mm fills a 224 input
    assert fill_spacing([(30, 101, 122)], [(3.0, 3.0)], (224, 224)) == (1.63, 1.63)
    # a 0.8 mm scan of 512 pixels is coarsened so that its 410 mm fit
    assert fill_spacing([(512, 512)], [(0.8, 0.8)], (224, 224)) == (1.83, 1.83)
    # the median field of view; slices without a pixel size do not count
    shapes = [(100, 100), (200, 200), (300, 300), (50, 50)]
    assert fill_spacing(shapes, [(1.0, 1.0)] * 3 + [None], (100, 100)) == (2.0, 2.0)
    assert fill_spacing([(10, 10)], [None], (224, 224)) is None
    # fitted, the median scan spans the input along its longer side
    size = plan_geometry((101, 122), (3.0, 3.0), (1.63, 1.63), (224, 224), 32).resampled
    assert max(size) == 225 and size[0] < 224


def test_target_spacing_is_checked_and_kept_in_the_metadata(model, tmp_path):
    base = {"class_names": ["background", "a", "b"], "input_size": [32, 32]}
    path = save_checkpoint(tmp_path / "m.safetensors", model,
                           {**base, "target_spacing_mm": [1.5, 1.25]})
    _, meta = load_checkpoint(path)
    assert meta.target_spacing_mm == (1.5, 1.25)
    assert meta["target_spacing_mm"] == [1.5, 1.25]
    old = save_checkpoint(tmp_path / "old.safetensors", model, base)
    assert load_checkpoint(old)[1].target_spacing_mm is None
    assert "target_spacing_mm" not in load_checkpoint(old)[1].to_dict()
    for bad in ([1.5], [0, 1], [1.5, "x"], [1e9, 1]):
        raw = load_checkpoint(path)[1].to_dict()
        raw["target_spacing_mm"] = bad
        with pytest.raises(CheckpointError, match="target_spacing_mm"):
            CheckpointMeta.from_dict(raw)


def test_old_checkpoints_give_identical_labels_with_or_without_a_spacing(model, tmp_path):
    vol = np.random.default_rng(0).random((3, 40, 52)).astype(np.float32)
    meta = {"class_names": ["background", "a", "b"], "input_size": [32, 32]}
    path = save_checkpoint(tmp_path / "old.safetensors", model, meta)
    plain = predict_volume(vol, str(path), device="cpu", return_probabilities=True)
    with_spacing = predict_volume(vol, str(path), device="cpu", spacing=(3.0, 0.7, 0.7),
                                  return_probabilities=True)
    np.testing.assert_array_equal(plain.labels, with_spacing.labels)
    np.testing.assert_array_equal(plain.probabilities, with_spacing.probabilities)
    # the same computation as before this feature: bicubic resize to the input, and back
    x = torch.nn.functional.interpolate(torch.from_numpy(vol)[:, None], size=(32, 32),
                                        mode="bicubic", align_corners=False)
    with torch.no_grad():
        logits = model(x.expand(-1, 3, -1, -1)).logits
    logits = torch.nn.functional.interpolate(logits, size=(40, 52), mode="bilinear",
                                             align_corners=False)
    np.testing.assert_array_equal(plain.labels, logits.argmax(1).numpy())
    # a checkpoint with a target pixel size but a volume without a voxel size: the same
    target = save_checkpoint(tmp_path / "t.safetensors", model,
                             {**meta, "target_spacing_mm": [1.0, 1.0]})
    np.testing.assert_array_equal(predict_volume(vol, str(target), device="cpu").labels,
                                  plain.labels)


def test_physical_path_returns_labels_and_explanations_on_the_input_grid(model, tmp_path):
    vol = np.random.default_rng(1).random((2, 90, 70)).astype(np.float32)
    path = save_checkpoint(tmp_path / "t.safetensors", model,
                           {"class_names": ["background", "a", "b"], "input_size": [32, 32],
                            "target_spacing_mm": [1.0, 1.0]})
    pred = predict_volume(vol, str(path), device="cpu", spacing=(5.0, 0.5, 0.5),
                          explain=True, return_probabilities=True, batch_size=1)
    assert pred.labels.shape == vol.shape
    assert pred.probabilities.shape == (NUM_CLASSES, *vol.shape)
    # 90 x 70 px at 0.5 mm -> 45 x 35 px at 1 mm: 3 x 3 cells of 16 px, each 32 slice px
    assert pred.explanation.codes.shape == (2, 3, 3)
    assert pred.explanation.grid_scale == pytest.approx((32.0, 32.0))
    assert pred.explanation.plans.shape[:2] == (2, 2) and pred.explanation.plans.shape[2:4] \
        == (3, 3)
    other = predict_volume(vol, str(path), device="cpu", spacing=(5.0, 0.25, 0.25),
                           return_probabilities=True)
    assert not np.array_equal(other.probabilities, pred.probabilities)  # the size is used
