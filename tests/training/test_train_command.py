"""``l2gnet train`` as a user runs it twice: an earlier run and the input checkpoint are never
replaced without asking; ``--overwrite`` and ``--resume`` do what they say."""

from __future__ import annotations

from pathlib import Path

from src_model import load_checkpoint
from tests.helpers import TINY_TRAIN as TRAIN
from training.cli import main


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_train_twice_into_one_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out-dir", str(out)]) == 0
    first = _files(out)
    assert {"last.safetensors", "run_state.safetensors"} <= set(first)

    capsys.readouterr()
    assert main([*TRAIN, "--seed", "1", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"l2gnet train: error: {out} already holds a training run (last.safetensors, "
                   "run_state.safetensors): pass --resume to continue it, --overwrite to "
                   "replace it, or choose another --out-dir"]
    assert _files(out) == first

    assert main([*TRAIN, "--epochs", "2", "--resume", "--out-dir", str(out)]) == 0
    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta["training"]["epochs_done"] == 2 and meta["training"]["world_size"] == 1

    assert main([*TRAIN, "--seed", "1", "--overwrite", "--out-dir", str(out)]) == 0
    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta["training"]["epochs_done"] == 1 and meta["training"]["config"]["seed"] == 1


def test_fine_tuning_never_overwrites_its_input(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out-dir", str(out)]) == 0
    last = out / "last.safetensors"
    before = _files(out)
    for flags in ([], ["--overwrite"], ["--resume"]):
        capsys.readouterr()
        assert main(["train", "--from", str(last), *TRAIN[2:], "--out-dir", str(out),
                     *flags]) == 2
        err = capsys.readouterr().err
        assert "would overwrite its own input" in err and "choose another --out-dir" in err
        assert _files(out) == before
    # Into another folder it is an ordinary fine-tuning run.
    assert main(["train", "--from", str(last), *TRAIN[2:], "--out-dir",
                 str(tmp_path / "tuned")]) == 0
    assert _files(out) == before
