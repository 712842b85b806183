"""``Trainer`` and the run folder: interrupted runs resume exactly, earlier runs and inputs
are never overwritten without asking, bad inputs are refused before any work, and
``prepare_run`` sets a run up for the CLI and the widget alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import src_model.checkpoint
import training.fitting.run_state
from src_model import build_model, load_checkpoint, save_checkpoint
from src_model.testing import tiny_config
from training.data import Slice, cases_to_slices, read_phantom_cases
from training.data.normalization import CT_WINDOW
from training.fitting.one_call import TrainConfig, TrainEvent, fit
from training.fitting.run_setup import prepare_run
from training.fitting.trainer import Trainer


class Killed(BaseException):
    """Stands for a kill: BaseException, so no ``except Exception`` in the code catches it."""


def _tiny(num_classes: int = 9):
    torch.manual_seed(0)
    return build_model("l2gnet", num_classes, **tiny_config("l2gnet"))


def _slices() -> list[Slice]:
    return cases_to_slices(read_phantom_cases([5], CT_WINDOW, shape=(8, 32, 32)), True)


def _val():
    return read_phantom_cases([3], CT_WINDOW, shape=(4, 32, 32))


def _config(out: Path, **kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=4, lr=3e-3, optimizer="adamw", input_size=(32, 32),
                augment="transunet", device="cpu", out_dir=str(out))
    base.update(kw)
    return TrainConfig(**base)


def _saves(monkeypatch, crash_at: int | None) -> list[str]:
    """Count every safetensors write (checkpoints and run state); raise ``Killed`` right after
    the ``crash_at``-th one has written its temporary file, before it is renamed."""
    calls: list[str] = []

    def wrap(real):
        def save_file(tensors, filename, metadata=None):
            calls.append(Path(filename).name)
            real(tensors, filename, metadata=metadata)
            if len(calls) == crash_at:
                raise Killed(filename)
        return save_file

    for module in (src_model.checkpoint, training.fitting.run_state):
        monkeypatch.setattr(module, "save_file", wrap(module.save_file))
    return calls


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], msg=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 2-epoch run (2 steps per epoch, validation each epoch)."""
    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        calls = _saves(mp, None)
        result = fit(_tiny(), _slices(), _val(), _config(out))
    return out, result, len(calls)


def test_an_interrupted_save_resumes_to_the_uninterrupted_weights(reference, tmp_path):
    """A kill inside each write of the run (best, run state, last; each epoch): --resume ends
    with the weights, best checkpoint and history of the run that was never interrupted, and
    the temporaries a kill leaves behind are removed."""
    ref_out, ref, n_saves = reference
    assert n_saves >= 6  # initial state; per epoch: best (epoch 1 at least), state, last
    for crash_at in range(1, n_saves + 1):
        out = tmp_path / f"crash{crash_at}"
        with pytest.MonkeyPatch.context() as mp:
            calls = _saves(mp, crash_at)
            with pytest.raises(Killed):
                fit(_tiny(), _slices(), _val(), _config(out))
        assert not list(out.glob(".*.tmp"))  # the writer removed its own temporary
        # What a real kill leaves: the temporary files of the interrupted writes.
        for name in ("run_state", "last", "best"):
            (out / f".{name}.safetensors.k1ll3d.tmp").write_bytes(b"partial")
        events: list[TrainEvent] = []
        result = fit(_tiny(), _slices(), _val(), _config(out, resume=True),
                     callback=events.append)
        where = f"crash in write {crash_at} ({calls[-1]})"
        assert not list(out.glob(".*.tmp")), where
        _assert_same_weights(out / "last.safetensors", ref_out / "last.safetensors")
        _assert_same_weights(out / "best.safetensors", ref_out / "best.safetensors")
        assert [h["epoch"] for h in result.history] == [1, 2], where
        assert (json.dumps([h["val_dice"] for h in result.history])  # NaN-safe comparison
                == json.dumps([h["val_dice"] for h in ref.history])), where
        _, meta = load_checkpoint(out / "last.safetensors")
        assert meta["training"]["steps"] == 4 and meta["training"]["epochs_done"] == 2


def test_a_stop_mid_epoch_resumes_exactly(reference, tmp_path):
    """Stopped after 3 of 4 steps (inside epoch 2), then resumed: the same weights."""
    ref_out, _, _ = reference
    steps = []
    first = fit(_tiny(), _slices(), _val(), _config(tmp_path),
                should_stop=lambda: len(steps) >= 3, callback=lambda e: steps.append(e.step)
                if e.kind == "step" else None)
    assert first.stopped and steps == [1, 2, 3]
    events: list[TrainEvent] = []
    fit(_tiny(), _slices(), _val(), _config(tmp_path, resume=True), callback=events.append)
    assert [e.step for e in events if e.kind == "step"] == [4]
    _assert_same_weights(tmp_path / "last.safetensors", ref_out / "last.safetensors")


def test_a_run_folder_is_not_replaced_without_overwrite(tmp_path):
    fit(_tiny(), _slices(), [], _config(tmp_path, epochs=1))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(before) == {"last.safetensors", "run_state.safetensors"}
    with pytest.raises(FileExistsError, match=r"already holds a training run .*--resume.*"
                                              r"--overwrite"):
        fit(_tiny(), _slices(), [], _config(tmp_path, epochs=1, seed=1))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # --overwrite replaces it (the old best is gone, not left beside the new run).
    save_checkpoint(tmp_path / "best.safetensors", _tiny(), {})
    fit(_tiny(), _slices(), [], _config(tmp_path, epochs=1, seed=1, overwrite=True))
    assert not (tmp_path / "best.safetensors").exists()
    assert (tmp_path / "last.safetensors").read_bytes() != before["last.safetensors"]


