"""Helpers the tests share, one copy each: running ``l2gnet`` (in this process or as a user
runs it), checking its one-line refusals, and the tiny checkpoints and small scans the CLI and
fine-tuning tests start from. Fixtures built on them live in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: ``l2gnet`` as a user runs it, in a fresh interpreter (``subprocess``).
CLI = [sys.executable, "-m", "training.cli"]

#: ``l2gnet train`` on one tiny phantom, one epoch on the CPU (seconds).
TINY_TRAIN = ["train", "--tiny", "--data", "phantom:1", "--phantom-shape", "6", "32", "32",
              "--input-size", "32", "32", "--batch-size", "4", "--augment", "none",
              "--device", "cpu", "--epochs", "1"]

#: The class names of ``save_finetune_start`` (and of ``two_squares``' labels).
FINETUNE_NAMES = ["background", "a", "b"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a child ``l2gnet``: this checkout first on the path, one thread."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def cli_fails(argv: list[str], capsys, *needles: str) -> str:
    """``l2gnet ARGV`` (in this process) is refused as the CLI promises: exit 2 and one line on
    stderr, ``l2gnet COMMAND: error: ...``, holding every needle (no traceback). The line."""
    from training.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith(f"l2gnet {argv[0]}: error:"), err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


def write_ct_scan(path: Path, shape: tuple[int, ...] = (20, 16, 3), seed: int = 0) -> Path:
    """A small random CT-like NIfTI (int16 HU, 1.5 x 1.5 x 3 mm voxels) at ``path``."""
    data = np.random.default_rng(seed).integers(-200, 300, shape).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 3.0, 1.0])), str(path))
    return path


def write_nifti(path: Path, data: np.ndarray) -> Path:
    """``data`` as a NIfTI file with an identity affine (parent folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), str(path))
    return path


def save_tiny_ct_checkpoint(path: Path, num_classes: int) -> Path:
    """An untrained tiny UNet for CT (TransUNet's window, 32 x 32 input), seeded."""
    import torch

    from src_model import build_model, save_checkpoint
    from src_model.testing import tiny_config

    torch.manual_seed(0)
    model = build_model("unet", num_classes, **tiny_config("unet"))
    return save_checkpoint(path, model, {"input_size": [32, 32],
                                         "normalization": {"kind": "ct_window", "low": -125,
                                                           "high": 275}})


def save_finetune_start(path: Path, *, names: list[str] = FINETUNE_NAMES,
                        plan_vote: bool = False, training: dict | None = None,
                        postprocessing: dict | None = None) -> Path:
    """The model a fine-tune starts from: an untrained tiny L2GNet with ``names`` (3 classes),
    32 x 32 input, data already in [0, 1]; ``training``: its training record, if any;
    ``postprocessing``: its post-processing choice, if any."""
    from src_model import build_model, save_checkpoint
    from src_model.testing import tiny_config

    config = {**tiny_config("l2gnet"), **({"plan_vote": True} if plan_vote else {})}
    model = build_model("l2gnet", len(names), **config)
    meta = {"class_names": list(names), "input_size": [32, 32],
            "normalization": {"kind": "none"}}
    if training is not None:
        meta["training"] = training
    if postprocessing is not None:
        meta["postprocessing"] = postprocessing
    return save_checkpoint(path, model, meta)


def two_squares(seed: int = 0, n: int = 6, bright: tuple[float, float] = (0.7, 0.4),
                ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy 32 x 32 slices in [0, 1] with two squares, labels 1 and 2 (brightness
    ``bright`` above the noise): something a tiny model learns in a few steps."""
    rng = np.random.default_rng(seed)
    image = rng.random((n, 32, 32), dtype=np.float32) * 0.2
    labels = np.zeros((n, 32, 32), np.uint8)
    image[:, 4:14, 4:14] += bright[0]
    labels[:, 4:14, 4:14] = 1
    image[:, 18:28, 18:28] += bright[1]
    labels[:, 18:28, 18:28] = 2
    return image, labels
