"""Slice context (2.5-D input): a slice between its neighbours, from the readers through
training to ``predict_volume``, and the conversion that lets a trained single-slice model
start from exactly what it predicted (docs/design.md, "Slice context")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from src_model import CheckpointError, build_model, load_checkpoint, save_checkpoint
from src_model.checkpoint_meta import CheckpointMeta
from src_model.slice_context import add_slice_context, first_conv
from src_model.testing import tiny_config
from tests.helpers import TINY_TRAIN, cli_fails
from training.cli import main
from training.data import SliceDataset
from training.data.cases import Slice, neighbour_slices, with_context
from training.data.readers import read_acdc_slices
from training.data.transforms import augment_pair
from training.inference import predict_volume

ACDC_SLICES = Path(__file__).resolve().parents[2].parent / "shared/data/acdc/train_slices"


def _tiny_l2gnet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("l2gnet", 3, **tiny_config("l2gnet")).eval()


def test_with_context_stacks_neighbours_and_repeats_the_ends():
    vol = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 2, 3), np.float32)
    stack = with_context(vol, 0, 4)
    assert stack.shape == (4, 3, 2, 3)
    assert [list(stack[i, :, 0, 0]) for i in range(4)] == [[0, 0, 1], [0, 1, 2], [1, 2, 3],
                                                           [2, 3, 3]]
    before, after = neighbour_slices(vol, 3)
    assert before[0, 0] == 2 and after[0, 0] == 3


def test_add_slice_context_keeps_the_output_whatever_the_neighbours():
    model = _tiny_l2gnet()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        before = model(x.expand(-1, 3, -1, -1)).logits
        add_slice_context(model)
        w = first_conv(model).weight
        assert w[:, 0].abs().max() == 0 and w[:, 2].abs().max() == 0
        after = model(torch.cat([torch.rand_like(x), x, torch.rand_like(x)], 1)).logits
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_predict_volume_feeds_each_slice_between_its_neighbours():
    """With slice context, changing slice 2 changes what slices 1 and 3 get; without it,
    only slice 2's own result."""
    model = _tiny_l2gnet(1)
    with torch.no_grad():  # a model that uses its neighbour channels
        first_conv(model).weight.mul_(torch.tensor([20.0, 20.0, -20.0])[None, :, None, None])
    vol = np.random.default_rng(0).random((5, 32, 32), dtype=np.float32)
    changed = vol.copy()
    changed[2] = 1.0 - changed[2]

    def probs(volume, context):
        meta = {"normalization": {"kind": "none"}, "input_size": [32, 32],
                "slice_context": context}
        return predict_volume(volume, model, metadata=meta, device="cpu", postprocess=False,
                              return_probabilities=True).probabilities.astype(np.float32)

    moved = [np.abs(probs(vol, c) - probs(changed, c)).max(axis=(0, 2, 3)) > 1e-3
             for c in (0, 1)]
    assert list(moved[0]) == [False, False, True, False, False]
    assert list(moved[1]) == [False, True, True, True, False]


def test_checkpoint_records_slice_context(tmp_path):
    model = _tiny_l2gnet()
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"slice_context": 1})
    _, meta = load_checkpoint(path)
    assert meta.slice_context == 1 and meta.to_dict()["slice_context"] == 1
    plain = save_checkpoint(tmp_path / "p.safetensors", model, {})
    _, meta = load_checkpoint(plain)
    assert meta.slice_context == 0 and "slice_context" not in meta.to_dict()
    data = meta.to_dict()
    with pytest.raises(CheckpointError, match="slice_context"):
        CheckpointMeta.from_dict({**data, "slice_context": 2})


@pytest.mark.skipif(not ACDC_SLICES.is_dir(), reason="needs ../shared/data/acdc")
def test_acdc_slices_know_their_neighbours(tmp_path):
    names = [f"patient003_frame01_slice_{i}" for i in (1, 2, 3)]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(names) + "\n")
    slices = {s.source: s for s in read_acdc_slices(ACDC_SLICES, listing)}
    first, middle, last = (slices[n] for n in names)
    assert middle.neighbours[0] is first.image and middle.neighbours[1] is last.image
    assert first.neighbours[0] is first.image  # slice 0 was not read: the slice itself
    assert last.neighbours[1] is last.image
    assert not np.array_equal(first.image, last.image)


