"""Shared fixtures: paths to the real data beside the checkout, small deterministic inputs.

Plain helpers (the CLI's refusals, tiny checkpoints, small scans) are in ``tests/helpers.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real labelled scans); tests that need it skip only if it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ct_dicom(shared_data) -> Path:
    """../shared/data/ct_dicom: real PACS exports (issue 27); the test skips if it is absent."""
    path = shared_data / "ct_dicom"
    if not path.is_dir():
        pytest.skip(f"{path} is not present (the real DICOM of issue 27)")
    return path


@pytest.fixture
def finetune_start(tmp_path) -> Path:
    """``tests.helpers.save_finetune_start``: the tiny 3-class model a fine-tune starts from."""
    from tests.helpers import save_finetune_start

    return save_finetune_start(tmp_path / "start.safetensors")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _annotation_store(tmp_path, monkeypatch) -> Path:
    """No test reads or fills the user's own annotation store: each gets an empty one."""
    store = tmp_path / "annotation-store"
    monkeypatch.setenv("L2GNET_ANNOTATION_STORE", str(store))
    return store