def test_a_run_never_overwrites_its_own_input(tmp_path):
    fit(_tiny(), _slices(), [], _config(tmp_path, epochs=1))
    last = tmp_path / "last.safetensors"
    data = last.read_bytes()
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(ValueError, match="would overwrite its own input"):
            fit(str(last), _slices(), [], _config(tmp_path, epochs=2, **flags))
        assert last.read_bytes() == data


def test_resume_needs_a_run_state(tmp_path):
    save_checkpoint(tmp_path / "last.safetensors", _tiny(), {})
    with pytest.raises(ValueError, match="no run_state.safetensors to resume from"):
        fit(_tiny(), _slices(), [], _config(tmp_path, resume=True))


def test_resume_with_another_model_is_refused(tmp_path):
    fit(_tiny(), _slices(), [], _config(tmp_path, epochs=1))
    with pytest.raises(ValueError, match="written for another model"):
        fit(_tiny(4), [Slice(s.image, np.minimum(s.label, 3), s.source) for s in _slices()],
            [], _config(tmp_path, epochs=2, resume=True))


def test_a_nan_image_is_refused_before_training(tmp_path):
    slices = _slices()
    slices[2].image = slices[2].image.copy()
    slices[2].image[5, 7] = np.nan
    with pytest.raises(ValueError, match=r"^The image of phantom_5:\d+ has 1 NaN or infinite "
                                         r"voxel\(s\): replace them") as err:
        fit(_tiny(), slices, [], _config(tmp_path))
    assert "\n" not in str(err.value)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_trainer_steps_can_be_driven_one_by_one(tmp_path):
    """The named steps are usable on their own (a notebook, a custom loop)."""
    trainer = Trainer(_tiny(), _slices(), _val(), _config(tmp_path, epochs=1))
    trainer.prepare_folder()
    x, y = next(iter(trainer.loader))
    event = trainer.train_step(x, y)
    assert event.kind == "step" and event.step == 1 and np.isfinite(event.loss)
    trainer.progress.epoch = 1
    val = trainer.validate()
    assert set(val) == {"mean"} | {f"class {i}" for i in range(1, 9)}
    trainer.save(val, new_best=True)
    _, meta = load_checkpoint(tmp_path / "best.safetensors")
    assert meta["training"]["steps"] == 1 and meta["training"]["world_size"] == 1


# ---------------------------------------------------------------- prepare_run


def test_prepare_run_from_a_spec_builds_the_model(tmp_path):
    cfg = _config(tmp_path / "run", epochs=1, max_steps=1)
    setup = prepare_run("phantom:1", cfg, model="unet", model_config=tiny_config("unet"),
                        val="phantom:2", phantom_shape=(6, 32, 32))
    assert setup.model_name == "unet" and setup.num_classes == 9
    assert setup.metadata["class_names"][0] == "background"
    assert setup.metadata["normalization"] == CT_WINDOW.to_metadata()
    assert len(setup.val_cases) == 1 and setup.slices
    result = setup.trainer().fit()
    _, meta = load_checkpoint(result.last_checkpoint)
    assert meta["model"]["name"] == "unet" and len(meta["class_colors"]) == 9


def test_prepare_run_from_slices_and_a_checkpoint(tmp_path):
    """What the Fine-tune widget does: its slices, a checkpoint, extra metadata."""
    start = save_checkpoint(tmp_path / "start.safetensors", _tiny(),
                            {"class_names": [f"c{i}" for i in range(9)],
                             "normalization": {"kind": "none"}})
    cfg = _config(tmp_path / "run", epochs=1, max_steps=1)
    setup = prepare_run(_slices(), cfg, checkpoint=start,
                        metadata={"finetuned_from": str(start)})
    assert setup.model == str(start) and setup.num_classes == 9
    assert setup.metadata["class_names"][1] == "c1"
    assert setup.metadata["normalization"]["kind"] == "none"
    result = setup.trainer().fit()
    _, meta = load_checkpoint(result.last_checkpoint)
    assert meta["finetuned_from"] == str(start) and meta["class_names"][1] == "c1"


def test_prepare_run_refuses_before_any_work(tmp_path):
    start = save_checkpoint(tmp_path / "start.safetensors", _tiny(3), {})
    label = np.zeros((32, 32), np.uint8)
    label[3, 3] = 5
    bad = [Slice(np.zeros((32, 32), np.float32), label, "case7:12")]
    with pytest.raises(ValueError, match=r"label 5 in case7:12 does not fit a model with 3 "):
        prepare_run(bad, _config(tmp_path / "a"), checkpoint=start)
    nan = [Slice(np.full((32, 32), np.nan, np.float32), np.zeros((32, 32), np.uint8), "x")]
    with pytest.raises(ValueError, match="The image of x has 1024 NaN"):
        prepare_run(nan, _config(tmp_path / "a"), checkpoint=start)
    with pytest.raises(ValueError, match="would overwrite its own input"):
        prepare_run(nan, _config(tmp_path, overwrite=True),
                    checkpoint=tmp_path / "best.safetensors")
    with pytest.raises(ValueError, match="gives 2 names but the model has 3"):
        prepare_run(_slices(), _config(tmp_path / "b"), checkpoint=start,
                    class_names=["a", "b"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
