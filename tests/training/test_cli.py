"""The ``l2gnet`` command line (``training.cli.main``): sample, train, evaluate, predict, the
user errors (exit status 2, one line on stderr) and every subcommand's --help."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from src_model import load_checkpoint
from tests.helpers import CLI, cli_fails
from training.cli import main
from training.data.phantom import SYNAPSE_CLASSES

TRAIN = ["train", "--tiny", "--data", "phantom:1", "--val", "phantom:2", "--phantom-shape",
         "8", "48", "48", "--input-size", "48", "48", "--epochs", "1", "--device", "cpu",
         "--optimizer", "adamw", "--lr", "0.003"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert main([*TRAIN, "--out-dir", str(out)]) == 0
    return out / "last.safetensors"


def _oblique_nifti(path: Path, shape=(36, 30, 6)) -> nib.Nifti1Image:
    """A small CT-like scan with an oblique, anisotropic affine and distinct q/s-form codes."""
    rng = np.random.default_rng(0)
    data = rng.integers(-300, 400, shape).astype(np.int16)
    c, s = np.cos(0.2), np.sin(0.2)
    affine = np.array([[-1.4 * c, -1.6 * s, 0, 40.0], [-1.4 * s, 1.6 * c, 0, -12.0],
                       [0, 0, 4.0, -30.0], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return nib.load(str(path))


# ---------------------------------------------------------------- sample


def test_sample_writes_loadable_nifti(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "s")]) == 0
    image_path = tmp_path / "s" / "abdomen_ct.nii.gz"
    truth_path = tmp_path / "s" / "abdomen_ct_truth.nii.gz"
    printed = capsys.readouterr().out.split()
    assert printed == [str(image_path), str(truth_path)]
    image, truth = nib.load(str(image_path)), nib.load(str(truth_path))
    assert image.get_data_dtype() == np.int16
    assert truth.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(image.affine, truth.affine)
    assert image.shape == truth.shape == (160, 160, 40)  # nibabel's (i, j, k)
    assert set(np.unique(np.asarray(truth.dataobj)).tolist()) == set(range(9))
    # The voxel sizes are the phantom's (columns, rows, slices).
    np.testing.assert_allclose(image.header.get_zooms(), (2.2, 2.2, 3.0))

    before = {p: p.read_bytes() for p in (image_path, truth_path)}
    assert main(["sample", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "l2gnet sample: error:" in err and "exists" in err
    assert {p: p.read_bytes() for p in before} == before
    assert main(["sample", str(tmp_path / "s"), "--overwrite"]) == 0


def test_sample_other_seed_has_its_own_names(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--seed", "3"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "abdomen_ct_seed3.nii.gz", "abdomen_ct_seed3_truth.nii.gz"]


# ---------------------------------------------------------------- train


def test_train_writes_checkpoints(checkpoint):
    out = checkpoint.parent
    assert (out / "last.safetensors").is_file() and (out / "best.safetensors").is_file()
    model, meta = load_checkpoint(checkpoint)
    assert model.num_classes == 9
    assert meta["class_names"] == list(SYNAPSE_CLASSES)
    assert len(meta["class_colors"]) == 9
    assert meta["input_size"] == [48, 48]
    assert meta["normalization"]["kind"] == "ct_window"
    assert "slice_axis" not in meta and meta.model.num_classes == 9
    training = meta["training"]
    assert training["epochs_done"] == 1 and training["data"] == "phantom:1"
    assert training["val"] == "phantom:2"
    assert training["command"].startswith("l2gnet train --tiny --data phantom:1")


def test_train_prints_history(tmp_path, capsys):
    args = [*TRAIN, "--val", "phantom:2", "--max-steps", "1", "--out-dir", str(tmp_path)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.strip().splitlines()]  # stdout: JSON only
    assert len(records) == 1
    assert records[0]["epoch"] == 1 and records[0]["step"] == 1
    assert set(records[0]["val_dice"]) == set(SYNAPSE_CLASSES[1:]) | {"mean"}
    assert "last checkpoint:" in err and "epoch 1: val Dice" in err


def test_train_phantom_keeps_all_synapse_classes(tmp_path):
    """A small phantom may miss an organ (here the stomach, 8): still a 9-class model."""
    from training.data.phantom import make_phantom

    assert make_phantom(0, shape=(7, 33, 65)).labels.max() == 7
    assert main(["train", "--tiny", "--data", "phantom:0", "--phantom-shape", "7", "33", "65",
                 "--input-size", "32", "64", "--epochs", "1", "--max-steps", "1",
                 "--device", "cpu", "--out-dir", str(tmp_path)]) == 0
    model, meta = load_checkpoint(tmp_path / "last.safetensors")
    assert model.num_classes == 9 and meta["class_names"] == list(SYNAPSE_CLASSES)
    assert meta["input_size"] == [32, 64]


def test_fine_tune_from_a_checkpoint(checkpoint, tmp_path):
    assert main(["train", "--from", str(checkpoint), "--data", "phantom:4", "--phantom-shape",
                 "6", "48", "48", "--input-size", "48", "48", "--epochs", "1",
                 "--max-steps", "1", "--device", "cpu", "--out-dir", str(tmp_path)]) == 0
    model, meta = load_checkpoint(tmp_path / "last.safetensors")
    _, base = load_checkpoint(checkpoint)
    assert model.num_classes == 9
    assert meta["class_names"] == base["class_names"]
    assert meta["model"]["config"] == base["model"]["config"]
    assert meta["normalization"] == base["normalization"]
    assert meta["training"]["data"] == "phantom:4"
    assert meta["training"]["config"]["loss"] == base["training"]["config"]["loss"]


def test_continued_training_keeps_the_checkpoints_plan_terms_unless_given(tmp_path):
    """A paper-literal checkpoint continues with the paper's loss, not the default preset's."""
    common = ["--data", "phantom:4", "--phantom-shape", "6", "48", "48", "--input-size", "48",
              "48", "--epochs", "1", "--max-steps", "1", "--device", "cpu"]
    paper, kept, given = tmp_path / "paper", tmp_path / "kept", tmp_path / "given"
    assert main(["train", "--tiny", "--model", "l2gnet-paper", *common,
                 "--out-dir", str(paper)]) == 0
    for out, extra in ((kept, []), (given, ["--bucket-weight", "2"])):
        assert main(["train", "--from", str(paper / "last.safetensors"), *common, *extra,
                     "--out-dir", str(out)]) == 0

    def weights(run: Path) -> tuple[float, float]:
        loss = load_checkpoint(run / "last.safetensors")[1]["training"]["config"]["loss"]
        return loss["bucket_weight"], loss["vote_weight"]

    assert weights(paper) == weights(kept) == (0.0, 0.0)
    assert weights(given) == (2.0, 0.0)


def test_train_on_unlabelled_data_is_a_user_error(tmp_path, capsys):
    from scan_io.nifti import save_nifti

    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    save_nifti(root / "imagesTr" / "x_0000.nii.gz", np.zeros((16, 16, 3), np.int16))
    save_nifti(root / "labelsTr" / "x.nii.gz", np.zeros((16, 16, 3), np.uint8), labels=True)
    assert main(["train", "--tiny", "--data", str(root), "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "l2gnet train: error: No labelled training slices" in err


def test_train_user_errors(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "none"), "--out-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad_names = [*TRAIN, "--class-names", "bg,a,b", "--out-dir", str(tmp_path)]
    assert main(bad_names) == 2
    assert "--class-names gives 3 names but the model has 9 classes" in capsys.readouterr().err
    assert main([*TRAIN, "--model", "nonsense", "--out-dir", str(tmp_path)]) == 2
    assert "unknown training preset 'nonsense'" in capsys.readouterr().err


# ---------------------------------------------------------------- evaluate


def test_evaluate_writes_json_and_prints_a_table(checkpoint, tmp_path, capsys):
    report_path = tmp_path / "sub" / "r.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", "phantom:3",
                 "--device", "cpu", "--out", str(report_path)]) == 0
    out, err = capsys.readouterr()
    report = json.loads(report_path.read_text())
    assert report["protocol"] == "transunet"
    assert report["data"] == "phantom:3" and report["checkpoint"] == str(checkpoint)
    assert list(report["cases"]) == ["phantom_3"]
    rows = report["cases"]["phantom_3"]
    assert len(rows) == 8  # one per foreground class
    for row in rows:
        assert 0.0 <= row["dice"] <= 1.0 and row["hd95"] >= 0.0
    per_class = report["summary"]["per_class"]
    assert set(per_class) == set(SYNAPSE_CLASSES[1:])
    assert all({"dice", "hd95"} <= set(v) for v in per_class.values())
    # The table: header, a row per organ, the mean.
    lines = out.splitlines()
    assert lines[0].split() == ["class", "Dice", "HD95"]
    for name in SYNAPSE_CLASSES[1:]:
        assert any(line.startswith(name) for line in lines)
    assert any(line.startswith("mean") for line in lines)
    assert "phantom_3:" in out
    assert "wrote" in err


def test_evaluate_clinical_on_a_nifti_folder(checkpoint, tmp_path, capsys):
    from scan_io.nifti import save_nifti
    from training.data.phantom import make_phantom

    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    ph = make_phantom(4, shape=(6, 48, 48))
    save_nifti(root / "imagesTr" / "p4_0000.nii.gz", ph.to_nifti_order(ph.image),
               affine=ph.affine)
    save_nifti(root / "labelsTr" / "p4.nii.gz", ph.to_nifti_order(ph.labels),
               affine=ph.affine, labels=True)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(root),
                 "--protocol", "clinical", "--device", "cpu", "--batch-size", "2",
                 "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["protocol"] == "clinical" and list(report["cases"]) == ["p4"]
    assert len(report["cases"]["p4"]) == 8
    assert "p4:" in capsys.readouterr().out


def test_evaluate_acdc_volume(checkpoint, shared_data, tmp_path):
    """h5 volumes are already in [0, 1]: evaluated as they are, whatever the checkpoint's
    normalisation says."""
    from training.data import read_h5_volumes
    from training.evaluation.scoring import evaluate

    name = (shared_data / "acdc" / "val.list").read_text().split()[0] + ".h5"
    folder = tmp_path / "vols"
    folder.mkdir()
    (folder / name).symlink_to(shared_data / "acdc" / "val_volumes" / name)
    cases = read_h5_volumes(folder)
    seen = []
    report = evaluate(str(checkpoint), cases, device="cpu",
                      on_case=lambda case, rows: seen.append((case, len(rows))))
    assert seen == [(name.removesuffix(".h5"), 8)]
    assert report["class_names"] == list(SYNAPSE_CLASSES)
    assert report["summary"]["num_cases"] == 1


def test_evaluate_refuses_labels_beyond_the_model(tmp_path):
    import torch

    from src_model import build_model
    from src_model.testing import tiny_config
    from training.data import Case
    from training.evaluation.scoring import evaluate

    torch.manual_seed(0)
    model = build_model("l2gnet", 3, **tiny_config("l2gnet"))
    label = np.zeros((2, 32, 32), np.uint8)
    label[0, 4:8, 4:8] = 5
    case = Case("c1", np.zeros((2, 32, 32), np.float32), label)
    with pytest.raises(ValueError, match="c1: label value 5 does not fit a model with 3 classes"):
        evaluate(model, [case], device="cpu")


def test_evaluate_user_errors(checkpoint, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "x.safetensors"),
                 "--data", "phantom:3"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(checkpoint),
                 "--data", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- predict


HEADER_FIELDS = ("dim", "pixdim", "qform_code", "sform_code", "quatern_b", "quatern_c",
                 "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y",
                 "srow_z", "xyzt_units")


def _same_grid(src: nib.Nifti1Image, out_path: Path) -> None:
    out = nib.load(str(out_path))
    assert out.shape == src.shape
    np.testing.assert_array_equal(out.affine, src.affine)
    for key in HEADER_FIELDS:
        np.testing.assert_array_equal(out.header[key], src.header[key], err_msg=key)
    assert out.get_data_dtype() == np.uint8
    data = np.asarray(out.dataobj)
    assert data.min() >= 0 and data.max() <= 8


def test_predict_one_file_keeps_the_grid(checkpoint, tmp_path, capsys):
    src = _oblique_nifti(tmp_path / "scan.nii.gz")
    out_path = tmp_path / "scan_seg.nii.gz"
    assert main(["predict", str(tmp_path / "scan.nii.gz"), "--checkpoint", str(checkpoint),
                 "--out", str(out_path), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == str(out_path)
    _same_grid(src, out_path)

    # Without --overwrite an existing output is refused and left alone.
    before = out_path.read_bytes()
    assert main(["predict", str(tmp_path / "scan.nii.gz"), "--checkpoint", str(checkpoint),
                 "--out", str(out_path)]) == 2
    err = capsys.readouterr().err
    assert "l2gnet predict: error:" in err and str(out_path) in err and "--overwrite" in err
    assert out_path.read_bytes() == before
    assert main(["predict", str(tmp_path / "scan.nii.gz"), "--checkpoint", str(checkpoint),
                 "--out", str(out_path), "--overwrite", "--batch-size", "3",
                 "--device", "cpu"]) == 0
    _same_grid(src, out_path)


def test_predict_matches_the_python_api(checkpoint, tmp_path):
    """The CLI's labels are predict_volume's on the displayed volume, put back in (i, j, k)."""
    from scan_io.nifti import display_orientation, from_display, load_nifti, to_display
    from training.inference import predict_volume

    _oblique_nifti(tmp_path / "scan.nii", shape=(30, 36, 5))
    assert main(["predict", str(tmp_path / "scan.nii"), "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "seg.nii"), "--device", "cpu"]) == 0
    vol = load_nifti(tmp_path / "scan.nii")
    orient = display_orientation(vol.affine)
    pred = predict_volume(to_display(vol.data, orient), str(checkpoint), device="cpu")
    written = np.asarray(nib.load(str(tmp_path / "seg.nii")).dataobj)
    np.testing.assert_array_equal(written, from_display(pred.labels, orient))


def test_predict_a_folder(checkpoint, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    a = _oblique_nifti(inputs / "a.nii.gz")
    b = _oblique_nifti(inputs / "b.nii", shape=(24, 20, 3))
    (inputs / "notes.txt").write_text("not a scan")
    out = tmp_path / "out"
    assert main(["predict", str(inputs), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "b.nii"]
    _same_grid(a, out / "a.nii.gz")
    _same_grid(b, out / "b.nii")
    assert capsys.readouterr().out.split() == [str(out / "a.nii.gz"), str(out / "b.nii")]


def test_predict_user_errors(checkpoint, tmp_path, capsys):
    scan = tmp_path / "scan.nii.gz"
    _oblique_nifti(scan)

    def run(*argv: str) -> str:
        return cli_fails(["predict", *argv], capsys)

    err = run(str(tmp_path / "missing.nii.gz"), "--checkpoint", str(checkpoint), "--out",
              str(tmp_path / "o.nii.gz"))
    assert "missing.nii.gz does not exist" in err
    (tmp_path / "scan.png").write_bytes(b"\x89PNG")
    err = run(str(tmp_path / "scan.png"), "--checkpoint", str(checkpoint), "--out",
              str(tmp_path / "o.nii.gz"))
    assert "scan.png: not a scan" in err
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(np.random.default_rng(0).bytes(256))
    err = run(str(scan), "--checkpoint", str(garbage), "--out", str(tmp_path / "o.nii.gz"))
    assert "garbage.safetensors" in err and "checkpoint" in err
    err = run(str(scan), "--checkpoint", str(tmp_path / "nope.safetensors"), "--out",
              str(tmp_path / "o.nii.gz"))
    assert "nope.safetensors does not exist" in err
    err = run(str(scan), "--checkpoint", str(checkpoint), "--out", str(scan), "--overwrite")
    assert "equals its input" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = run(str(empty), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"))
    assert "No scans (.nii/.nii.gz files or DICOM series)" in err
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not gzip at all")
    err = run(str(broken), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "b.nii"))
    assert "broken.nii.gz" in err
    four_d = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3, 2), np.int16), np.eye(4)), str(four_d))
    err = run(str(four_d), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "f.nii"))
    assert "4D NIfTI" in err
    assert not any((tmp_path / n).exists() for n in ("o.nii.gz", "b.nii", "f.nii"))


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "sample", "next-slices"])
def test_subcommand_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: l2gnet {command}" in capsys.readouterr().out


def test_top_level_help_and_missing_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "sample"):
        assert command in out
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_module_entry_point(tmp_path):
    import subprocess

    result = subprocess.run([*CLI, "sample", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage: l2gnet sample" in result.stdout
