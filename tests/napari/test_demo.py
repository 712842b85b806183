"""The embedded default: the sample scan, the shipped checkpoint, and `make demo`'s job."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_l2gnet._reader import read_nifti
from napari_l2gnet._sample import SAMPLE_SEED, sample_abdomen_ct
from napari_l2gnet._session import DEMO_CHECKPOINT
from scan_io.nifti import load_nifti
from src_model import load_checkpoint, read_metadata
from training.cli import main as cli_main
from training.data.phantom import SYNAPSE_CLASSES, make_phantom
from training.data.specs import parse_seeds
from training.evaluation.metrics import score_case
from training.inference import predict_volume

REPO = Path(__file__).resolve().parents[2]


def test_shipped_checkpoint_is_small_and_says_what_it_is():
    assert DEMO_CHECKPOINT.is_file(), "the package must ship its demo checkpoint"
    assert DEMO_CHECKPOINT.stat().st_size <= 20 * 2**20
    meta = read_metadata(DEMO_CHECKPOINT)
    assert meta["model"]["name"] == "l2gnet"
    assert meta["class_names"] == list(SYNAPSE_CLASSES)
    assert meta["normalization"] == {"kind": "ct_window", "low": -125.0, "high": 275.0}
    train = meta["training"]
    assert train["command"].startswith("l2gnet train")
    assert train["data"].startswith("phantom:")
    assert SAMPLE_SEED not in parse_seeds(train["data"].removeprefix("phantom:"))
    assert SAMPLE_SEED not in parse_seeds(train["val"].removeprefix("phantom:"))


def test_shipped_checkpoint_segments_the_sample():
    """Mean Dice >= 0.85 on the sample scan (seed 0), which it was not trained on."""
    model, meta = load_checkpoint(DEMO_CHECKPOINT)
    sample = make_phantom(0)
    pred = predict_volume(sample.image, model, metadata=meta, device="cpu")
    rows = score_case(pred.labels, sample.labels, len(SYNAPSE_CLASSES))
    dice = {SYNAPSE_CLASSES[r["class"]]: r["dice"] for r in rows}
    assert np.mean(list(dice.values())) >= 0.85, dice
    assert min(dice.values()) >= 0.6, dice  # no organ is simply missed


def test_sample_contribution_matches_the_cli_sample_on_disk(tmp_path):
    """File > Open Sample and `l2gnet sample` + File > Open give the same layers."""
    assert cli_main(["sample", str(tmp_path)]) == 0
    (image, image_kw, image_kind), (truth, truth_kw, truth_kind) = sample_abdomen_ct()
    read_image = read_nifti(tmp_path / "abdomen_ct.nii.gz")[0]
    read_truth = read_nifti(tmp_path / "abdomen_ct_truth.nii.gz")[0]
    assert (image_kind, truth_kind) == ("image", "labels")
    assert read_image[2] == "image" and read_truth[2] == "labels"
    np.testing.assert_array_equal(read_image[0], image)
    np.testing.assert_array_equal(read_truth[0], truth)
    np.testing.assert_allclose(read_image[1]["scale"], image_kw["scale"])
    np.testing.assert_allclose(read_image[1]["metadata"]["nifti"]["affine"],
                               image_kw["metadata"]["nifti"]["affine"])
    assert image.dtype == np.int16 and truth.max() == len(SYNAPSE_CLASSES) - 1


@pytest.mark.slow
def test_demo_headless_runs_the_whole_loop(tmp_path):
    """What `make demo` runs without a display: screenshot, labels file, Dice, exit 0."""
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs a display (make test runs pytest under xvfb-run)")
    out = subprocess.run(
        [sys.executable, "-m", "napari_l2gnet.demo", "--headless", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mean" in out.stdout and "liver" in out.stdout
    mean = float(next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("mean"))
                 .split()[-1])
    assert mean >= 0.85
    assert re.search(r"^Segmented \d+ slices on the (CPU|GPU) in \d+\.\d s\.$", out.stdout, re.M), (
        out.stdout)
    png = tmp_path / "demo.png"
    assert png.is_file() and png.stat().st_size > 50_000
    labels = load_nifti(tmp_path / "demo_labels.nii.gz")
    sample = make_phantom(0)
    np.testing.assert_allclose(labels.affine, sample.affine)
    assert labels.data.shape == sample.to_nifti_order(sample.labels).shape


def test_demo_reports_the_run_in_a_sentence():
    from napari_l2gnet.demo import run_sentence

    assert run_sentence(30, "cpu", 4.06) == "Segmented 30 slices on the CPU in 4.1 s."
    assert run_sentence(1, "cuda:0", 0.5) == "Segmented 1 slice on the GPU in 0.5 s."


def test_demo_shows_the_reference_whose_organ_bucket_is_purest():
    from napari_l2gnet.demo import clearest_reference, organ_bucket

    labels = np.zeros((1, 2, 2), np.int64)
    labels[0, 0] = 1  # the top row is organ
    plans = np.zeros((1, 2, 2, 2, 3), np.float32)  # (S, q, h, w, t)
    plans[0, 0, :, :, 0] = 1.0  # reference 0: every token in bucket 0 (half organ)
    plans[0, 1, 0, :, 2] = 1.0  # reference 1: organ tokens alone in bucket 2
    plans[0, 1, 1, :, 1] = 1.0
    buckets = plans.argmax(-1)  # (S, q, h, w), as the explanation holds them
    assert organ_bucket(buckets[:, 0], labels, 3) == 0
    assert organ_bucket(buckets[:, 1], labels, 3) == 2
    assert clearest_reference(buckets, labels, 3) == 1


@pytest.mark.slow
def test_headless_demo_never_replaces_files_it_did_not_write(tmp_path):
    """A user's demo.png / demo_labels.nii.gz in the working folder survive `make demo`; the
    run writes demo-1.png / demo_labels-1.nii.gz instead (issue 28 item 13)."""
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs a display (make test runs pytest under xvfb-run)")
    mine = {tmp_path / "demo.png": b"my picture", tmp_path / "demo_labels.nii.gz": b"my labels"}
    for path, content in mine.items():
        path.write_bytes(content)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "napari_l2gnet.demo", "--headless"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert {path: path.read_bytes() for path in mine} == mine
    assert (tmp_path / "demo-1.png").stat().st_size > 50_000
    load_nifti(tmp_path / "demo_labels-1.nii.gz")
    assert "demo-1.png" in out.stdout and "demo_labels-1.nii.gz" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "demo-1.png", "demo.png", "demo_labels-1.nii.gz", "demo_labels.nii.gz"]


def test_demo_claims_the_first_free_pair_of_names(tmp_path):
    from napari_l2gnet.demo import reserve_outputs

    (tmp_path / "demo_labels.nii.gz").write_bytes(b"mine")
    (tmp_path / "demo-1.png").write_bytes(b"mine too")
    assert reserve_outputs(tmp_path) == (tmp_path / "demo-2.png",
                                         tmp_path / "demo_labels-2.nii.gz")
    assert (tmp_path / "demo_labels.nii.gz").read_bytes() == b"mine"
    assert (tmp_path / "demo-1.png").read_bytes() == b"mine too"
    assert not (tmp_path / "demo.png").exists()  # half a free pair is left alone
