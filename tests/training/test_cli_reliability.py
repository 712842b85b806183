"""What ``l2gnet`` refuses and never overwrites (issue 14 items 2, 5, 7, 9, 11), tried as a user
would: point an output at an existing file or a read-only disk, run with a wrong device or
config key, fill the disk while saving, feed a folder with a corrupt scan and leftovers."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.helpers import (
    CLI,
    REPO,
    cli_env,
    cli_fails,
    save_tiny_ct_checkpoint,
    write_ct_scan,
)
from training.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_ct_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.safetensors", 9)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write into: a read-only tmpfs as root, else chmod 0555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot make a read-only folder here (root without mount)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


# ---------------------------------------------------------------- never overwrite (item 2)


def test_evaluate_never_replaces_a_file_without_overwrite(checkpoint, tmp_path, capsys):
    before = checkpoint.read_bytes()
    base = ["evaluate", "--checkpoint", str(checkpoint), "--data", "phantom:3", "--device", "cpu"]
    # The reported case: --out pointing at the checkpoint. Refused even with --overwrite.
    cli_fails([*base, "--out", str(checkpoint), "--overwrite"], capsys, "also an input")
    assert checkpoint.read_bytes() == before
    report = tmp_path / "r.json"
    report.write_text("my notes")
    cli_fails([*base, "--out", str(report)], capsys, "exists", "--overwrite")
    assert report.read_text() == "my notes"
    assert main([*base, "--out", str(report), "--overwrite"]) == 0
    assert report.read_text().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary left


def test_sample_checks_both_files_before_writing_either(tmp_path, capsys):
    (tmp_path / "abdomen_ct_truth.nii.gz").write_text("mine")
    cli_fails(["sample", str(tmp_path)], capsys, "abdomen_ct_truth.nii.gz exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abdomen_ct_truth.nii.gz"]


def test_predict_refuses_writing_onto_the_checkpoint(checkpoint, tmp_path, capsys):
    scan = write_ct_scan(tmp_path / "s.nii.gz")
    before = checkpoint.read_bytes()
    cli_fails(["predict", str(scan), "--checkpoint", str(checkpoint), "--out", str(checkpoint),
            "--overwrite"], capsys, "also an input")
    assert checkpoint.read_bytes() == before


# ---------------------------------------------------------------- batch predict (item 7)


def test_batch_predict_processes_every_scan_and_reports_failures_at_the_end(
        checkpoint, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_ct_scan(inputs / "a.nii.gz", seed=1)
    (inputs / "b.nii.gz").write_bytes(b"\x1f\x8b not really gzip")  # corrupt, sorted between
    write_ct_scan(inputs / "c.nii", seed=2)
    # A leftover temporary file of an interrupted write, and an earlier output in the folder.
    write_ct_scan(inputs / ".a.nii.gz.k3j2.nii.gz")
    assert main(["predict", str(inputs / "a.nii.gz"), "--checkpoint", str(checkpoint),
                 "--out", str(inputs / "a_seg.nii.gz"), "--device", "cpu"]) == 0
    capsys.readouterr()

    out = tmp_path / "out"
    assert main(["predict", str(inputs), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "c.nii"]  # after the failure
    assert captured.out.split() == [str(out / "a.nii.gz"), str(out / "c.nii")]
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 2
    assert "b.nii.gz" in errors[0]
    assert "1 of 3 scans failed" in errors[1]
    assert "skipping" in captured.err and "a_seg.nii.gz" in captured.err
    # The same labels as predicting the file alone.
    np.testing.assert_array_equal(np.asarray(nib.load(str(out / "a.nii.gz")).dataobj),
                                  np.asarray(nib.load(str(inputs / "a_seg.nii.gz")).dataobj))


# ---------------------------------------------------------------- unwritable (items 9, 11)


def test_read_only_output_is_refused_before_the_work(checkpoint, tmp_path, read_only_dir,
                                                     capsys):
    scan = write_ct_scan(tmp_path / "s.nii.gz")
    err = cli_fails(["predict", str(scan), "--checkpoint", str(checkpoint), "--out",
                  str(read_only_dir / "seg.nii.gz"), "--device", "cpu"], capsys, str(read_only_dir))
    assert "read-only" in err or "not writable" in err
    err = cli_fails(["evaluate", "--checkpoint", str(checkpoint), "--data", "phantom:3",
                  "--out", str(read_only_dir / "sub" / "r.json")], capsys, "--out")
    cli_fails(["sample", str(read_only_dir / "x")], capsys, str(read_only_dir))
    assert list(read_only_dir.iterdir()) == []


def _cli_with_file_size_limit(argv: list[str], limit: int) -> subprocess.CompletedProcess:
    """Run ``l2gnet ARGV`` with writes capped at ``limit`` bytes: a full disk, as the writer
    sees it (EFBIG instead of ENOSPC; SIGXFSZ ignored so the write fails, not the process)."""
    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = cli_env(PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([*CLI, *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, preexec_fn=cap)


def test_disk_full_while_saving_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "sample"
    done = _cli_with_file_size_limit(["sample", str(out)], limit=20_000)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "l2gnet sample: error:" in lines[0], done.stderr
    assert "too large" in lines[0] and "free some space" in lines[0]
    assert list(out.iterdir()) == []  # no partial file, no temporary, no lone image


def test_disk_full_during_batch_predict(checkpoint, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(2):
        write_ct_scan(inputs / f"s{i}.nii", shape=(64, 64, 4), seed=i)
    out = tmp_path / "out"
    done = _cli_with_file_size_limit(["predict", str(inputs), "--checkpoint", str(checkpoint),
                                      "--out", str(out), "--device", "cpu"], limit=2_000)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 3 and "2 of 2 scans failed" in errors[-1]
    assert all("too large" in line for line in errors[:2])
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------- devices, config (item 9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_device_errors_are_one_line(checkpoint, tmp_path, capsys, command):
    scan = write_ct_scan(tmp_path / "s.nii.gz")
    base = {"predict": ["predict", str(scan), "--out", str(tmp_path / "o.nii.gz")],
            "evaluate": ["evaluate", "--data", "phantom:3"]}[command]
    cli_fails([*base, "--checkpoint", str(checkpoint), "--device", "cuda"], capsys,
           "no usable CUDA GPU", "cpu")
    cli_fails([*base, "--checkpoint", str(checkpoint), "--device", "gpu"], capsys,
           "unknown device 'gpu'", "auto, cpu, cuda or cuda:N")
    assert not (tmp_path / "o.nii.gz").exists()


def test_unknown_or_mistyped_set_key_is_one_line(tmp_path, capsys):
    base = ["train", "--tiny", "--data", "phantom:1", "--phantom-shape", "4", "32", "32",
            "--epochs", "1", "--device", "cpu", "--out-dir", str(tmp_path / "run")]
    cli_fails([*base, "--set", "codebok_size=16"], capsys, "codebok_size", "Accepted keys")
    cli_fails([*base, "--set", "codebook_size=many"], capsys, "codebook_size='many'",
           "whole number")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- labels (item 5)


@pytest.mark.parametrize(("value", "dtype", "needle"), [
    (264, np.int16, "label value 264 does not fit a model with 9 classes"),
    (-1, np.int16, "label value -1 is negative"),
    (7.6, np.float32, "label value 7.6 is not a whole number"),
])
def test_evaluate_refuses_labels_that_are_not_class_ids(checkpoint, value, dtype, needle):
    """264 used to score as class 8, -1 as 255, 7.6 as 7 (scan_io.labels.check_labels now)."""
    from training.data import Case
    from training.evaluation.scoring import evaluate

    label = np.zeros((2, 16, 16), dtype)
    label[1, 3, 3] = value
    with pytest.raises(ValueError, match=needle) as err:
        case = Case("case7.nii.gz", np.zeros((2, 16, 16), np.float32), label)
        evaluate(str(checkpoint), [case], device="cpu")
    assert "case7.nii.gz" in str(err.value)
