"""``l2gnet finetune`` stopped by SIGTERM (what Slurm sends; Ctrl-C goes the same way) keeps the
best model so far, as Stop does in the panel, and ``--resume`` finishes the run (issue 28
item 11). A real process, a real signal, a tiny model and a tiny NIfTI folder."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from src_model import build_model, load_checkpoint, read_metadata, save_checkpoint
from src_model.testing import tiny_config
from tests.helpers import CLI, REPO, cli_env
from training.cli import main


def _data(root: Path) -> Path:
    """imagesTr/labelsTr with one 32 x 32 x 6 volume whose slices 1 and 4 are corrected."""
    rng = np.random.default_rng(0)
    image = rng.random((32, 32, 6)).astype(np.float32)
    labels = np.zeros((32, 32, 6), np.uint8)
    for k in (1, 4):
        labels[8:20, 10:24, k] = 1
        labels[22:28, 4:12, k] = 2
        image[..., k] += labels[..., k] * 0.5
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), str(root / "imagesTr" / "c_0000.nii.gz"))
    nib.save(nib.Nifti1Image(labels, affine), str(root / "labelsTr" / "c.nii.gz"))
    return root


@pytest.fixture
def start(tmp_path) -> Path:
    torch.manual_seed(0)
    model = build_model("unet", 3, **tiny_config("unet"))
    return save_checkpoint(tmp_path / "start.safetensors", model,
                           {"input_size": [32, 32], "normalization": {"kind": "none"},
                            "class_names": ["background", "a", "b"]})


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_sigterm_keeps_the_best_model_and_resume_finishes(tmp_path, start, capsys):
    data = _data(tmp_path / "data")
    out = tmp_path / "run"
    argv = ["finetune", "--from", str(start), "--data", str(data), "--out-dir", str(out),
            "--device", "cpu", "--threads", "1", "--epochs", "200", "--batch-size", "4"]
    proc = subprocess.Popen([*CLI, *argv], cwd=REPO, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240  # a guard against a hang, not a speed assertion
        while not (out / "best.safetensors").is_file() and proc.poll() is None:
            assert time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("l2gnet finetune: stopped by SIGTERM")
    assert "--resume" in last_line and "finetuned.safetensors" in last_line
    chosen = out / "finetuned.safetensors"
    load_checkpoint(chosen)  # a whole, loadable model
    report = json.loads((out / "finetune.json").read_text())
    assert report["stopped"] is True
    done_at_stop = read_metadata(out / "last.safetensors")["training"]["epochs_done"]
    assert 1 <= done_at_stop < 200
    assert json.loads(stdout.strip().splitlines()[-1])["epoch"] == done_at_stop

    # Without --resume the folder is not reused; with it the run goes on to its end.
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    epochs = done_at_stop + 1
    resumed = [*argv[:-4], "--epochs", str(epochs), "--batch-size", "4", "--resume"]
    assert main(resumed) == 0
    assert read_metadata(out / "last.safetensors")["training"]["epochs_done"] == epochs
    report = json.loads((out / "finetune.json").read_text())
    assert report["stopped"] is False
    assert [r["epoch"] for r in report["history"]] == list(range(epochs + 1))
