"""Teaching a model a class it does not have (training.fitting.new_classes, run_finetune,
prepare_run and the CLI): the model grows, the card records it, the old classes are kept, and
bad input (renamed classes, unnamed labels, 200 new values, one painted voxel) gets one
line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from src_model import load_checkpoint
from tests.helpers import FINETUNE_NAMES as NAMES
from tests.helpers import cli_fails, save_finetune_start, two_squares, write_nifti
from training.cli import main
from training.finetuning.finetune import (
    CHOSEN,
    REPORT,
    CorrectedVolume,
    FinetuneSettings,
    complete_new_only_slices,
    run_finetune,
)
from training.fitting.new_classes import NewClassRequest, painted_counts

QUICK = dict(epochs=2, samples_per_epoch=4, batch_size=2)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return save_finetune_start(tmp_path / "start.safetensors", plan_vote=True)


def _scan(n: int = 6, lesion: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``two_squares`` (dimmer) and a bright square the model was never taught: label 3."""
    image, labels = two_squares(n=n, bright=(0.5, 0.3))
    if lesion:
        image[:, 20:26, 4:10] = 1.0
        labels[:, 20:26, 4:10] = 3
    return image, labels


def _dataset(root: Path, labels: np.ndarray, image: np.ndarray | None = None) -> Path:
    image = _scan()[0] if image is None else image
    write_nifti(root / "imagesTr" / "scan_0000.nii.gz", np.moveaxis(image, 0, 2))
    write_nifti(root / "labelsTr" / "scan.nii.gz", np.moveaxis(labels, 0, 2))
    return root


def test_run_finetune_grows_the_model_and_records_it(checkpoint, tmp_path) -> None:
    image, labels = _scan()
    report = run_finetune(checkpoint, [CorrectedVolume("scan", image, labels, [1, 4])],
                          FinetuneSettings(**QUICK), tmp_path / "run",
                          class_names=[*NAMES, "lesion"], taught_on="two test slices")
    assert report.new_classes == ["lesion"]
    assert report.corrected_dice_before["lesion"] == 0.0  # the grown start never predicts it
    assert report.froze_body  # by default a growing run trains the decoder and head only
    assert "lesion" in report.corrected_dice_after and "New class 'lesion'" in report.describe()
    model, meta = load_checkpoint(report.checkpoint)
    assert model.num_classes == 4 and meta.class_names == (*NAMES, "lesion")
    (added,) = meta.card.added_classes
    assert (added.name, added.index, added.taught_on) == ("lesion", 3, "two test slices")
    assert (added.scans, added.slices, added.voxels) == (1, 2, 72)
    assert added.derived_from == str(checkpoint) and added.date
    assert json.loads((tmp_path / "run" / REPORT).read_text())["new_classes"] == ["lesion"]
    from training.inference.shipped_models import (
        describe_checkpoint,  # what the model chooser shows
    )

    assert "Added class lesion (label 3): taught on two test slices, 2 slices, 1 scans" in \
        describe_checkpoint(report.checkpoint).details()


def test_start_kept_when_growing_is_the_grown_start(checkpoint, tmp_path) -> None:
    """A run where no epoch beats the start still returns a model with the new class."""
    image, labels = _scan()
    report = run_finetune(checkpoint, [CorrectedVolume("scan", image, labels, [1])],
                          FinetuneSettings(epochs=1, samples_per_epoch=2, batch_size=2,
                                           lr=1e-9), tmp_path / "run",
                          class_names=[*NAMES, "lesion"])
    model, meta = load_checkpoint(report.checkpoint)
    assert model.num_classes == 4 and meta.card.added_classes[0].name == "lesion"
    if report.chosen_epoch == 0:
        assert "not learned" in report.describe()


def test_slices_painted_with_only_the_new_class_keep_the_models_labels() -> None:
    image, labels = _scan(3)
    only_new = np.where(labels == 3, 3, 0).astype(np.uint8)
    only_new[2] = labels[2]  # slice 2 holds old classes too: the user's, untouched
    predicted = [np.where(labels == 3, 0, labels)]  # what the model said: no lesion
    (vol,), count = complete_new_only_slices(
        [CorrectedVolume("s", image, only_new, [0, 2])], predicted, [3])
    assert count == 1
    np.testing.assert_array_equal(vol.labels[0], labels[0])  # lesion + the model's a, b
    np.testing.assert_array_equal(vol.labels[1], only_new[1])  # not corrected: unchanged
    np.testing.assert_array_equal(vol.labels[2], labels[2])


def test_requests_and_counts() -> None:
    req = NewClassRequest.from_names(NAMES, [*NAMES, "lesion", "cyst"])
    assert req.new_indices == [3, 4] and req.growing
    assert not NewClassRequest.from_names(NAMES, None).growing
    with pytest.raises(ValueError, match="Label 5 in x has no class name"):
        req.check_labels(5, "x")
    _, labels = _scan(2)
    labels[1, 0, 0:3] = 4
    counts = painted_counts([("s", labels)], [3, 4], req.names)
    assert [(c.voxels, c.slices, c.scans) for c in counts] == [(72, 2, 1), (3, 1, 1)]
    warnings = req.check_painted(counts, "x")
    assert len(warnings) == 1 and "'cyst' (label 4) is painted on only 3 voxel(s): too few" \
        in warnings[0]
    labels[labels == 4] = 0
    with pytest.raises(ValueError, match="'cyst' .* is not painted anywhere in x"):
        req.check_painted(painted_counts([("s", labels)], [3, 4], req.names), "x")


