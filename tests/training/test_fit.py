"""``fit`` on tiny phantom slices: the loss goes down, checkpoints load with their metadata,
events arrive in order, stopping and resuming work, bad labels and configs are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from src_model import build_model, load_checkpoint
from src_model.testing import tiny_config
from training.data import Slice, cases_to_slices, read_phantom_cases
from training.data.normalization import CT_WINDOW
from training.data.phantom import SYNAPSE_CLASSES
from training.fitting.losses import LossConfig
from training.fitting.one_call import FitResult, TrainConfig, TrainEvent, fit

SHAPE = (8, 48, 48)


def _tiny(num_classes: int = 9):
    torch.manual_seed(0)
    return build_model("l2gnet", num_classes, **tiny_config("l2gnet"))


def _config(out_dir: Path, **kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=4, lr=3e-3, optimizer="adamw", input_size=(48, 48),
                augment="none", device="cpu", out_dir=str(out_dir))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def phantom_data():
    train = cases_to_slices(read_phantom_cases([1, 2], CT_WINDOW, shape=SHAPE),
                            only_labelled=True)
    val = read_phantom_cases([3], CT_WINDOW, shape=SHAPE)
    return train, val


@pytest.fixture(scope="module")
def trained(phantom_data, tmp_path_factory):
    """One short run shared by several tests: 3 epochs x 4 steps, validation at the end."""
    train, val = phantom_data
    out = tmp_path_factory.mktemp("fit")
    events: list[TrainEvent] = []
    meta = {"class_names": list(SYNAPSE_CLASSES), "normalization": CT_WINDOW.to_metadata()}
    result = fit(_tiny(), train, val, _config(out, validate_every=3), metadata=meta,
                 callback=events.append)
    return result, events, out


def test_training_reduces_the_loss(trained):
    _, events, _ = trained
    losses = [e.loss for e in events if e.kind == "step"]
    assert len(losses) == 12
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1


def test_events_sequence(trained):
    result, events, _ = trained
    kinds = [e.kind for e in events]
    assert kinds == (["step"] * 4 + ["epoch"]) * 3 + ["done"]
    steps = [e.step for e in events if e.kind == "step"]
    assert steps == list(range(1, 13))
    assert all(e.total_steps == 12 for e in events)
    assert [e.epoch for e in events if e.kind == "step"] == [0] * 4 + [1] * 4 + [2] * 4
    assert [e.epoch for e in events if e.kind == "epoch"] == [1, 2, 3]
    assert events[-1].epoch == 3 and events[-1].step == 12
    assert events[-1].checkpoint == result.last_checkpoint
    step = events[0]
    assert step.lr == pytest.approx(3e-3) and step.parts  # poly decay starts at lr
    lrs = [e.lr for e in events if e.kind == "step"]
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))  # decays
    # Validation only every 3 epochs (and at the end): Dice per class and a mean.
    vals = [e.val_dice for e in events if e.kind == "epoch"]
    assert vals[0] is None and vals[1] is None
    assert set(vals[2]) == set(SYNAPSE_CLASSES[1:]) | {"mean"}
    assert 0.0 <= vals[2]["mean"] <= 1.0


def test_checkpoints_load_with_metadata(trained):
    result, _, out = trained
    assert isinstance(result, FitResult) and not result.stopped
    assert Path(result.last_checkpoint) == out / "last.safetensors"
    assert Path(result.best_checkpoint) == out / "best.safetensors"
    assert (out / "run_state.safetensors").is_file()
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    for path in (result.last_checkpoint, result.best_checkpoint):
        model, meta = load_checkpoint(path)
        assert model.num_classes == 9
        assert meta["class_names"] == list(SYNAPSE_CLASSES)
        assert meta["input_size"] == [48, 48]
        assert meta["normalization"] == CT_WINDOW.to_metadata()  # caller's metadata kept
        assert meta["training"]["epochs_done"] == 3
        assert meta["training"]["steps"] == 12
        assert meta["training"]["train_slices"] == 16
        assert meta["training"]["config"]["optimizer"] == "adamw"
    # The saved weights are the trained ones: they differ from a fresh model's.
    fresh = _tiny().state_dict()
    model, _ = load_checkpoint(result.last_checkpoint)
    assert any(not torch.equal(fresh[k], v) for k, v in model.state_dict().items())


def _small_slices(n_slices: int = 8) -> list[Slice]:
    cases = read_phantom_cases([5], CT_WINDOW, shape=(n_slices, 32, 32))
    return cases_to_slices(cases, only_labelled=True)


def test_should_stop_leaves_a_loadable_checkpoint(tmp_path):
    slices = _small_slices()
    events: list[TrainEvent] = []
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3  # three steps, then stop

    result = fit(_tiny(), slices, [], _config(tmp_path, epochs=5, input_size=(32, 32)),
                 callback=events.append, should_stop=stop)
    assert result.stopped
    assert [e.kind for e in events] == ["step", "step", "epoch", "step", "stopped"]
    assert events[-1].step == 3 and events[-1].epoch == 1
    assert result.best_checkpoint is None  # never validated
    model, meta = load_checkpoint(result.last_checkpoint)
    assert meta["training"]["steps"] == 3 and meta["training"]["epochs_done"] == 1
    assert model.num_classes == 9


def test_max_steps_caps_the_run(tmp_path):
    events: list[TrainEvent] = []
    result = fit(_tiny(), _small_slices(), [],
                 _config(tmp_path, epochs=10, input_size=(32, 32), max_steps=3),
                 callback=events.append)
    assert not result.stopped
    assert [e.step for e in events if e.kind == "step"] == [1, 2, 3]
    assert events[-1].kind == "done" and events[-1].total_steps == 3


def test_loader_workers_give_the_same_run(tmp_path):
    """Augmentation is seeded per (seed, epoch, index): worker processes change nothing."""
    runs = []
    for workers in (0, 2):
        events: list[TrainEvent] = []
        fit(_tiny(), _small_slices(), [],
            _config(tmp_path / str(workers), epochs=2, input_size=(32, 32), augment="transunet",
                    num_workers=workers), callback=events.append)
        runs.append([e.loss for e in events if e.kind == "step"])
    assert len(runs[0]) == 4
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-5)


def test_resume_continues_the_step_counter(tmp_path):
    slices = _small_slices()  # 2 steps per epoch at batch 4
    first: list[TrainEvent] = []
    fit(_tiny(), slices, [], _config(tmp_path, epochs=1, input_size=(32, 32)),
        callback=first.append)
    assert [e.step for e in first if e.kind == "step"] == [1, 2]
    last = tmp_path / "last.safetensors"
    trained_once, _ = load_checkpoint(last)

    second: list[TrainEvent] = []
    model = _tiny()
    result = fit(model, slices, [], _config(tmp_path, epochs=2, input_size=(32, 32),
                                            resume=True), callback=second.append)
    assert [e.step for e in second if e.kind == "step"] == [3, 4]
    assert [e.epoch for e in second if e.kind == "epoch"] == [2]
    assert [h["epoch"] for h in result.history] == [1, 2]  # history carried over
    _, meta = load_checkpoint(result.last_checkpoint)
    assert meta["training"]["steps"] == 4 and meta["training"]["epochs_done"] == 2
    # The second run started from the first run's weights, not from the fresh model.
    first_step = next(e for e in second if e.kind == "step")
    fresh_loss = next(e for e in first if e.kind == "step").loss
    assert first_step.loss < fresh_loss
    assert trained_once.num_classes == model.num_classes


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    events: list[TrainEvent] = []
    fit(_tiny(), _small_slices(), [],
        _config(tmp_path, epochs=1, input_size=(32, 32), resume=True), callback=events.append)
    assert [e.step for e in events if e.kind == "step"] == [1, 2]


def test_fit_from_checkpoint_inherits_metadata(tmp_path):
    fit(_tiny(), _small_slices(), [], _config(tmp_path / "a", epochs=1, input_size=(32, 32)),
        metadata={"class_names": list(SYNAPSE_CLASSES), "normalization": {"kind": "none"}})
    result = fit(str(tmp_path / "a" / "last.safetensors"), _small_slices(), [],
                 _config(tmp_path / "b", epochs=1, input_size=(32, 32), max_steps=1))
    _, meta = load_checkpoint(result.last_checkpoint)
    assert meta["class_names"] == list(SYNAPSE_CLASSES)
    assert meta["normalization"] == {"kind": "none"}


def test_labels_beyond_num_classes_raise(tmp_path):
    label = np.zeros((32, 32), np.uint8)
    label[3, 3] = 5
    bad = [Slice(np.zeros((32, 32), np.float32), label, "case7:12")]
    with pytest.raises(ValueError, match=r"label 5 in case7:12 .* 4 classes \(0\.\.3\)"):
        fit(_tiny(4), bad, [], _config(tmp_path, input_size=(32, 32)))
    assert not (tmp_path / "last.safetensors").exists()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(optimizer="adam"), "optimizer must be 'sgd' or 'adamw'"),
        (dict(epochs=0), "epochs and batch_size must be >= 1"),
        (dict(batch_size=0), "epochs and batch_size must be >= 1"),
        (dict(lr=0.0), "lr > 0"),
        (dict(augment="elastic"), "augment must be one of"),
        (dict(num_workers=-1), "num_workers must be >= 0"),
    ],
)
def test_train_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_train_config_normalises_fields():
    cfg = TrainConfig(input_size=[64.0, 32], loss={"spectral_weight": 0.5})
    assert cfg.input_size == (64, 32)
    assert isinstance(cfg.loss, LossConfig) and cfg.loss.spectral_weight == 0.5
    assert TrainConfig().optimizer == "sgd" and TrainConfig().lr == 0.01
