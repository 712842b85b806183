"""``l2gnet`` against bad input, round 3 (issue 28 items 1, 4, 8, 9, 10 and "Also"): one line on
stderr and exit 2 where it cannot go on, one warning line where it can, nothing left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from src_model import build_model, save_checkpoint
from src_model.testing import tiny_config
from tests.helpers import (
    REPO,
    cli_env,
    cli_fails,
    save_tiny_ct_checkpoint,
    write_ct_scan,
)
from tests.helpers import TINY_TRAIN as TRAIN
from training.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_ct_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.safetensors", 3)


# ------------------------------------------------------------------ item 1: no orientation


def test_predict_says_in_one_line_that_the_scan_has_no_orientation(checkpoint, tmp_path, capsys):
    header = nib.Nifti1Header()
    header.set_data_shape((20, 16, 3))
    header.set_data_dtype(np.int16)
    data = np.random.default_rng(0).integers(-200, 300, (20, 16, 3)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, None, header=header), str(tmp_path / "old.nii.gz"))
    assert main(["predict", str(tmp_path / "old.nii.gz"), "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "seg.nii.gz"), "--device", "cpu"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "slice" not in ln]
    warned = [ln for ln in err if "warning:" in ln]
    assert len(warned) == 1, err
    assert warned[0].startswith("l2gnet predict: warning:") and "no orientation" in warned[0]
    assert not any("warnings.warn" in ln or "Warning:" in ln for ln in err), err


# ------------------------------------------------------------------ item 4: a label map as input


def test_predict_warns_when_the_input_looks_like_a_label_map(checkpoint, tmp_path, capsys):
    scan = write_ct_scan(tmp_path / "scan.nii.gz")
    first = tmp_path / "first.nii.gz"
    assert main(["predict", str(scan), "--checkpoint", str(checkpoint), "--out", str(first),
                 "--device", "cpu"]) == 0
    assert "label map" not in capsys.readouterr().err
    assert main(["predict", str(first), "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "again.nii.gz"), "--device", "cpu"]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning:" in ln]
    assert len(warned) == 1 and "first.nii.gz" in warned[0] and "label map" in warned[0]


# ------------------------------------------------------------------ item 9: --lr nan / inf


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-0.1"])
@pytest.mark.parametrize("command", ["train", "finetune"])
def test_a_non_finite_or_non_positive_lr_is_refused_at_parse(checkpoint, tmp_path, capsys,
                                                             command, value):
    out = tmp_path / "run"
    argv = ([*TRAIN, "--out-dir", str(out)] if command == "train" else
            ["finetune", "--from", str(checkpoint), "--data", "phantom:1", "--out-dir", str(out)])
    with pytest.raises(SystemExit) as stop:
        main([*argv, f"--lr={value}"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--lr" in err and "finite" in err and "Traceback" not in err
    assert not out.exists()


# ------------------------------------------------------------------ item 10: symlink loops


@pytest.fixture
def loop(tmp_path) -> Path:
    a, b = tmp_path / "loop_a", tmp_path / "loop_b"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def test_a_symlink_loop_as_checkpoint_or_out_is_one_line(checkpoint, tmp_path, loop, capsys):
    scan = write_ct_scan(tmp_path / "scan.nii.gz")
    base = ["predict", str(scan), "--device", "cpu"]
    cli_fails([*base, "--checkpoint", str(loop), "--out", str(tmp_path / "o.nii.gz")], capsys,
              str(loop), "symbolic link loop")
    cli_fails([*base, "--checkpoint", str(checkpoint), "--out", str(loop)], capsys,
              str(loop), "symbolic link loop")
    cli_fails([*base, "--checkpoint", str(checkpoint), "--out", str(loop / "seg.nii.gz")],
              capsys, "symbolic link loop")
    cli_fails([*TRAIN, "--out-dir", str(loop)], capsys, "symbolic link loop")
    cli_fails(["evaluate", "--checkpoint", str(loop), "--data", "phantom:1", "--device", "cpu"],
              capsys, "symbolic link loop")


# ------------------------------------------------------------------ also: --num-classes


def test_num_classes_that_disagrees_with_class_names_is_refused_naming_both(tmp_path, capsys):
    cli_fails([*TRAIN, "--out-dir", str(tmp_path / "r"), "--num-classes", "9",
               "--class-names", "bg,a,b"], capsys, "--num-classes 9", "--class-names", "3 names")
    assert not (tmp_path / "r" / "last.safetensors").exists()


def test_num_classes_is_not_silently_ignored_when_fine_tuning(checkpoint, tmp_path, capsys):
    argv = ["train", "--from", str(checkpoint), *TRAIN[2:], "--out-dir", str(tmp_path / "r")]
    cli_fails([*argv, "--num-classes", "5"], capsys, "--num-classes 5", "3 classes")
    assert not (tmp_path / "r" / "last.safetensors").exists()


# ------------------------------------------------------------------ also: --skip-existing


def test_batch_rerun_after_a_kill_can_skip_what_was_written(checkpoint, tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for i in range(3):
        write_ct_scan(inputs / f"s{i}.nii.gz", seed=i)
    argv = ["predict", str(inputs), "--checkpoint", str(checkpoint), "--out", str(out),
            "--device", "cpu"]
    assert main(argv) == 0
    (out / "s1.nii.gz").unlink()  # the kill came before s1 was written
    kept = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(argv) == 2  # without a flag, the existing outputs are refused, as before
    assert "--skip-existing" in capsys.readouterr().err
    assert main([*argv, "--skip-existing"]) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == [str(out / "s1.nii.gz")]
    assert captured.err.count("skipping") == 2 and "already exists" in captured.err
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert (out / "s1.nii.gz").is_file()
    with pytest.raises(SystemExit):
        main([*argv, "--skip-existing", "--overwrite"])


# ------------------------------------------------------------------ item 8: CPU out of memory

LIMITED = """
import resource, sys
import nibabel, torch, tqdm  # noqa: F401  (loaded before the limit is set)
import scan_io.volume, src_model, training.inference, training.fitting.trainer  # noqa: F401
from training.cli import main
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[1]) * 2**20, resource.RLIM_INFINITY))
sys.exit(main(sys.argv[2:]))
"""


def _limited(head_mb: int, argv: list[str]) -> subprocess.CompletedProcess:
    """``l2gnet ARGV`` with ``head_mb`` MB of address space beyond what its imports took: a
    real allocation failure in torch's CPU allocator, as on a machine short of memory."""
    # One malloc arena: glibc reserves 64 MB of address space per arena, and how many threads
    # open one varies from run to run, which made the limit's headroom vary too.
    env = cli_env(MALLOC_ARENA_MAX="1")
    return subprocess.run([sys.executable, "-c", LIMITED, str(head_mb), *argv], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc are Linux's")
def test_cpu_out_of_memory_in_predict_halves_the_batch(tmp_path):
    model = build_model("unet", 3, **tiny_config("unet"))
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model,
                           {"input_size": [256, 256], "normalization": {"kind": "none"}})
    data = np.random.default_rng(0).random((256, 256, 32)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "scan.nii.gz"))
    argv = ["predict", str(tmp_path / "scan.nii.gz"), "--checkpoint", str(ckpt), "--device",
            "cpu"]
    done = _limited(400, [*argv, "--out", str(tmp_path / "a.nii.gz"), "--batch-size", "32"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "out of memory" in done.stderr and "batch size 16" in done.stderr
    # The same labels as a run with memory to spare.
    assert main([*argv, "--out", str(tmp_path / "b.nii.gz"), "--batch-size", "32"]) == 0
    np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "a.nii.gz")).dataobj),
                                  np.asarray(nib.load(str(tmp_path / "b.nii.gz")).dataobj))
    # Too little memory even for one slice: one line, exit 2, no output.
    done = _limited(80, [*argv, "--out", str(tmp_path / "c.nii.gz"), "--batch-size", "4"])
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [ln for ln in done.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "not enough memory" in errors[0] and "even at batch size 1" in errors[0]
    assert not (tmp_path / "c.nii.gz").exists()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc are Linux's")
def test_cpu_out_of_memory_in_train_is_one_line_with_a_smaller_batch(tmp_path):
    argv = [*TRAIN, "--out-dir", str(tmp_path / "run")]
    argv[argv.index("--batch-size") + 1] = "64"
    argv[argv.index("--input-size") + 1: argv.index("--input-size") + 3] = ["512", "512"]
    done = _limited(150, argv)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    errors = [ln for ln in done.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "not enough memory" in errors[0] and "--batch-size 32" in errors[0]
