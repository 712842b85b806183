"""``predict_volume`` / ``iter_predict_volume`` with a tiny model on CPU: shapes on every axis,
probabilities, explanations, progress and cancel, checkpoints and their normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src_model import build_model, save_checkpoint
from src_model.testing import tiny_config
from training.data.normalization import CT_WINDOW, normalize
from training.inference import (
    Explanation,
    PredictionCancelled,
    VolumePrediction,
    iter_predict_volume,
    predict_volume,
)

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("l2gnet", NUM_CLASSES, **tiny_config("l2gnet")).eval()


@pytest.fixture
def volume():
    return np.random.default_rng(0).random((5, 20, 28)).astype(np.float32)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_labels_have_the_volume_shape_on_every_axis(model, volume, axis):
    pred = predict_volume(volume, model, axis=axis, device="cpu", input_size=(32, 32),
                          batch_size=16)
    assert isinstance(pred, VolumePrediction)
    assert pred.labels.shape == volume.shape
    assert pred.labels.dtype == np.uint8
    assert pred.labels.max() < NUM_CLASSES
    assert pred.axis == axis % 3
    assert pred.device == "cpu"
    assert pred.probabilities is None and pred.explanation is None


def test_axis_moves_the_slices(model, volume):
    """Predicting along axis 2 equals predicting the transposed volume along axis 0."""
    a = predict_volume(volume, model, axis=2, device="cpu", input_size=(32, 32))
    b = predict_volume(np.moveaxis(volume, 2, 0), model, axis=0, device="cpu",
                       input_size=(32, 32))
    np.testing.assert_array_equal(np.moveaxis(a.labels, 2, 0), b.labels)


def test_without_input_size_slice_size_is_fitted_to_stride(model):
    vol = np.random.default_rng(1).random((3, 20, 28)).astype(np.float32)
    pred = predict_volume(vol, model, device="cpu", explain=True)
    assert pred.labels.shape == vol.shape
    # 20x28 is padded up to the next multiple of 16 (32x32): a 2x2 bottleneck grid.
    assert pred.explanation.codes.shape == (3, 2, 2)
    assert pred.explanation.grid_scale == pytest.approx((10.0, 14.0))


def test_probabilities_shape_and_sum(model, volume):
    for axis in (0, 2):
        pred = predict_volume(volume, model, axis=axis, device="cpu", input_size=(32, 32),
                              return_probabilities=True)
        p = pred.probabilities
        assert p.shape == (NUM_CLASSES, *volume.shape)
        assert p.dtype == np.float16
        np.testing.assert_allclose(p.astype(np.float32).sum(0), 1.0, atol=5e-3)
        # The labels are the argmax of the (resized) probabilities, up to float16 ties.
        agree = (p.astype(np.float32).argmax(0) == pred.labels).mean()
        assert agree > 0.99


def test_explanation_shapes(model, volume):
    pred = predict_volume(volume, model, device="cpu", input_size=(32, 48), explain=True,
                          batch_size=2)
    ex = pred.explanation
    assert isinstance(ex, Explanation)
    s, h, w = volume.shape[0], 32 // 16, 48 // 16
    cfg = tiny_config("l2gnet")
    q = cfg["num_refs"]
    assert ex.codes.shape == (s, h, w)
    assert ex.codes.min() >= 0 and ex.codes.max() < cfg["codebook_size"]
    assert ex.plans.ndim == 5 and ex.plans.shape[:4] == (s, q, h, w)
    assert ex.plans.dtype == np.float16
    t = ex.plans.shape[4]
    assert ex.buckets.shape == (s, q, h, w)
    assert ex.buckets.min() >= 0 and ex.buckets.max() < t
    np.testing.assert_array_equal(ex.buckets, ex.plans.astype(np.float32).argmax(-1))
    assert ex.grid_scale == pytest.approx((20 / h, 28 / w))
    # Every batch was filled in, not only the first.
    assert np.abs(ex.plans[-1].astype(np.float32)).sum() > 0


def test_progress_reports_every_batch(model, volume):
    calls = []
    predict_volume(volume, model, device="cpu", input_size=(32, 32), batch_size=2,
                   progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_iter_predict_volume_yields_then_returns(model, volume):
    gen = iter_predict_volume(volume, model, device="cpu", input_size=(32, 32), batch_size=3)
    steps = []
    with pytest.raises(StopIteration) as stop:
        while True:
            steps.append(next(gen))
    assert steps == [(3, 5), (5, 5)]
    assert stop.value.value.labels.shape == volume.shape


def test_cancel_raises_between_batches(model, volume):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1  # let the first batch run

    done = []
    with pytest.raises(PredictionCancelled, match="after 2 of 5"):
        predict_volume(volume, model, device="cpu", input_size=(32, 32), batch_size=2,
                       cancel=cancel, progress=lambda d, t: done.append(d))
    assert done == [2]
    with pytest.raises(PredictionCancelled):
        predict_volume(volume, model, device="cpu", input_size=(32, 32), cancel=lambda: True)


def test_2d_input(model):
    image = np.random.default_rng(2).random((20, 28)).astype(np.float32)
    pred = predict_volume(image, model, device="cpu", input_size=(32, 32),
                          return_probabilities=True)
    assert pred.labels.shape == image.shape
    assert pred.probabilities.shape == (NUM_CLASSES, *image.shape)
    vol = predict_volume(image[None], model, device="cpu", input_size=(32, 32))
    np.testing.assert_array_equal(pred.labels, vol.labels[0])


def test_bad_inputs_raise_clear_errors(model, volume):
    with pytest.raises(ValueError, match=r"3-D volume.*shape \(2, 5, 20, 28\)"):
        predict_volume(np.stack([volume, volume]), model, device="cpu")
    with pytest.raises(ValueError, match="axis must be 0, 1 or 2"):
        predict_volume(volume, model, axis=3, device="cpu")
    with pytest.raises(ValueError, match="empty"):
        predict_volume(np.zeros((0, 20, 28), np.float32), model, device="cpu")
    with pytest.raises(ValueError, match="resize_back"):
        predict_volume(volume, model, device="cpu", resize_back="cubic")
    with pytest.raises(ValueError, match="batch_size"):
        predict_volume(volume, model, device="cpu", batch_size=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_raises(model, volume):
    with pytest.raises(RuntimeError, match="no usable CUDA"):
        predict_volume(volume, model, device="cuda")
    assert predict_volume(volume, model, device="auto", input_size=(32, 32)).device == "cpu"


def test_checkpoint_path_equals_model(model, volume, tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", model,
                           {"input_size": [32, 32], "normalization": {"kind": "none"}})
    from_model = predict_volume(volume, model, device="cpu", input_size=(32, 32),
                                return_probabilities=True)
    from_file = predict_volume(volume, str(path), device="cpu", return_probabilities=True)
    np.testing.assert_array_equal(from_model.labels, from_file.labels)
    np.testing.assert_array_equal(from_model.probabilities, from_file.probabilities)
    assert from_file.metadata["input_size"] == [32, 32]
    assert predict_volume(volume, path, device="cpu").labels.shape == volume.shape  # a Path


def test_checkpoint_normalization_is_applied(model, tmp_path):
    rng = np.random.default_rng(3)
    hu = rng.integers(-400, 600, (4, 32, 32)).astype(np.int16)
    ct = save_checkpoint(tmp_path / "ct.safetensors", model,
                         {"input_size": [32, 32], "normalization": CT_WINDOW.to_metadata()})
    plain = save_checkpoint(tmp_path / "plain.safetensors", model,
                            {"input_size": [32, 32], "normalization": {"kind": "none"}})
    from_hu = predict_volume(hu, ct, device="cpu", return_probabilities=True)
    pre = predict_volume(normalize(hu, CT_WINDOW), plain, device="cpu",
                         return_probabilities=True)
    np.testing.assert_array_equal(from_hu.labels, pre.labels)
    np.testing.assert_array_equal(from_hu.probabilities, pre.probabilities)
    # Without the window the HU volume is clipped to [0, 1]: a different input, other outputs.
    raw = predict_volume(hu, plain, device="cpu", return_probabilities=True)
    assert not np.array_equal(raw.probabilities, from_hu.probabilities)


def test_batch_size_does_not_change_labels(model):
    vol = np.random.default_rng(4).random((7, 32, 32)).astype(np.float32)
    one = predict_volume(vol, model, device="cpu", batch_size=1)
    seven = predict_volume(vol, model, device="cpu", batch_size=7)
    assert one.batch_size == 1 and seven.batch_size == 7
    np.testing.assert_array_equal(one.labels, seven.labels)
    auto = predict_volume(vol, model, device="cpu", batch_size="auto")
    assert auto.batch_size >= 1


@pytest.mark.parametrize("resize_back", ["nearest", "logits"])
def test_resize_back_modes(model, volume, resize_back):
    pred = predict_volume(volume, model, device="cpu", input_size=(32, 32),
                          resize_back=resize_back, return_probabilities=True)
    assert pred.labels.shape == volume.shape and pred.labels.dtype == np.uint8
    assert pred.labels.max() < NUM_CLASSES
    assert pred.probabilities.shape == (NUM_CLASSES, *volume.shape)


def test_resize_back_nearest_is_argmax_then_nearest():
    """'nearest': the argmax at the model's input size, then nearest-neighbour back to the
    slice size; checked against the same steps done by hand (numpy indexing for the nearest
    step) on slices that are resized (20 x 28 -> 32 x 32 -> 20 x 28)."""
    torch.manual_seed(0)
    model = build_model("l2gnet", NUM_CLASSES, **tiny_config("l2gnet")).eval()
    with torch.no_grad():  # an untrained head's bias picks one class everywhere: drop it
        model.head.bias.zero_()
    vol = np.random.default_rng(5).random((3, 20, 28)).astype(np.float32)  # in [0, 1]
    pred = predict_volume(vol, model, device="cpu", input_size=(32, 32), resize_back="nearest")

    x = torch.nn.functional.interpolate(torch.from_numpy(vol)[:, None], size=(32, 32),
                                        mode="bicubic", align_corners=False)
    with torch.no_grad():
        at_input = model(x.repeat(1, 3, 1, 1)).logits.argmax(1).numpy()  # (3, 32, 32)
    rows = np.arange(20) * 32 // 20  # nearest: source index floor(dst * in / out)
    cols = np.arange(28) * 32 // 28
    expected = at_input[:, rows][:, :, cols]
    np.testing.assert_array_equal(pred.labels, expected)
    assert len(np.unique(expected)) > 1  # labels that vary, so the modes can be told apart
    logits_mode = predict_volume(vol, model, device="cpu", input_size=(32, 32))
    assert (logits_mode.labels != expected).any()  # 'logits' resizes first: not the same

    # at the input size there is nothing to resize: both modes give the argmax itself
    same = vol[:, :16, :16].repeat(2, axis=1).repeat(2, axis=2)  # 32 x 32
    a = predict_volume(same, model, device="cpu", resize_back="nearest")
    b = predict_volume(same, model, device="cpu", resize_back="logits")
    np.testing.assert_array_equal(a.labels, b.labels)


def test_model_without_plans_gives_codes_only():
    torch.manual_seed(0)
    unet = build_model("unet", 3, **tiny_config("unet"))
    vol = np.random.default_rng(6).random((2, 32, 32)).astype(np.float32)
    pred = predict_volume(vol, unet, device="cpu", explain=True)
    assert pred.labels.shape == vol.shape
    ex = pred.explanation
    assert ex is not None and ex.plans is None and ex.buckets is None and ex.codes is None


def test_a_model_passed_in_keeps_its_train_mode():
    model = build_model("l2gnet", NUM_CLASSES, **tiny_config("l2gnet")).train()
    predict_volume(np.zeros((2, 32, 32), np.float32), model, device="cpu", batch_size=2,
                   metadata={"normalization": {"kind": "none"}})
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    predict_volume(np.zeros((2, 32, 32), np.float32), model, device="cpu", batch_size=2,
                   metadata={"normalization": {"kind": "none"}})
    assert not model.training


# ---------------------------------------------------------------- the inferer object


def test_slice_inferer_holds_the_settings_and_matches_predict_volume(model, volume):
    from training.inference import InferenceSettings, SliceInferer

    settings = InferenceSettings(axis=1, batch_size=3, device="cpu", input_size=(32, 32),
                                 return_probabilities=True)
    inferer = SliceInferer(model, {"normalization": {"kind": "none"}}, settings)
    seen = []
    a = inferer(volume, progress=lambda done, total: seen.append((done, total)))
    b = predict_volume(volume, model, axis=1, batch_size=3, device="cpu", input_size=(32, 32),
                       return_probabilities=True)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    assert seen[-1] == (volume.shape[1], volume.shape[1]) and a.batch_size == 3
    with pytest.raises(TypeError, match="unknown inference option.*batchsize"):
        predict_volume(volume, model, batchsize=3)
    with pytest.raises(ValueError, match="resize_back"):
        InferenceSettings(resize_back="cubic")


def test_out_of_memory_fallback_halves_the_batch_then_moves_to_the_cpu(model):
    from training.inference import OutOfMemoryFallback

    calls = []

    def step_fitting_two(batch_size, device):
        calls.append(batch_size)
        if batch_size > 2:
            raise torch.cuda.OutOfMemoryError("too big")
        return batch_size

    fallback = OutOfMemoryFallback(model, 8, torch.device("cpu"))
    with pytest.warns(UserWarning, match="retrying with batch size"):
        assert fallback.run(step_fitting_two) == 2
    assert calls == [8, 4, 2] and fallback.batch_size == 2

    def step_fitting_only_the_cpu(batch_size, device):
        if device.type != "cpu":
            raise torch.cuda.OutOfMemoryError("too big")
        return batch_size, device.type

    fallback = OutOfMemoryFallback(model, 1, torch.device("cuda"))
    with pytest.warns(UserWarning, match="continuing on the CPU"):
        assert fallback.run(step_fitting_only_the_cpu) == (1, "cpu")
    assert next(model.parameters()).device.type == "cpu"


def test_non_finite_voxels_are_replaced_with_a_warning():
    """One NaN used to blank its slice (all background, no warning)."""
    from pathlib import Path

    from training.data.phantom import make_phantom

    demo = Path(__file__).parents[2] / "napari_l2gnet/resources/demo_l2gnet.safetensors"
    ph = make_phantom(0, shape=(3, 96, 96))
    volume = ph.image.astype(np.float32)
    clean = predict_volume(volume, str(demo), device="cpu")
    spoiled = volume.copy()
    spoiled[1, 5, 5] = np.nan
    spoiled[2, 0, 0] = -np.inf
    with pytest.warns(UserWarning, match=r"1 NaN, 1 -inf voxel\(s\).*replaced with the lowest "
                      r"finite value -1024"):
        pred = predict_volume(spoiled, str(demo), device="cpu")
    assert len(np.unique(clean.labels[1])) > 3  # organs found in the clean slice
    np.testing.assert_array_equal(pred.labels, clean.labels)  # the corner voxels are air
