"""CUDA paths that CPU CI cannot reach: AMP inference and training, out-of-memory halving and
the CPU fallback. Skipped without a GPU; ``benchmarks/gpu_session.sh`` runs them on one."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from src_model import build_model
from src_model.testing import tiny_config
from training.data import cases_to_slices, read_phantom_cases
from training.data.normalization import CT_WINDOW
from training.fitting.one_call import TrainConfig, fit
from training.inference import predict_volume

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
NONE = {"normalization": {"kind": "none"}}


def _model(num_classes: int = 4):
    torch.manual_seed(0)
    return build_model("l2gnet", num_classes, **tiny_config("l2gnet")).eval()


def test_amp_inference_agrees_with_fp32():
    vol = np.random.default_rng(0).random((6, 64, 64)).astype(np.float32)
    model = _model()
    amp = predict_volume(vol, model, device="cuda", amp=True, metadata=NONE, explain=True,
                         return_probabilities=True)
    fp32 = predict_volume(vol, model, device="cuda", amp=False, metadata=NONE,
                          return_probabilities=True)
    assert amp.device.startswith("cuda")
    assert np.isfinite(amp.probabilities.astype(np.float32)).all()
    assert np.abs(amp.probabilities.astype(np.float32)
                  - fp32.probabilities.astype(np.float32)).max() < 0.05
    assert (amp.labels == fp32.labels).mean() > 0.99
    assert np.isfinite(amp.explanation.plans.astype(np.float32)).all()


def test_out_of_memory_halves_the_batch_and_keeps_the_result():
    """A batch far beyond GPU memory (256 slices at 4096 x 4096: the stem's output alone is
    137 GB in fp16): the real allocator fails and the batch is halved until it fits."""
    vol = np.random.default_rng(1).random((256, 32, 32)).astype(np.float32)
    model = _model()
    size = (4096, 4096)
    reference = predict_volume(vol[:8], model, device="cuda", metadata=NONE, batch_size=8,
                               input_size=size)
    with pytest.warns(UserWarning, match="retrying with batch size"):
        pred = predict_volume(vol, model, device="cuda", metadata=NONE, batch_size=256,
                              input_size=size)
    assert pred.device.startswith("cuda") and pred.batch_size < 256
    np.testing.assert_array_equal(pred.labels[:8], reference.labels)


def test_out_of_memory_at_batch_one_falls_back_to_cpu():
    vol = np.random.default_rng(2).random((3, 64, 64)).astype(np.float32)
    model = _model().cuda()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()  # no free cached blocks: every new activation needs a new one
    total = torch.cuda.get_device_properties(0).total_memory
    allowed = (torch.cuda.memory_reserved() + 1) / total  # nothing more may be allocated
    torch.cuda.set_per_process_memory_fraction(allowed)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = predict_volume(vol, model, device="cuda", metadata=NONE, batch_size=2,
                                  input_size=(512, 512))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert pred.device == "cpu"
    assert any("continuing on the CPU" in str(w.message) for w in caught)
    cpu = predict_volume(vol, _model(), device="cpu", metadata=NONE, input_size=(512, 512))
    assert (pred.labels == cpu.labels).mean() > 0.99


def test_fit_with_amp_on_cuda_learns(tmp_path):
    train = cases_to_slices(read_phantom_cases([1, 2], CT_WINDOW, shape=(8, 48, 48)),
                            only_labelled=True)
    events = []
    cfg = TrainConfig(epochs=4, batch_size=4, lr=3e-3, optimizer="adamw", input_size=(48, 48),
                      augment="none", device="cuda", amp=True, out_dir=str(tmp_path))
    fit(_model(9).train(), train, [], cfg, callback=events.append)
    losses = [e.loss for e in events if e.kind == "step"]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
