"""``torchrun --nproc_per_node 2 -m training.cli predict FOLDER ...`` (issue 16 item 2): the
scans are split across 2 CPU ranks (gloo), every output is written exactly once and equals the
single-process output, and the failures of both ranks are reported together by rank 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from src_model import build_model, save_checkpoint
from src_model.testing import tiny_config
from tests.helpers import REPO, cli_env
from training.cli import main


def _scan(path: Path, seed: int) -> None:
    data = np.random.default_rng(seed).integers(-200, 300, (24, 20, 3)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([1.2, 1.2, 2.5, 1.0])), str(path))


def test_two_ranks_split_an_odd_number_of_scans(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model("unet", 4, **tiny_config("unet"))
    checkpoint = save_checkpoint(tmp_path / "m.safetensors", model,
                                 {"input_size": [32, 32], "normalization": {"kind": "ct_window"}})
    inputs = tmp_path / "in"
    inputs.mkdir()
    # Sorted: a, b, c, d, e -> rank 0 takes a, c, e and rank 1 takes b, d; b and c are broken,
    # so each rank has one failure to report.
    for seed, name in enumerate(["a", "d", "e"]):
        _scan(inputs / f"{name}.nii.gz", seed)
    (inputs / "b.nii.gz").write_bytes(b"broken")
    (inputs / "c.nii").write_bytes(b"broken too")

    out = tmp_path / "out"
    env = cli_env()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "training.cli", "predict", str(inputs), "--checkpoint", str(checkpoint),
         "--out", str(out), "--device", "cpu"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    # Each rank exits 2; torchrun reports failed workers with its own status (1).
    assert done.returncode != 0
    assert "exitcode  : 2" in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("l2gnet predict:")]
    assert len(errors) == 3, done.stderr[-3000:]  # both ranks' failures, then the summary
    assert "b.nii.gz" in errors[0] and "c.nii" in errors[1]
    assert "2 of 5 scans failed" in errors[2]
    printed = [line for line in done.stdout.splitlines() if line.startswith(str(out))]
    assert printed == [str(out / n) for n in ("a.nii.gz", "d.nii.gz", "e.nii.gz")]
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "d.nii.gz", "e.nii.gz"]

    # The same files as one process writes (the broken scans moved aside).
    single_in, single_out = tmp_path / "single_in", tmp_path / "single_out"
    single_in.mkdir()
    for name in ("a", "d", "e"):
        (single_in / f"{name}.nii.gz").symlink_to(inputs / f"{name}.nii.gz")
    assert main(["predict", str(single_in), "--checkpoint", str(checkpoint), "--out",
                 str(single_out), "--device", "cpu"]) == 0
    for name in ("a", "d", "e"):
        ranked = nib.load(str(out / f"{name}.nii.gz"))
        single = nib.load(str(single_out / f"{name}.nii.gz"))
        np.testing.assert_array_equal(np.asarray(ranked.dataobj), np.asarray(single.dataobj))
        np.testing.assert_array_equal(ranked.affine, single.affine)
