"""``open_model``: a checkpoint's header is read once per file version, the model is built
only when first used, and a file replaced on disk is read again."""

from __future__ import annotations

import os

import pytest
import torch

from src_model import CheckpointError, build_model, save_checkpoint
from src_model.testing import tiny_config
from training.inference import load_for_inference
from training.inference.model_handle import cache_stats, clear_cache, open_model

META = {"input_size": [32, 32], "normalization": {"kind": "none"}}


def _save(path, num_classes: int):
    torch.manual_seed(num_classes)
    model = build_model("l2gnet", num_classes, **tiny_config("l2gnet")).eval()
    return save_checkpoint(path, model, META)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def test_header_is_read_once_across_repeated_opens(tmp_path):
    path = _save(tmp_path / "m.safetensors", 3)
    first = open_model(path)
    for spelling in (path, str(path), tmp_path / "." / "m.safetensors"):
        assert open_model(spelling) is first
    assert cache_stats() == (3, 1)  # three hits, one header read
    assert first.meta.model.num_classes == 3


def test_model_is_built_on_first_use_only_and_then_reused(tmp_path):
    path = _save(tmp_path / "m.safetensors", 3)
    handle = open_model(path)
    assert handle.built == ()  # reading the metadata built nothing
    model = handle.model()
    assert handle.built == ("cpu",) and not model.training
    assert handle.model("cpu") is model
    # load_for_inference (the inferers' entry) shares the same handle and model
    shared, meta = load_for_inference(str(path))
    assert shared is model and meta is handle.meta
    assert cache_stats()[1] == 1


def test_replaced_file_is_read_again(tmp_path):
    path = _save(tmp_path / "m.safetensors", 3)
    old = open_model(path)
    old_model = old.model()
    _save(path, 5)  # a retrained model written over the same name
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # coarse-clock safe
    new = open_model(path)
    assert new is not old and new.meta.model.num_classes == 5
    assert new.model() is not old_model and new.model().num_classes == 5
    assert cache_stats()[1] == 2


def test_missing_or_foreign_file_gives_the_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        open_model(tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match="folder"):
        open_model(tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        open_model(bad)
    assert cache_stats() == (0, 0)  # nothing unreadable is cached
