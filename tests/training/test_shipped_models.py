"""Model summaries from checkpoint metadata, and the model-card writer for shipped models."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from src_model import build_model, load_checkpoint, read_metadata, save_checkpoint
from src_model.testing import tiny_config
from training.inference.fit_check import ScanExpectation
from training.inference.shipped_models import describe_checkpoint, list_checkpoints

REPO = Path(__file__).resolve().parents[2]


def _card_module():
    spec = importlib.util.spec_from_file_location(
        "make_model_card", REPO / "benchmarks" / "make_model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkpoint(path: Path, data: str, norm: dict, names=("background", "RV", "Myo", "LV")):
    model = build_model("l2gnet", len(names), **tiny_config("l2gnet"))
    return save_checkpoint(path, model, {
        "class_names": list(names), "input_size": [32, 32], "normalization": norm,
        "training": {"data": data, "command": f"l2gnet train --data {data}",
                     "val_dice": {"RV": 0.5, "mean": 0.6}},
    })


def test_summaries_come_from_metadata_and_list_real_models_first(tmp_path):
    _checkpoint(tmp_path / "a_demo.safetensors", "phantom:1-2",
                {"kind": "ct_window", "low": -125, "high": 275},
                names=("background", "liver"))
    _checkpoint(tmp_path / "z_heart.safetensors", "acdc/train_slices",
                {"kind": "percentile", "low": 0, "high": 100})
    (tmp_path / "broken.safetensors").write_bytes(b"not a checkpoint")

    demo, heart = sorted(list_checkpoints(tmp_path), key=lambda m: m.path.name)
    assert [m.path.name for m in list_checkpoints(tmp_path)] == ["z_heart.safetensors",
                                                                 "a_demo.safetensors"]
    assert demo.modality == "CT" and "Phantom-only demo" in demo.description
    assert heart.modality == "MRI" and heart.class_names == ("background", "RV", "Myo", "LV")
    assert heart.validation_dice == pytest.approx(0.6)
    assert heart.intensities == "per-volume min-max scaling"
    details = heart.details()
    assert "RV, Myo, LV" in details and "0.600" in details


def test_model_card_is_written_and_weights_are_unchanged(tmp_path, capsys):
    card = _card_module()
    src = _checkpoint(tmp_path / "best.safetensors", "acdc/train_slices", {"kind": "none"})
    report = {"protocol": "transunet", "data": "val", "summary": {
        "per_class": {"RV": {"dice": 0.81}, "Myo": {"dice": 0.82}, "LV": {"dice": 0.9}},
        "mean": {"dice": 0.8433, "hd95": 2.5}, "num_cases": 2}}
    (tmp_path / "eval.json").write_text(json.dumps(report))
    out = tmp_path / "shipped.safetensors"
    args = [str(src), "--preset", "acdc-mri", "--out", str(out),
            "--eval", str(tmp_path / "eval.json"), "--eval-command", "l2gnet evaluate ..."]
    assert card.main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["out"] == str(out)

    meta = read_metadata(out)
    assert meta["card"]["display_name"].startswith("ACDC cine MRI")
    assert meta["card"]["validation_dice"] == {"RV": 0.81, "Myo": 0.82, "LV": 0.9,
                                               "mean": 0.8433}
    assert meta["card"]["training_command"] == "l2gnet train --data acdc/train_slices"
    assert meta["evaluation"]["command"] == "l2gnet evaluate ..."
    assert meta["normalization"] == {"kind": "percentile", "low": 0.0, "high": 100.0}
    assert ScanExpectation.from_metadata(meta).slice_count == (6.0, 18.0)
    summary = describe_checkpoint(out)
    assert summary.modality == "MRI" and summary.validation_dice == pytest.approx(0.8433)

    original, _ = load_checkpoint(src)
    shipped, _ = load_checkpoint(out)
    for (k, a), (k2, b) in zip(original.state_dict().items(), shipped.state_dict().items(),
                               strict=True):
        assert k == k2 and torch.equal(a, b)
    with safe_open(str(out), framework="numpy") as f:
        assert set(f.keys()) == set(original.state_dict())

    # an existing output is refused without --overwrite, kept as it was
    before = out.read_bytes()
    assert card.main(args) == 2
    assert out.read_bytes() == before
    assert card.main([*args, "--overwrite"]) == 0


def test_model_card_refuses_files_the_loader_would_refuse(tmp_path, capsys):
    card = _card_module()
    out = tmp_path / "shipped.safetensors"
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    assert card.main([str(garbage), "--preset", "acdc-mri", "--out", str(out)]) == 2
    assert "not a readable .safetensors checkpoint" in capsys.readouterr().err

    # a safetensors file whose metadata the loader refuses (absurd class count)
    src = _checkpoint(tmp_path / "best.safetensors", "acdc/train_slices", {"kind": "none"})
    with safe_open(str(src), framework="numpy") as f:
        meta = json.loads(f.metadata()["l2gnet"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["model"]["num_classes"] = 10**12
    crafted = tmp_path / "crafted.safetensors"
    save_file(tensors, str(crafted), metadata={"l2gnet": json.dumps(meta)})
    assert card.main([str(crafted), "--preset", "acdc-mri", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "num_classes" in err and err.count("\n") == 1
    assert not out.exists()
