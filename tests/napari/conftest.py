"""Fixtures for the plugin tests: a tiny L2GNet checkpoint and a small scan-like image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import napari_l2gnet.widgets  # noqa: F401  (guards triton before a GL context exists)
from src_model import build_model, save_checkpoint
from src_model.testing import tiny_config

CLASS_NAMES = ["background", "organ a", "organ b"]


@pytest.fixture(autouse=True)
def user_data_home(tmp_path, monkeypatch) -> Path:
    """Outputs default to the user's data folder (the panels' runs, settings): a temporary one
    here, so no test writes into the real one."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """An untrained tiny L2GNet (3 classes, 32x32 input, data already in [0, 1])."""
    model = build_model("l2gnet", 3, **tiny_config("l2gnet"))
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model, {
        "class_names": CLASS_NAMES,
        "class_colors": [[0, 0, 0], [1, 0, 0], [0, 1, 0]],
        "input_size": [32, 32],
        "normalization": {"kind": "none"},
    })
    return path


@pytest.fixture
def scan() -> np.ndarray:
    """(6, 40, 36) float32 in [0, 1]: slice sizes that are not multiples of 16."""
    return np.random.default_rng(0).random((6, 40, 36), dtype=np.float32)


@pytest.fixture
def scan_file(tmp_path: Path, scan: np.ndarray) -> Path:
    """``scan`` as a NIfTI file (2 mm slices, 0.5 mm pixels): opened with the plugin's reader
    (``napari_l2gnet.testing.open_scan``) it is a layer named "scan" holding ``scan``."""
    from napari_l2gnet.testing import write_scan

    return write_scan(tmp_path / "scan.nii.gz", scan, spacing=(2.0, 0.5, 0.5))