def test_cli_finetune_grows_with_class_names(checkpoint, tmp_path, capsys) -> None:
    image, labels = _scan()
    only = np.zeros_like(labels)
    only[[1, 4]] = labels[[1, 4]]
    data = _dataset(tmp_path / "data", only, image)
    out = tmp_path / "run"
    base = ["finetune", "--from", str(checkpoint), "--data", str(data), "--epochs", "1",
            "--batch-size", "2", "--threads", "1"]
    assert main([*base, "--class-names", "background,a,b,lesion", "--out-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert "adding 1 new class(es): lesion (label 3, 72 voxels on 2 slices)" in err
    model, meta = load_checkpoint(out / CHOSEN)
    assert model.num_classes == 4 and meta.class_names[-1] == "lesion"
    assert "l2gnet finetune --data" in meta.card.added_classes[0].taught_on
    assert json.loads((out / REPORT).read_text())["froze_body"]
    free = tmp_path / "free"
    assert main([*base, "--class-names", "background,a,b,lesion", "--out-dir", str(free),
                 "--no-freeze-body"]) == 0
    assert not json.loads((free / REPORT).read_text())["froze_body"]


@pytest.mark.parametrize(("names", "words"), [
    ("background,b,a,lesion", "would rename or reorder the model's classes: name 1 is 'b'"),
    ("background,a,b", "Label 3 in .* has no class name .* --class-names background,a,b,NAME"),
    (None, "Label 3 in .* has no class name"),
    ("background,a,b,lesion,cyst", "'cyst' \\(label 4\\) is not painted anywhere"),
])
def test_cli_finetune_refusals(checkpoint, tmp_path, capsys, names, words) -> None:
    _, labels = _scan()
    data = _dataset(tmp_path / "data", labels)
    argv = ["finetune", "--from", str(checkpoint), "--data", str(data), "--out-dir",
            str(tmp_path / "run")]
    if names:
        argv += ["--class-names", names]
    err = cli_fails(argv, capsys)
    assert __import__("re").search(words, err), err
    assert not (tmp_path / "run").exists()


def test_cli_refuses_200_new_values_and_warns_on_one_voxel(checkpoint, tmp_path,
                                                           capsys) -> None:
    image, labels = _scan(lesion=False)
    many = labels.copy()
    many[0, 0, :32] = np.arange(3, 35)
    many[1, 0, :32] = np.arange(35, 67)
    many[2, :, 0] = 200
    data = _dataset(tmp_path / "many", many, image)
    argv = ["finetune", "--from", str(checkpoint), "--data", str(data), "--out-dir",
            str(tmp_path / "r")]
    assert main(argv) == 2
    assert "more than 8 new classes at once" in capsys.readouterr().err
    names = ",".join([*NAMES, *(f"n{i}" for i in range(3, 201))])
    assert main([*argv, "--class-names", names]) == 2
    assert "198 new classes at once is more than 8" in capsys.readouterr().err
    one = labels.copy()
    one[2, 30, 30] = 3
    data = _dataset(tmp_path / "one", one, image)
    assert main(["finetune", "--from", str(checkpoint), "--data", str(data), "--out-dir",
                 str(tmp_path / "r1"), "--class-names", "background,a,b,dot", "--epochs", "1",
                 "--batch-size", "2", "--threads", "1"]) == 0
    assert "warning: new class 'dot' (label 3) is painted on only 1 voxel(s): too few to " \
        "learn" in capsys.readouterr().err


def test_cli_train_from_grows_and_refuses_renames(checkpoint, tmp_path, capsys) -> None:
    _, labels = _scan()
    data = _dataset(tmp_path / "data", labels)
    base = ["train", "--from", str(checkpoint), "--data", str(data), "--input-size", "32", "32",
            "--epochs", "1", "--batch-size", "2", "--max-steps", "2", "--threads", "1",
            "--optimizer", "adamw", "--lr", "0.001"]
    out = tmp_path / "run"
    assert main([*base, "--class-names", "background,a,b,lesion", "--out-dir", str(out)]) == 0
    model, meta = load_checkpoint(out / "last.safetensors")
    assert model.num_classes == 4 and meta.class_names == (*NAMES, "lesion")
    assert meta.card.added_classes[0].taught_on == str(data)
    assert meta.card.added_classes[0].slices == 6
    capsys.readouterr()
    assert main([*base, "--class-names", "background,A,b,lesion", "--out-dir",
                 str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "l2gnet train: error: class names would rename or reorder" in err
    assert main([*base, "--out-dir", str(tmp_path / "r3")]) == 2
    assert "Training label 3 in scan" in capsys.readouterr().err


def test_growing_keeps_the_body_and_the_old_class_weights(checkpoint, tmp_path) -> None:
    from training.finetuning.finetune import BODY, growth_weights

    image, labels = _scan()
    before, _ = load_checkpoint(checkpoint)
    report = run_finetune(checkpoint, [CorrectedVolume("scan", image, labels, [1, 4])],
                          FinetuneSettings(**QUICK, lr=0.01), tmp_path / "run",
                          class_names=[*NAMES, "lesion"])
    assert report.froze_body and report.kept_bn_stats  # even though the start is untrained
    after, _ = load_checkpoint(tmp_path / "run" / "last.safetensors")
    old, new = before.state_dict(), after.state_dict()
    for name, tensor in old.items():
        if name.startswith(BODY) and tensor.is_floating_point() and "bucket_votes" not in name:
            torch.testing.assert_close(new[name], tensor, msg=name)
    assert not torch.equal(new["head.weight"][:3], old["head.weight"])  # the head learned
    assert growth_weights((0.5, 2.0, 3.0, 9.0), 3) == (1.0, 1.0, 1.0, 9.0)
    free = run_finetune(checkpoint, [CorrectedVolume("scan", image, labels, [1, 4])],
                        FinetuneSettings(**QUICK, lr=0.01, freeze_body=False),
                        tmp_path / "free", class_names=[*NAMES, "lesion"])
    assert not free.froze_body