def test_stacked_augmentation_moves_every_channel_alike():
    rng = np.random.default_rng(0)
    image = rng.random((24, 20), dtype=np.float32)
    label = (image > 0.5).astype(np.uint8)
    for seed in range(12):
        for mode in ("transunet", "rotate_scale_intensity", "transunet_scale_intensity"):
            flat, lab = augment_pair(image, label, np.random.default_rng(seed), mode)
            stack, lab3 = augment_pair(np.stack([image] * 3), label,
                                       np.random.default_rng(seed), mode)
            np.testing.assert_array_equal(lab3, lab)
            for channel in stack:
                np.testing.assert_allclose(channel, flat, atol=1e-6)


def test_dataset_with_context_puts_the_neighbours_around_the_slice():
    rng = np.random.default_rng(1)
    before, image, after = (rng.random((16, 16), dtype=np.float32) for _ in range(3))
    label = np.zeros((16, 16), np.uint8)
    s = Slice(image, label, "x", neighbours=(before, after))
    x, _ = SliceDataset([s], (16, 16), augment="none", slice_context=True)[0]
    np.testing.assert_array_equal(x.numpy(), np.stack([before, image, after]))
    x, _ = SliceDataset([s], (16, 16), augment="none")[0]
    np.testing.assert_array_equal(x.numpy(), np.stack([image] * 3))
    swapped = {tuple(SliceDataset([s], (16, 16), augment="rotate", slice_context=True,
                                  seed=k)[0][0][0, :1, :1].flatten().tolist())
               for k in range(16)}
    assert len(swapped) > 1  # the neighbours trade places in some draws


def test_train_adds_slice_context_to_a_checkpoint(tmp_path, capsys):
    plain = tmp_path / "plain"
    assert main([*TINY_TRAIN, "--out-dir", str(plain)]) == 0
    out = tmp_path / "run"
    assert main(["train", "--from", str(plain / "last.safetensors"), *TINY_TRAIN[2:],
                 "--slice-context", "1", "--max-steps", "1", "--out-dir", str(out)]) == 0
    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta.slice_context == 1
    assert meta.training["config"]["slice_context"] == 1
    # a run from it keeps it without being asked
    again = tmp_path / "again"
    assert main(["train", "--from", str(out / "last.safetensors"), *TINY_TRAIN[2:],
                 "--max-steps", "1", "--out-dir", str(again)]) == 0
    assert load_checkpoint(again / "last.safetensors")[1].slice_context == 1
    # a model trained with context cannot be trained on without it
    capsys.readouterr()
    cli_fails(["train", "--from", str(out / "last.safetensors"), *TINY_TRAIN[2:],
               "--slice-context", "0", "--out-dir", str(tmp_path / "never")], capsys,
              "slice context")
    assert not (tmp_path / "never").exists()


def test_fine_tune_of_a_context_model_keeps_it(tmp_path):
    """A fine-tune (the panel's and ``l2gnet finetune``'s path) from a checkpoint with slice
    context trains and scores with neighbours, and its taught model keeps the field."""
    from tests.helpers import two_squares
    from training.finetuning.finetune import CorrectedVolume, FinetuneSettings, run_finetune

    model = _tiny_l2gnet()
    add_slice_context(model)
    start = save_checkpoint(tmp_path / "start.safetensors", model,
                            {"class_names": ["background", "a", "b"], "input_size": [32, 32],
                             "normalization": {"kind": "none"}, "slice_context": 1})
    image, labels = two_squares()
    report = run_finetune(start, [CorrectedVolume("scan", image, labels, [1, 4])],
                          FinetuneSettings(epochs=2, samples_per_epoch=4, batch_size=2),
                          tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "last.safetensors")[1].slice_context == 1
    assert load_checkpoint(report.checkpoint)[1].slice_context == 1


def test_slices_from_a_viewer_layer_carry_their_neighbours():
    from training.data.cases import slices_from_arrays
    from training.data.normalization import NO_NORMALIZATION

    vol = np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1, 2:4, 2:4] = 1
    (s,) = slices_from_arrays(vol, labels, [1], normalization=NO_NORMALIZATION)
    np.testing.assert_array_equal(s.neighbours[0], vol[0])
    np.testing.assert_array_equal(s.neighbours[1], vol[2])
