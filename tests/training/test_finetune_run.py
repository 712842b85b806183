"""Fine-tuning on corrections (training.finetuning.finetune): epoch 0 is the starting model,
the start wins when nothing beats it, the report, the CLI, the uncertainty ranking, and the worker
process that never re-runs the user's script."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import two_squares, write_nifti
from training.data.normalization import NO_NORMALIZATION
from training.finetuning.finetune import (
    CHOSEN,
    REPORT,
    CorrectedVolume,
    FinetuneSettings,
    pseudo_slice_indices,
    run_finetune,
    volume_from_arrays,
)
from training.inference.uncertainty import rank_scores, rank_slices, slice_entropy

ROOT = Path(__file__).resolve().parents[2]
QUICK = dict(epochs=2, samples_per_epoch=4, batch_size=2)


def test_epoch_zero_scores_the_start_and_report(finetune_start, tmp_path) -> None:
    image, labels = two_squares()
    events = []
    report = run_finetune(finetune_start, [CorrectedVolume("scan", image, labels, [1, 4])],
                          FinetuneSettings(**QUICK), tmp_path / "run", callback=events.append)
    first = events[0]
    assert (first.kind, first.epoch, first.step) == ("epoch", 0, 0)
    assert first.val_dice["mean"] == pytest.approx(report.corrected_dice_before["mean"])
    assert first.total_steps == sum(e.kind == "step" for e in events) == 4
    epochs = [e.epoch for e in events if e.kind == "epoch"]
    assert epochs == [0, 1, 2]
    assert [h["epoch"] for h in report.history] == [0, 1, 2]
    saved = json.loads((tmp_path / "run" / REPORT).read_text())
    assert saved["chosen_epoch"] == report.chosen_epoch
    assert Path(report.checkpoint) == tmp_path / "run" / CHOSEN
    best = max(h["val_dice"]["mean"] for h in report.history)
    assert report.corrected_dice_after["mean"] == pytest.approx(best, abs=1e-6)
    assert report.uncorrected_changed is not None and 0 <= report.uncorrected_changed <= 1


def test_class_balance_weights_the_loss_of_a_plain_fine_tune(finetune_start, tmp_path) -> None:
    """The CE class weights reach the loss when no class is added (they were all 1 once: the
    'grown model's own classes stay at 1' rule was applied to every class of every run)."""
    from src_model import read_metadata

    image, labels = two_squares()
    labels[:, 18:28, 18:28] = 0
    labels[:, 20:23, 20:23] = 2  # a small structure beside a large one
    run_finetune(finetune_start, [CorrectedVolume("scan", image, labels, [1, 4])],
                 FinetuneSettings(**QUICK), tmp_path / "run")
    loss = read_metadata(tmp_path / "run" / "last.safetensors")["training"]["config"]["loss"]
    w = loss["class_weights"]
    assert w[2] > w[1] > 1.0 > w[0]
    run_finetune(finetune_start, [CorrectedVolume("scan", image, labels, [1, 4])],
                 FinetuneSettings(**QUICK, class_balance=False), tmp_path / "plain")
    plain = read_metadata(tmp_path / "plain" / "last.safetensors")["training"]["config"]["loss"]
    assert plain["class_weights"] is None


def test_start_is_kept_when_nothing_beats_it(finetune_start, tmp_path) -> None:
    from training.inference import predict_volume

    image, _ = two_squares()
    own = predict_volume(image, str(finetune_start)).labels  # corrections = what it says: Dice 1
    report = run_finetune(finetune_start, [CorrectedVolume("scan", image, own, [0, 3])],
                          FinetuneSettings(**QUICK, lr=0.05), tmp_path / "run")
    assert report.chosen_epoch == 0
    assert report.corrected_dice_before == report.corrected_dice_after
    assert report.uncorrected_changed == 0.0
    assert Path(report.checkpoint).read_bytes() == finetune_start.read_bytes()
    assert "kept" in report.describe()


def test_pseudo_labels_follow_trust(finetune_start, tmp_path) -> None:
    from training.inference import predict_volume

    image, labels = two_squares(n=8)
    own = predict_volume(image, str(finetune_start)).labels
    trusted = run_finetune(finetune_start, [CorrectedVolume("s", image, own, [2])],
                           FinetuneSettings(**QUICK, keep_weight=2), tmp_path / "a")
    assert trusted.trust == pytest.approx(1.0) and trusted.pseudo_slices == 2
    assert trusted.kept_bn_stats
    doubted = run_finetune(finetune_start, [CorrectedVolume("s", image, labels, [2])],
                           FinetuneSettings(**QUICK, keep_weight=10), tmp_path / "c")
    assert doubted.trust < 0.5  # the untrained start disagrees: it learns freely
    assert doubted.pseudo_slices == 0 and not doubted.kept_bn_stats
    off = run_finetune(finetune_start, [CorrectedVolume("s", image, own, [2])],
                       FinetuneSettings(**QUICK, keep_weight=0), tmp_path / "b")
    assert off.pseudo_slices == 0
    assert pseudo_slice_indices([0, 1, 3, 4, 5, 6, 7], 3) == [0, 4, 7]
    assert pseudo_slice_indices([5, 6], 9) == [5, 6] and pseudo_slice_indices([5], 0) == []


def test_volume_from_arrays_names_the_layer() -> None:
    image, labels = two_squares()
    vol = volume_from_arrays(np.moveaxis(image, 0, 2), np.moveaxis(labels, 0, 2), [1, 2],
                             axis=2, normalization=NO_NORMALIZATION, num_classes=3, name="mine")
    assert vol.image.shape == (6, 32, 32) and vol.uncorrected == [0, 3, 4, 5]
    np.testing.assert_array_equal(vol.labels, labels)
    with pytest.raises(ValueError, match="'mine' has label 2 but the model has 2 classes"):
        volume_from_arrays(image, labels, [1], axis=0, normalization=NO_NORMALIZATION,
                           num_classes=2, name="mine")
    with pytest.raises(ValueError, match="outside 0..5"):
        CorrectedVolume("x", image, labels, [6])


def test_uncertainty_ranking() -> None:
    probs = np.zeros((2, 5, 4, 4), np.float16)
    probs[0] = 1.0  # certain everywhere ...
    probs[:, 1] = 0.5  # ... but slice 1 is a coin toss
    probs[0, 3], probs[1, 3] = 0.8, 0.2  # and slice 3 hesitates a little
    probs[0, 4], probs[1, 4] = 0.55, 0.45  # slice 4 nearly a coin toss
    scores = slice_entropy(probs)
    assert scores[1] == pytest.approx(np.log(2), rel=1e-3) and scores[0] == pytest.approx(0)
    assert rank_slices(probs) == [1, 4, 3, 0, 2]
    assert rank_slices(probs, 2, exclude=[1]) == [4, 3]
    assert rank_scores(scores, 3, spacing=2) == [1, 4]  # 3 and 0 neighbour 4 and 1
    assert rank_slices(np.moveaxis(probs, 1, 3), 1, axis=2) == [1]  # slices along the last axis


def test_cli_finetune_on_nifti_with_labels_on_corrected_slices(finetune_start, tmp_path,
                                                                capsys) -> None:
    from training.cli import main

    image, labels = two_squares()
    only = np.zeros_like(labels)
    only[[1, 4]] = labels[[1, 4]]  # the corrected slices carry labels, the rest are 0
    data = tmp_path / "data"
    write_nifti(data / "imagesTr" / "scan_0000.nii.gz", np.moveaxis(image, 0, 2))
    write_nifti(data / "labelsTr" / "scan.nii.gz", np.moveaxis(only, 0, 2))
    out = tmp_path / "run"
    argv = ["finetune", "--from", str(finetune_start), "--data", str(data), "--out-dir", str(out),
            "--epochs", "2", "--batch-size", "2", "--threads", "1"]
    assert main(argv) == 0
    history = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    report = json.loads((out / REPORT).read_text())
    assert report["corrected_slices"] == 2
    from src_model import load_checkpoint

    load_checkpoint(out / CHOSEN)
    assert main(argv) == 2  # an existing run is not overwritten ...
    assert "--overwrite" in capsys.readouterr().err
    empty = tmp_path / "empty"
    write_nifti(empty / "imagesTr" / "scan_0000.nii.gz", np.moveaxis(image, 0, 2))
    write_nifti(empty / "labelsTr" / "scan.nii.gz", np.zeros((32, 32, 6), np.uint8))
    assert main(["finetune", "--from", str(finetune_start), "--data", str(empty), "--out-dir",
                 str(tmp_path / "run2")]) == 2
    assert "No labelled slices" in capsys.readouterr().err


def test_worker_never_reruns_an_unguarded_user_script(finetune_start, tmp_path) -> None:
    """A user script with no ``if __name__ == "__main__":`` guard starts a fine-tune: the
    script's top level runs once (multiprocessing's spawn would run it again in the child)."""
    counter = tmp_path / "runs.txt"
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(f"""
        import numpy as np
        from training.finetuning.finetune import CorrectedVolume, FinetuneSettings
        from training.finetuning.process import FinetuneJob, FinetuneProcess

        with open({str(counter)!r}, "a") as f:
            f.write("ran\\n")
        rng = np.random.default_rng(0)
        image = rng.random((4, 32, 32), dtype=np.float32)
        labels = (image > 0.5).astype(np.uint8)
        job = FinetuneJob({str(finetune_start)!r}, [CorrectedVolume("s", image, labels, [1])],
                          FinetuneSettings(epochs=1, samples_per_epoch=2, batch_size=2),
                          threads=1)
        proc = FinetuneProcess(job, {str(tmp_path / "run")!r})
        proc.start()
        assert proc.join(300)
        events = proc.poll()
        assert proc.result is not None, proc.error
        print("EVENTS", [e.kind for e in events])
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={**__import__("os").environ,
                                                       "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert counter.read_text().splitlines() == ["ran"]
    assert "EVENTS ['epoch', 'step', 'epoch', 'done']" in done.stdout


def test_fine_tune_records_the_corrected_scans_pixel_size(finetune_start, tmp_path) -> None:
    """A start without a target pixel size: the new finetune_start records the median in-plane
    pixel size of the corrected scans (scans of different sizes are scored each on its own)."""
    from src_model import load_checkpoint
    from training.inference import predict_volume

    image, labels = two_squares()
    big = np.kron(image, np.ones((1, 2, 2), np.float32))  # the same scene at half the pixel
    big_labels = np.kron(labels, np.ones((1, 2, 2), np.uint8))
    volumes = [CorrectedVolume("coarse", image, labels, [1, 4], spacing=(3.0, 1.0, 1.0)),
               CorrectedVolume("fine", big, big_labels, [2], spacing=(0.5, 0.5))]
    assert volumes[0].spacing == (1.0, 1.0) and volumes[1].spacing == (0.5, 0.5)
    report = run_finetune(finetune_start, volumes, FinetuneSettings(**QUICK), tmp_path / "run")
    _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta.target_spacing_mm == (0.75, 0.75)
    assert meta.training["config"]["target_spacing_mm"] == [0.75, 0.75]
    chosen = load_checkpoint(report.checkpoint)[1]
    assert chosen.target_spacing_mm == (None if report.chosen_epoch == 0 else (0.75, 0.75))
    # the taught model is used at that pixel size on a scan with a voxel size
    pred = predict_volume(big, str(tmp_path / "run" / "last.safetensors"), spacing=(3, .5, .5),
                          device="cpu", return_probabilities=True)
    plain = predict_volume(big, str(tmp_path / "run" / "last.safetensors"), device="cpu",
                           return_probabilities=True)
    assert not np.array_equal(pred.probabilities, plain.probabilities)


def _start_at(tmp_path: Path, input_size: int, spacing_mm: float) -> Path:
    """An untrained tiny L2GNet start with an input size and a target pixel size."""
    from src_model import build_model, save_checkpoint
    from src_model.testing import tiny_config

    model = build_model("l2gnet", 3, **tiny_config("l2gnet"))
    return save_checkpoint(tmp_path / "start.safetensors", model,
                           {"class_names": ["background", "a", "b"],
                            "input_size": [input_size, input_size],
                            "normalization": {"kind": "none"},
                            "target_spacing_mm": [spacing_mm, spacing_mm]})


def test_fine_tune_keeps_the_start_pixel_size(tmp_path) -> None:
    from src_model import load_checkpoint

    start = _start_at(tmp_path, 32, 2.0)
    image, labels = two_squares()
    run_finetune(start, [CorrectedVolume("scan", image, labels, [1, 4], spacing=(1.0, 1.0))],
                 FinetuneSettings(**QUICK), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "last.safetensors")[1].target_spacing_mm == \
        (2.0, 2.0)


def test_fitted_window_and_epoch_samples() -> None:
    """The taught model's window holds the corrected slices at the model's pixel size (a
    3 mm CT of 101 x 122 pixels: 128, not 224); an epoch gets the area saved as samples."""
    from training.finetuning.finetune import epoch_samples, fitted_window

    ct = CorrectedVolume("ct", np.zeros((30, 101, 122), np.float32),
                         np.zeros((30, 101, 122), np.uint8), [1], spacing=(3.0, 3.0))
    assert fitted_window([ct], (3.0, 3.0), (224, 224)) == (128, 128)
    assert fitted_window([ct], (1.5, 1.5), (224, 224)) == (224, 224)  # 244 px: capped
    assert fitted_window([ct], (6.0, 6.0), (224, 224)) == (112, 112)  # half the input
    plain = CorrectedVolume("plain", ct.image, ct.labels, [1])
    assert fitted_window([ct, plain], (3.0, 3.0), (224, 224)) == (224, 224)
    assert epoch_samples(128, (224, 224), (128, 128)) == 392
    assert epoch_samples(128, (224, 224), (224, 224)) == 128
    assert epoch_samples(100, (224, 224), (96, 96)) == 400  # at most 4x


def test_fine_tune_trains_in_the_fitted_window(tmp_path) -> None:
    """A start with a 64-pixel input, a scan of 32 x 32 pixels at its pixel size: the taught
    model relearns in a 32-pixel window with four times the samples an epoch (the area
    saved); ``window="model"``, or a body kept frozen, keeps the start's input size."""
    from src_model import load_checkpoint

    start = _start_at(tmp_path, 64, 1.0)
    image, labels = two_squares()
    events = []
    run_finetune(start, [CorrectedVolume("scan", image, labels, [1, 4], spacing=(1.0, 1.0))],
                 FinetuneSettings(epochs=1, samples_per_epoch=2, batch_size=2),
                 tmp_path / "run", callback=events.append)
    meta = load_checkpoint(tmp_path / "run" / "last.safetensors")[1]
    assert meta.input_size == (32, 32)
    assert sum(e.kind == "step" for e in events) == 4  # 2 samples x (64 / 32) ** 2 / batch 2
    run_finetune(start, [CorrectedVolume("scan", image, labels, [1, 4], spacing=(1.0, 1.0))],
                 FinetuneSettings(epochs=1, samples_per_epoch=2, batch_size=2, window="model"),
                 tmp_path / "model")
    assert load_checkpoint(tmp_path / "model" / "last.safetensors")[1].input_size == (64, 64)
    # a start that keeps its body (trusted, or told to) keeps the window it knows
    run_finetune(start, [CorrectedVolume("scan", image, labels, [1, 4], spacing=(1.0, 1.0))],
                 FinetuneSettings(epochs=1, samples_per_epoch=2, batch_size=2, freeze_body=True),
                 tmp_path / "frozen")
    assert load_checkpoint(tmp_path / "frozen" / "last.safetensors")[1].input_size == (64, 64)
