"""``FitProcess``: fit in a spawned process, events on a queue, stop between steps, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from src_model import build_model, load_checkpoint, save_checkpoint
from src_model.testing import tiny_config
from training.background import FitJob, FitProcess, slices_as_case
from training.data import Slice
from training.fit import TrainConfig


@pytest.fixture
def checkpoint(tmp_path):
    model = build_model("l2gnet", 3, **tiny_config("l2gnet"))
    meta = {"class_names": ["background", "a", "b"], "input_size": [32, 32],
            "normalization": {"kind": "none"}}
    return str(save_checkpoint(tmp_path / "start.safetensors", model, meta))


def _slices(n: int = 8, high: int = 3, seed: int = 0) -> list[Slice]:
    rng = np.random.default_rng(seed)
    return [Slice(rng.random((32, 32), dtype=np.float32),
                  rng.integers(0, high, (32, 32)).astype(np.uint8), f"s{i}") for i in range(n)]


def _config(tmp_path, **kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=4, input_size=(32, 32), device="cpu", amp=False,
                out_dir=str(tmp_path / "run"), optimizer="adamw", lr=1e-3)
    base.update(kw)
    return TrainConfig(**base)


def _collect(proc: FitProcess, timeout: float = 60.0) -> list:
    events, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += proc.poll()
        if proc.finished:
            return events + proc.poll()
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"fit process did not finish in {timeout} s; events: {events}")


def test_fit_process_runs_and_reports(tmp_path, checkpoint) -> None:
    slices = _slices()
    job = FitJob(checkpoint, slices, _config(tmp_path), val_cases=[slices_as_case(slices)],
                 metadata={"note": "finetuned"}, threads=1)
    proc = FitProcess(job)
    assert proc.poll() == [] and not proc.is_alive()
    proc.start()
    events = _collect(proc)
    assert proc.error is None, proc.error
    kinds = [e.kind for e in events]
    assert kinds.count("step") == 4 and kinds.count("epoch") == 2 and kinds[-1] == "done"
    steps = [e for e in events if e.kind == "step"]
    assert all(np.isfinite(e.loss) for e in steps)
    assert [e.step for e in steps] == [1, 2, 3, 4]
    epochs = [e for e in events if e.kind == "epoch"]
    assert all(e.val_dice is not None and "mean" in e.val_dice for e in epochs)
    assert proc.result is not None and not proc.result.stopped
    model, meta = load_checkpoint(proc.result.last_checkpoint)
    assert model.num_classes == 3 and meta["note"] == "finetuned"
    assert meta["training"]["epochs_done"] == 2
    assert proc.result.best_checkpoint is not None
    load_checkpoint(proc.result.best_checkpoint)
    assert proc.child_gui_modules == []  # the child imported no napari/Qt
    assert not proc.is_alive()


def test_stop_after_first_step_leaves_a_valid_checkpoint(tmp_path, checkpoint) -> None:
    job = FitJob(checkpoint, _slices(16), _config(tmp_path, epochs=50), threads=1)
    proc = FitProcess(job)
    proc.start()
    events, deadline = [], time.monotonic() + 60
    while not any(e.kind == "step" for e in events):
        assert time.monotonic() < deadline and proc.error is None, proc.error
        events += proc.poll()
        time.sleep(0.02)
    proc.stop()
    assert proc.stop_requested
    assert proc.join(60)
    events += proc.poll()
    assert proc.error is None, proc.error
    assert events[-1].kind == "stopped"
    assert events[-1].step < 4 * 50
    assert proc.result is not None and proc.result.stopped
    model, _ = load_checkpoint(proc.result.last_checkpoint)
    assert model.num_classes == 3


def test_failing_job_reports_the_cause(tmp_path, checkpoint) -> None:
    job = FitJob(checkpoint, _slices(4, high=8), _config(tmp_path), threads=1)
    proc = FitProcess(job)
    proc.start()
    assert proc.join(60)
    assert proc.result is None
    assert proc.error is not None
    assert "does not fit a model with 3 classes" in proc.error
    assert "Traceback" not in proc.error and "\n" not in proc.error  # one line for the user


def test_kill_reports_an_error(tmp_path, checkpoint) -> None:
    job = FitJob(checkpoint, _slices(), _config(tmp_path, epochs=1000), threads=1)
    proc = FitProcess(job)
    proc.start()
    proc.kill()
    assert not proc.is_alive()
    assert proc.result is None and "killed" in proc.error


def test_job_needs_slices(tmp_path, checkpoint) -> None:
    with pytest.raises(ValueError, match="at least one annotated slice"):
        FitJob(checkpoint, [], _config(tmp_path))
    with pytest.raises(ValueError, match="different shapes"):
        slices_as_case(_slices(1) + [Slice(np.zeros((8, 8), np.float32),
                                           np.zeros((8, 8), np.uint8))])


def test_nan_image_is_a_one_line_error(tmp_path, checkpoint) -> None:
    """A NaN voxel in the slices to fine-tune on: refused before training, in one line (the
    Fine-tune widget shows it), no traceback and no checkpoint written."""
    slices = _slices(4)
    slices[1].image[4, 4] = np.nan
    proc = FitProcess(FitJob(checkpoint, slices, _config(tmp_path), threads=1))
    proc.start()
    assert proc.join(60)
    assert proc.result is None
    assert proc.error == ("The image of s1 has 1 NaN or infinite voxel(s): replace them (e.g. "
                          "with the background intensity) or leave that slice out, then train "
                          "again")
    assert not (tmp_path / "run").exists()
