"""Growing a built model by new classes (src_model.class_growth): the old classes' logits are
the old model's at step 0, a new class never wins the argmax until trained, the metadata and
card record the added classes, and bad requests are refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src_model import build_model, load_checkpoint, read_checkpoint_meta, save_checkpoint
from src_model.checkpoint_meta import AddedClass, CheckpointError, CheckpointMeta
from src_model.class_growth import (
    MAX_NEW_CLASSES,
    NEW_CLASS_PALETTE,
    ClassGrowthError,
    grow_classes,
    grown_metadata,
    new_class_names,
)
from src_model.testing import TINY_CONFIGS, tiny_config

ROOT = Path(__file__).resolve().parents[2]
CARDIAC = ROOT / "napari_l2gnet" / "resources" / "acdc_cine_mri_l2gnet.safetensors"
NETS = [(name, {}) for name in sorted(TINY_CONFIGS)] + [("l2gnet", {"plan_vote": True})]


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).logits


def _assert_step0(old: torch.nn.Module, grown: torch.nn.Module, x: torch.Tensor, k: int):
    a, b = _logits(old, x), _logits(grown, x)
    n = old.num_classes
    assert b.shape[1] == n + k and grown.num_classes == n + k
    torch.testing.assert_close(b[:, :n], a, rtol=0, atol=1e-5)  # float rounding at most
    assert torch.equal(b.argmax(1), a.argmax(1))  # the same prediction everywhere
    assert bool((b[:, n:] < b[:, :1]).all())  # every new logit below the background's
    assert float(b.softmax(1)[:, n:].max()) < 0.01


@pytest.mark.parametrize(("name", "extra"), NETS, ids=[f"{n}{'-vote' if e else ''}"
                                                         for n, e in NETS])
def test_every_net_grows_without_changing_its_output(name, extra) -> None:
    model = build_model(name, 3, **tiny_config(name), **extra).eval()
    grown = grow_classes(model, 2)
    assert type(grown) is type(model) and model.num_classes == 3  # the original is untouched
    _assert_step0(model, grown, torch.randn(2, 3, 64, 64), 2)
    if extra.get("plan_vote"):
        assert grown.bottleneck.bucket_votes.shape[-1] == 5
    # it trains: one step moves the new class's logits
    grown.train()
    out = grown(torch.randn(1, 3, 64, 64))
    out.logits[:, 3:].sum().backward()
    assert grown.head.weight.grad[3:].abs().sum() > 0


def test_the_shipped_cardiac_model_grows_with_identical_old_logits(shared_data) -> None:
    """On the shipped ACDC model (L2GNet with bucket votes) and a real slice."""
    import h5py
    import numpy as np
    from torch.nn.functional import interpolate

    model, meta = load_checkpoint(CARDIAC)
    assert model.bottleneck.bucket_votes is not None
    grown = grow_classes(model, 1).eval()
    files = sorted((shared_data / "acdc" / "val_volumes").glob("*.h5"))
    with h5py.File(files[0], "r") as f:
        image = np.asarray(f["image"][3], np.float32)
    x = torch.from_numpy(image)[None, None]
    x = interpolate(x, size=(224, 224), mode="bilinear").repeat(1, 3, 1, 1)
    _assert_step0(model, grown, x, 1)
    assert torch.equal(_logits(grown, x)[:, :4], _logits(model, x))  # bit for bit here


def test_grown_model_saves_and_loads_with_its_card(tmp_path) -> None:
    model = build_model("l2gnet", 4, **tiny_config("l2gnet"), plan_vote=True).eval()
    meta = CheckpointMeta.from_dict({"model": {"name": "l2gnet", "num_classes": 4,
                                               "config": {}},
                                     "class_names": ["background", "RV", "Myo", "LV"]})
    added = [AddedClass("lesion", 4, taught_on="2 ACDC patients", derived_from="start",
                        date="2026-12-07T13:00:00+00:00", scans=2, slices=30, voxels=900)]
    grown = grow_classes(model, 1)
    path = save_checkpoint(tmp_path / "g.safetensors", grown, grown_metadata(meta, added))
    back, read = load_checkpoint(path)
    assert back.num_classes == 5 and read.class_names[-1] == "lesion"
    assert read.class_colors is None  # the model had none: the viewer's defaults, as before
    assert read.card.added_classes == tuple(added)
    assert "lesion (label 4): taught on 2 ACDC patients, 30 slices, 2 scans" in \
        read.card.added_classes[0].describe()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(_logits(back, x), _logits(grown, x))
    # growing again appends to the record
    more = grown_metadata(read, [AddedClass("cyst", 5, taught_on="elsewhere")])
    assert [a["name"] for a in more["card"]["added_classes"]] == ["lesion", "cyst"]


def test_colours_extend_the_models_own() -> None:
    meta = {"model": {"name": "unet", "num_classes": 2, "config": {}},
            "class_names": ["background", "liver"], "class_colors": [[0, 0, 0], [1, 0, 0]]}
    out = grown_metadata(meta, [AddedClass("tumour", 2, taught_on="x")])
    assert out["class_colors"][2] == list(NEW_CLASS_PALETTE[0])
    out = grown_metadata(meta, [AddedClass("tumour", 2, taught_on="x")],
                         colors=[[0.1, 0.2, 0.3]])
    assert out["class_colors"][2] == [0.1, 0.2, 0.3]
    meta.pop("class_colors")
    with pytest.raises(ClassGrowthError, match="colours for every class"):
        grown_metadata(meta, [AddedClass("tumour", 2, taught_on="x")], colors=[[0, 1, 0]])
    out = grown_metadata(meta, [AddedClass("tumour", 2, taught_on="x")],
                         colors=[[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    assert len(out["class_colors"]) == 3


def test_names_must_keep_the_models_classes_in_order() -> None:
    old = ["background", "RV", "Myo", "LV"]
    assert new_class_names(old, old) == []
    assert new_class_names(old, [*old, "lesion"]) == ["lesion"]
    with pytest.raises(ClassGrowthError, match=r"rename or reorder .* name 2 is 'LV' \(the "
                       "model's class 3"):
        new_class_names(old, ["background", "RV", "LV", "Myo", "lesion"])
    with pytest.raises(ClassGrowthError, match="name 1 is 'right ventricle'"):
        new_class_names(old, ["background", "right ventricle", "Myo", "LV"])
    with pytest.raises(ClassGrowthError, match="3 class names given but the model has 4"):
        new_class_names(old, old[:3])
    with pytest.raises(ClassGrowthError, match="empty name"):
        new_class_names(old, [*old, ""])
    with pytest.raises(ClassGrowthError, match=r"\['LV'\] appear twice"):
        new_class_names(old, [*old, "LV"])
    many = [*old, *(f"new{i}" for i in range(200))]
    with pytest.raises(ClassGrowthError, match="200 new classes at once is more than 8"):
        new_class_names(old, many)


def test_growth_refusals_are_one_line() -> None:
    model = build_model("unet", 3, **tiny_config("unet"))
    for k, words in ((0, "must be >= 1"), (MAX_NEW_CLASSES + 1, "more than 8")):
        with pytest.raises(ClassGrowthError, match=words) as err:
            grow_classes(model, k)
        assert "\n" not in str(err.value)
    with pytest.raises(ClassGrowthError, match="no 1x1 classifier head"):
        grow_classes(torch.nn.Conv2d(3, 3, 1), 1)


def test_card_added_classes_are_validated() -> None:
    base = {"model": {"name": "unet", "num_classes": 3, "config": {}},
            "class_names": ["background", "a", "lesion"]}
    ok = CheckpointMeta.from_dict({**base, "card": {"added_classes": [
        {"name": "lesion", "index": 2, "taught_on": "x", "voxels": 40}]}})
    assert ok.card.added_classes[0].voxels == 40
    for bad, words in (
        ([{"name": "lesion", "index": 2}], "taught_on' must be text"),
        ([{"name": "other", "index": 2, "taught_on": "x"}], "not that class"),
        ([{"name": "lesion", "index": 9, "taught_on": "x"}], "not that class"),
        ([{"name": "lesion", "index": 2, "taught_on": "x", "voxels": -1}], "out of range"),
        ("lesion", "must be a list"),
    ):
        with pytest.raises(CheckpointError, match=words):
            CheckpointMeta.from_dict({**base, "card": {"added_classes": bad}})


def test_read_meta_of_the_shipped_model_has_no_added_classes() -> None:
    assert read_checkpoint_meta(CARDIAC).card.added_classes is None
