"""``torchrun --nproc_per_node 2 -m training.cli train``: DistributedDataParallel on 2 CPU
ranks (gloo), run as a user runs it.

Equivalence: one step with 2 ranks x batch 2 gives the weights of one process with batch 4.
This holds because each rank reads its half of the same seeded permutation, cross-entropy and
the quantiser loss are per-rank means that DDP averages, the Dice sums are all-reduced (the
global batch's Dice), and ``--freeze-bn`` keeps BatchNorm in eval mode: with BatchNorm in
train mode each rank normalises with the statistics of its own 2 samples (standard DDP;
SyncBatchNorm has no CPU implementation), and the weights then differ by up to ~0.1.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from src_model import load_checkpoint
from tests.helpers import REPO, cli_env
from training.cli import main

DATA = ["--tiny", "--data", "phantom:1", "--phantom-shape", "8", "32", "32", "--input-size",
        "32", "32", "--augment", "none", "--device", "cpu"]


def _torchrun(args: list[str], nproc: int = 2, wait: bool = True):
    """``torchrun --standalone --nproc_per_node NPROC -m training.cli train ARGS``."""
    env = cli_env()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "training.cli", "train", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=atol, msg=key)


def test_two_ranks_of_batch_2_step_like_one_process_of_batch_4(tmp_path):
    one_step = [*DATA, "--freeze-bn", "--epochs", "1", "--max-steps", "1"]
    _ok(_torchrun([*one_step, "--batch-size", "2", "--out-dir", str(tmp_path / "ddp")]))
    assert main(["train", *one_step, "--batch-size", "4", "--out-dir",
                 str(tmp_path / "single")]) == 0
    _assert_same_weights(tmp_path / "ddp" / "last.safetensors",
                         tmp_path / "single" / "last.safetensors")
    _, meta = load_checkpoint(tmp_path / "ddp" / "last.safetensors")
    assert meta["training"]["world_size"] == 2 and meta["training"]["steps"] == 1
    assert meta["training"]["global_batch_size"] == 4


def test_sigterm_then_resume_under_ddp_matches_an_uninterrupted_run(tmp_path):
    """SIGTERM to torchrun (what Slurm sends before a kill) once epoch 1 is saved: the ranks
    stop together after a step, and ``--resume`` ends with the uninterrupted run's weights."""
    run = [*DATA, "--data", "phantom:1,2", "--val", "phantom:3", "--batch-size", "2",
           "--epochs", "3"]
    whole = _ok(_torchrun([*run, "--out-dir", str(tmp_path / "whole")]))
    # rank 0 alone prints the history (one line per epoch) and writes the files
    history = [json.loads(line) for line in whole.stdout.splitlines() if line.startswith("{")]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "whole").iterdir()) == [
        "best.safetensors", "last.safetensors", "run_state.safetensors"]

    part = tmp_path / "part"
    proc = _torchrun([*run, "--out-dir", str(part)], wait=False)
    deadline = time.monotonic() + 300
    while not (part / "last.safetensors").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0  # two more epochs take far longer than the signal
    assert "l2gnet train: stopped by SIGTERM; continue with" in err, err[-3000:]
    assert not list(part.glob(".*.tmp"))
    _, meta = load_checkpoint(part / "last.safetensors")
    assert 4 <= meta["training"]["steps"] < 12
    _ok(_torchrun([*run, "--resume", "--out-dir", str(part)]))
    _assert_same_weights(part / "last.safetensors", tmp_path / "whole" / "last.safetensors")
    _assert_same_weights(part / "best.safetensors", tmp_path / "whole" / "best.safetensors")
    _, meta = load_checkpoint(part / "last.safetensors")
    # 16 slices, 8 per rank, batch 2: 4 optimizer steps per rank per epoch
    assert meta["training"]["world_size"] == 2 and meta["training"]["steps"] == 12
    assert meta["training"]["epochs_done"] == 3


def test_every_rank_refuses_an_existing_run_together(tmp_path):
    """Rank 0 checks the folder and tells the others: all exit 2 at once, none waits."""
    out = tmp_path / "run"
    assert main(["train", *DATA, "--epochs", "1", "--max-steps", "1", "--out-dir",
                 str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = _torchrun([*DATA, "--epochs", "1", "--out-dir", str(out)])
    assert proc.returncode != 0
    assert proc.stderr.count("already holds a training run") == 2  # one line per rank
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
