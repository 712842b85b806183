"""Largest-component post-processing: exact on small arrays, stored in the checkpoint, and
applied by ``predict_volume`` by default with the shipped cardiac model on a real volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from src_model import read_checkpoint_meta
from src_model.checkpoint_meta import CheckpointError, CheckpointMeta, PostProcessing
from training.data.readers import read_h5_volumes
from training.evaluation.postprocess_choice import choose_largest_component
from training.inference import predict_volume
from training.inference.postprocess import apply_postprocessing, keep_largest_component

REPO = Path(__file__).resolve().parents[2]
ACDC = REPO / "napari_l2gnet" / "resources" / "acdc_cine_mri_l2gnet.safetensors"
DEMO = REPO / "napari_l2gnet" / "resources" / "demo_l2gnet.safetensors"


def _two_blobs() -> np.ndarray:
    lab = np.zeros((4, 12, 12), np.uint8)
    lab[1:3, 1:5, 1:5] = 1  # 32 voxels
    lab[1, 8:10, 8:10] = 1  # 4 voxels, apart
    lab[2, 8:11, 1:3] = 2
    lab[0, 0, 11] = 2  # a stray class-2 voxel
    return lab


def test_keeps_only_the_largest_component_of_the_chosen_classes():
    lab = _two_blobs()
    out = keep_largest_component(lab, [1])
    expected = lab.copy()
    expected[1, 8:10, 8:10] = 0
    np.testing.assert_array_equal(out, expected)
    both = keep_largest_component(lab, [1, 2])
    assert both[0, 0, 11] == 0 and (both == 2).sum() == 6
    np.testing.assert_array_equal(lab, _two_blobs())  # the input is not changed


def test_choice_is_made_where_it_helps():
    truth = _two_blobs()
    truth[1, 8:10, 8:10] = 0  # the small class-1 blob is spurious; class 2 really has two
    choice = choose_largest_component([_two_blobs()], [truth], ["background", "a", "b"])
    assert choice.largest_component == ("a",)
    assert choice.measured["a"]["dice_kept"] > choice.measured["a"]["dice"]


def test_checkpoint_meta_keeps_and_checks_the_choice():
    raw = read_checkpoint_meta(ACDC).to_dict()
    meta = CheckpointMeta.from_dict(raw)
    assert meta.postprocessing.largest_component == ("RV", "Myo", "LV")
    assert "val_volumes" in meta.postprocessing.chosen_on
    assert CheckpointMeta.from_dict(meta.to_dict()) == meta
    bad = {**raw, "postprocessing": {"largest_component": ["liver"]}}
    with pytest.raises(CheckpointError, match="not one of the foreground classes"):
        CheckpointMeta.from_dict(bad)
    older = {k: v for k, v in raw.items() if k != "postprocessing"}
    assert CheckpointMeta.from_dict(older).postprocessing is None
    assert read_checkpoint_meta(DEMO).postprocessing is not None  # both shipped models chose


def test_apply_reads_a_dict_or_a_checkpoint_meta():
    lab = _two_blobs()
    meta = {"class_names": ["background", "a", "b"],
            "postprocessing": {"largest_component": ["b"]}}
    np.testing.assert_array_equal(apply_postprocessing(lab, meta),
                                  keep_largest_component(lab, [2]))
    assert apply_postprocessing(lab, {"class_names": ["background", "a", "b"]}) is lab
    assert PostProcessing.from_metadata(None) is None


def test_predict_volume_applies_the_shipped_choice_by_default(shared_data):
    case = next(c for c in read_h5_volumes(shared_data / "acdc" / "val_volumes")
                if c.name == "patient002_frame01")
    raw = predict_volume(case.image, ACDC, device="cpu", postprocess=False).labels
    default = predict_volume(case.image, ACDC, device="cpu").labels
    np.testing.assert_array_equal(default, keep_largest_component(raw, [1, 2, 3]))


def test_a_fine_tuned_model_keeps_the_choice_and_says_whose_it_was(tmp_path) -> None:
    """The start's post-processing choice was measured on the start: a model fine-tuned from
    it keeps the choice, says it was kept from the start (without the start's figures), and a
    second fine-tune does not nest the note."""
    from src_model import read_metadata
    from tests.helpers import save_finetune_start, two_squares
    from training.finetuning.finetune import CorrectedVolume, FinetuneSettings, run_finetune

    start = save_finetune_start(tmp_path / "start.safetensors", postprocessing={
        "largest_component": ["b"], "chosen_on": "val (2 volumes)",
        "measured": {"b": {"dice": 0.9, "dice_kept": 0.91, "chosen": True}}})
    image, labels = two_squares(n=6)
    settings = FinetuneSettings(epochs=6, samples_per_epoch=16, batch_size=2)
    first = run_finetune(start, [CorrectedVolume("scan", image, labels, [1, 2, 3])],
                         settings, tmp_path / "first")
    assert first.chosen_epoch > 0  # a trained model, not the start copied back
    kept = {"largest_component": ["b"],
            "chosen_on": "kept from start.safetensors (chosen there on val (2 volumes))"}
    assert read_metadata(first.checkpoint)["postprocessing"] == kept
    second = run_finetune(first.checkpoint, [CorrectedVolume("scan", image, labels, [4])],
                          settings, tmp_path / "second")
    assert read_metadata(second.checkpoint)["postprocessing"] == kept
    assert PostProcessing(("b",), None).kept_from("m.safetensors").chosen_on == (
        "kept from m.safetensors (chosen there on unrecorded data)")
