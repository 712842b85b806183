"""Checkpoint round trip and every bad-checkpoint case with its message."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from src_model import CheckpointError, build_model, load_checkpoint, read_metadata, save_checkpoint
from src_model.testing import tiny_config

META = {
    "class_names": ["background", "rv", "myo", "lv"],
    "input_size": [32, 32],
    "normalization": {"kind": "none"},
}


@pytest.fixture
def saved(tmp_path):
    model = build_model("l2gnet", 4, **tiny_config("l2gnet"))
    # Make BatchNorm running stats non-trivial so that the round trip has to carry buffers.
    model.train()
    model(torch.randn(2, 3, 32, 32))
    model.eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, META)
    return model, path


def test_round_trip_gives_identical_outputs(saved):
    model, path = saved
    loaded, meta = load_checkpoint(path)
    x = torch.randn(2, 3, 48, 32)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.aux["plans"], b.aux["plans"])
    assert meta["class_names"] == META["class_names"]
    assert meta["model"]["name"] == "l2gnet" and meta["model"]["num_classes"] == 4
    assert meta["model"]["config"]["num_refs"] == 2
    assert meta["slice_axis"] == 0  # default filled in
    assert read_metadata(path)["input_size"] == [32, 32]


def test_save_is_atomic_and_leaves_no_temporary_file(saved, tmp_path):
    model, path = saved
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(path, model, {"bad": object()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_not_a_safetensors_file(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"PK\x03\x04 this is a zip, maybe a torch.save pickle")
    with pytest.raises(CheckpointError, match="not a readable .safetensors"):
        load_checkpoint(p)


def test_truncated_file(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|corrupted"):
        load_checkpoint(cut)


def test_safetensors_without_our_metadata(tmp_path):
    p = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(p))
    with pytest.raises(CheckpointError, match="not a napari-l2gnet checkpoint"):
        load_checkpoint(p)


def test_weights_that_do_not_match_the_config(saved, tmp_path):
    model, path = saved
    meta = read_metadata(path)
    meta["model"]["config"]["num_anchors"] = 12  # config now disagrees with the stored weights
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={"l2gnet": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="do not match.*wrong shape"):
        load_checkpoint(bad)


def test_config_this_version_cannot_build(saved, tmp_path):
    model, path = saved
    meta = read_metadata(path)
    meta["model"]["config"]["future_option"] = 1
    bad = tmp_path / "future.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(bad),
              metadata={"l2gnet": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="cannot build.*future_option"):
        load_checkpoint(bad)


def test_class_names_must_match_num_classes(tmp_path):
    model = build_model("unet", 3, **tiny_config("unet"))
    with pytest.raises(CheckpointError, match="2 names but the model has 3"):
        save_checkpoint(tmp_path / "m.safetensors", model, {"class_names": ["a", "b"]})
    assert not os.listdir(tmp_path)
