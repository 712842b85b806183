"""Checkpoint round trip and every bad-checkpoint case with its message."""

from __future__ import annotations

import json
import os
from dataclasses import FrozenInstanceError as FrozenInstanceErrorType

import pytest
import torch
from safetensors.torch import save_file

from src_model import (
    CheckpointError,
    CheckpointMeta,
    ModelCard,
    build_model,
    load_checkpoint,
    read_checkpoint_meta,
    read_metadata,
    save_checkpoint,
)
from src_model.checkpoint_meta import DEFAULT_INPUT_SIZE
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
    assert "slice_axis" not in meta  # dead field, no longer written
    assert read_metadata(path)["input_size"] == [32, 32]
    # the typed view of the same metadata
    assert isinstance(meta, CheckpointMeta)
    assert meta.model.num_classes == 4 and meta.input_size == (32, 32)
    assert meta.class_names == tuple(META["class_names"])


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


def _rewrite(src, dst, edit=None, raw=None):
    """Copy checkpoint ``src`` to ``dst`` with its metadata changed by ``edit(meta)``."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta = read_metadata(src)
    if edit is not None:
        edit(meta)
    save_file(tensors, str(dst), metadata={"l2gnet": raw if raw is not None else json.dumps(meta)})
    return dst


def _set(path, value):
    def edit(meta):
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


CRAFTED = {
    "huge num_classes": (_set(["model", "num_classes"], 10**12), "num_classes.*out of range"),
    "text num_classes": (_set(["model", "num_classes"], "9"), "num_classes.*whole number"),
    "zero classes": (_set(["model", "num_classes"], 0), "num_classes.*out of range"),
    "huge width": (_set(["model", "config", "pre_channels"], 10**9), "pre_channels.*out of range"),
    "huge codebook": (_set(["model", "config", "codebook_size"], 10**8),
                      "codebook_size.*out of range"),
    "widths allowed, model huge": (
        lambda m: m["model"]["config"].update(pre_channels=60000, decoder_head_channels=60000),
        "parameters"),
    "non-numeric config": (_set(["model", "config", "codebook_size"], "many"), "cannot build"),
    "nested config": (_set(["model", "config", "num_refs"], {"a": 1}), "num_refs"),
    "huge input size": (_set(["input_size"], [10**6, 10**6]), "input_size.*out of range"),
    "text input size": (_set(["input_size"], ["a", "b"]), "input_size.*whole number"),
    "NaN in normalization": (_set(["normalization", "low"], float("nan")), "normalization.low"),
    "class names of the wrong length": (_set(["class_names"], ["bg"]), "class_names.*1 entries"),
    "metadata not an object": (lambda m: m.clear() or m.update(model=[1]), "'model'"),
    "nested 40 levels": (_set(["training", "x"], json.loads("[" * 40 + "]" * 40)),
                         "nested more than"),
    "future format": (_set(["format"], "napari-l2gnet/9"), "format"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_metadata_is_refused_in_one_line_before_building(saved, tmp_path, case):
    edit, pattern = CRAFTED[case]
    _, path = saved
    bad = _rewrite(path, tmp_path / "bad.safetensors", edit)
    with pytest.raises(CheckpointError, match=pattern) as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value)


def test_json_nested_beyond_the_parser_is_refused(saved, tmp_path):
    _, path = saved
    raw = '{"training": ' + "[" * 200_000 + "]" * 200_000 + "}"
    bad = _rewrite(path, tmp_path / "deep.safetensors", raw=raw)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        read_checkpoint_meta(bad)


def test_non_finite_weights_are_refused_at_load(tmp_path):
    model = build_model("unet", 3, **tiny_config("unet"))
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    path = save_checkpoint(tmp_path / "nan.safetensors", model, {})
    with pytest.raises(CheckpointError, match="NaN or infinite weights"):
        load_checkpoint(path)


def test_old_checkpoint_loads_with_defaults_and_a_resolved_card():
    from pathlib import Path

    demo = Path(__file__).parents[2] / "napari_l2gnet/resources/demo_l2gnet.safetensors"
    meta = read_checkpoint_meta(demo)
    assert meta.card == ModelCard()  # written before model cards existed
    card = meta.resolved_card()
    assert card.modality == "CT" and card.display_name == "l2gnet"
    assert card.training_command.startswith("l2gnet train")
    assert card.training_data == "phantom:100-111"
    assert card.validation_dice["mean"] > 0.9
    assert meta.class_names[0] == "background" and len(meta.class_names) == 9


def test_card_round_trip_and_defaults(tmp_path):
    model = build_model("unet", 2, **tiny_config("unet"))
    card = {"display_name": "Spleen (test)", "modality": "CT", "intended_use": "research",
            "training_data": "phantom:1-3", "training_command": "l2gnet train ...",
            "validation_dice": {"class 1": 0.5, "mean": 0.5}}
    path = save_checkpoint(tmp_path / "c.safetensors", model, {"card": card,
                                                                "finetuned_from": "x"})
    meta = read_checkpoint_meta(path)
    assert meta.card.to_dict() == card
    assert meta.extra == {"finetuned_from": "x"}  # unknown entries are kept
    assert meta.class_names == ("background", "class 1")  # default names built once
    assert meta.input_size == DEFAULT_INPUT_SIZE == (224, 224)
    assert meta.normalization == {"kind": "none"}


def test_legacy_mapping_view_matches_the_stored_json(saved):
    _, path = saved
    _, meta = load_checkpoint(path)
    assert dict(meta) == read_metadata(path)
    assert {**meta}["model"]["num_classes"] == 4
    assert meta.get("class_colors") is None and meta.get("nope", 3) == 3
    with pytest.raises(FrozenInstanceErrorType):
        meta.input_size = (1, 1)


def test_save_accepts_a_checkpoint_meta(saved, tmp_path):
    model, path = saved
    meta = read_checkpoint_meta(path).updated(input_size=(64, 48))
    again = save_checkpoint(tmp_path / "again.safetensors", model, meta)
    assert read_checkpoint_meta(again).input_size == (64, 48)
