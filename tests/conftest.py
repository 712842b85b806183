"""Shared fixtures: paths to the real data beside the checkout, small deterministic inputs."""

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


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _annotation_store(tmp_path, monkeypatch) -> Path:
    """No test reads or fills the user's own annotation store: each gets an empty one."""
    store = tmp_path / "annotation-store"
    monkeypatch.setenv("L2GNET_ANNOTATION_STORE", str(store))
    return store
