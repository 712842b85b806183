"""Bad scans and label maps: refused with one line naming the value and the file, or repaired
with a warning that says what was done; never a silent wrong result."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from scan_io.checks import NonFiniteVoxelsWarning, check_volume_size, replace_non_finite
from scan_io.labels import check_labels
from scan_io.nifti import load_nifti, save_nifti
from scan_io.volume import load_scan
from training.data import read_h5_volumes, read_nifti_pairs, read_npz_slices
from training.data.normalization import CT_WINDOW, MRI_PERCENTILE, normalize
from training.data.specs import load_cases, load_slices


def _nifti(path: Path, data: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0]) if affine is None
                             else affine), str(path))
    return path


def _pair_folder(root: Path, label: np.ndarray) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    image = np.random.default_rng(0).integers(-500, 500, label.shape).astype(np.int16)
    _nifti(root / "imagesTr" / "c_0000.nii.gz", image)
    _nifti(root / "labelsTr" / "c.nii.gz", label)
    return root


# ------------------------------------------------------------------ non-finite voxels


def test_nan_and_inf_voxels_are_replaced_with_a_warning_saying_with_what(tmp_path):
    data = np.linspace(-100, 300, 4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    data[1, 1, 1] = np.nan
    data[2, 2, 2] = np.inf
    path = _nifti(tmp_path / "mr.nii.gz", data)
    with pytest.warns(NonFiniteVoxelsWarning, match=r"mr\.nii\.gz: 1 NaN, 1 \+inf voxel") as rec:
        scan = load_scan(path)
    assert "lowest finite value -100" in str(rec[0].message)
    assert "highest" in str(rec[0].message) and "300" in str(rec[0].message)
    assert np.isfinite(scan.data).all()
    vox = scan.to_voxels(scan.data)
    assert vox[1, 1, 1] == -100 and vox[2, 2, 2] == 300
    assert np.array_equal(np.delete(vox.ravel(), [1 * 15 + 1 * 3 + 1, 2 * 15 + 2 * 3 + 2]),
                          np.delete(data.ravel(), [1 * 15 + 1 * 3 + 1, 2 * 15 + 2 * 3 + 2]))


def test_one_nan_no_longer_empties_a_percentile_normalised_volume():
    volume = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32) * 500
    volume[0, 0, 0] = np.nan
    with pytest.warns(NonFiniteVoxelsWarning, match="1 NaN"):
        out = normalize(volume, MRI_PERCENTILE)
    assert np.isfinite(out).all() and out.max() == 1.0 and (out > 0).mean() > 0.9
    with pytest.warns(NonFiniteVoxelsWarning):
        ct = normalize(np.array([[[-1000.0, np.nan, 75.0]]]), CT_WINDOW)
    np.testing.assert_allclose(ct, [[[0.0, 0.0, 0.5]]])


def test_all_nan_volume_is_refused(tmp_path):
    path = _nifti(tmp_path / "empty.nii.gz", np.full((3, 3, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"empty\.nii\.gz: no voxel has a finite value"):
        load_scan(path)


def test_h5_and_npz_readers_warn_with_the_file_name(tmp_path):
    folder = tmp_path / "vols"
    folder.mkdir()
    image = np.zeros((2, 6, 6), np.float32)
    image[1, 2, 2] = np.nan
    with h5py.File(folder / "case1.h5", "w") as f:
        f["image"], f["label"] = image, np.zeros((2, 6, 6), np.uint8)
    with pytest.warns(NonFiniteVoxelsWarning, match=r"case1\.h5: 1 NaN"):
        [case] = read_h5_volumes(folder)
    assert np.isfinite(case.image).all()


def test_finite_and_integer_data_pass_unchanged():
    ints = np.array([1, 2, 3], np.int16)
    assert replace_non_finite(ints, "x") is ints
    floats = np.array([1.0, 2.0])
    assert replace_non_finite(floats, "x") is floats


# ------------------------------------------------------------------ label values


@pytest.mark.parametrize(("value", "dtype", "message"), [
    (264, np.int16, None),  # kept, not wrapped to 8
    (256, np.int16, None),  # kept, not wrapped to 0
    (-1, np.int16, r"label value -1 is negative"),
    (7.6, np.float32, r"label value 7\.6 is not a whole number"),
])
def test_nifti_folder_labels_never_wrap_or_truncate(tmp_path, value, dtype, message):
    label = np.zeros((6, 5, 3), dtype)
    label[2, 2, 1] = value
    root = _pair_folder(tmp_path / "ds", label)
    if message is None:
        [case] = read_nifti_pairs(root, CT_WINDOW)
        assert case.label.max() == value and case.label.dtype == np.uint16
    else:
        with pytest.raises(ValueError, match=message) as err:
            read_nifti_pairs(root, CT_WINDOW)
        assert "c.nii.gz" in str(err.value)


def test_evaluate_refuses_label_264_instead_of_scoring_it_as_class_8(tmp_path, capsys):
    import torch

    from src_model import build_model, save_checkpoint
    from src_model.testing import tiny_config
    from training.cli import main

    torch.manual_seed(0)
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, build_model("l2gnet", 9, **tiny_config("l2gnet")),
                    {"input_size": [32, 32], "normalization": {"kind": "ct_window",
                                                               "low": -125, "high": 275}})
    label = np.zeros((6, 5, 3), np.int16)
    label[2, 2, 1] = 264
    root = _pair_folder(tmp_path / "ds", label)
    code = main(["evaluate", "--checkpoint", str(ckpt), "--data", str(root), "--device", "cpu",
                 "--out", str(tmp_path / "r.json")])
    assert code == 2
    assert "264" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_npz_and_h5_labels_are_checked(tmp_path):
    folder = tmp_path / "train_npz"
    folder.mkdir()
    np.savez(folder / "case1_slice000.npz", image=np.zeros((4, 4), np.float32),
             label=np.full((4, 4), -1, np.int16))
    with pytest.raises(ValueError, match=r"case1_slice000\.npz: label value -1 is negative"):
        read_npz_slices(folder)
    with pytest.raises(ValueError, match="negative"):
        load_slices(str(folder), CT_WINDOW)  # `l2gnet train` no longer builds 256 classes
    vols = tmp_path / "vols"
    vols.mkdir()
    with h5py.File(vols / "v.h5", "w") as f:
        f["image"] = np.zeros((2, 4, 4), np.float32)
        f["label"] = np.full((2, 4, 4), 2.5, np.float32)
    with pytest.raises(ValueError, match=r"v\.h5: label value 2\.5 is not a whole number"):
        load_cases(str(vols), CT_WINDOW)


def test_check_labels_against_the_class_count():
    labels = np.array([0, 3, 8], np.int64)
    assert check_labels(labels, "x", num_classes=9).dtype == np.uint8
    with pytest.raises(ValueError, match=r"f\.nii: label value 8 does not fit a model with 8 "
                                         r"classes \(0\.\.7\)"):
        check_labels(labels, "f.nii", num_classes=8)
    with pytest.raises(ValueError, match="nan is not a class index"):
        check_labels(np.array([0.0, np.nan]), "x")
    with pytest.raises(ValueError, match="must be whole numbers"):
        check_labels(np.array(["a"]), "x")


# ------------------------------------------------------------------ refused files


def test_rgb_nifti_is_refused_in_one_line(tmp_path):
    rgb = np.zeros((4, 4, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = tmp_path / "photo.nii.gz"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(path))
    with pytest.raises(ValueError, match=r"photo\.nii\.gz: a colour \(RGB/RGBA\) NIfTI") as err:
        load_nifti(path)
    assert "\n" not in str(err.value)


def _claim_shape(path: Path, shape: tuple[int, int, int], gz: bool) -> Path:
    """Rewrite the header's dim field of an uncompressed .nii file (data left as it is)."""
    raw = bytearray(path.read_bytes())
    raw[40:56] = struct.pack("<8h", 3, *shape, 1, 1, 1, 1)
    if gz:
        out = path.with_suffix(".nii.gz")
        out.write_bytes(gzip.compress(bytes(raw)))
        return out
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_a_header_claiming_30000_cubed_voxels_is_refused_before_allocating(tmp_path, gz):
    path = _nifti(tmp_path / "huge.nii", np.zeros((4, 4, 4), np.int16))
    path = _claim_shape(path, (30000, 30000, 30000), gz)
    with pytest.raises(ValueError, match=r"claims 30000x30000x30000 voxels \(.* TB as int16\), "
                                         "more than this machine's"):
        load_scan(path)


def test_a_truncated_uncompressed_file_is_refused(tmp_path):
    path = _nifti(tmp_path / "cut.nii", np.zeros((4, 4, 4), np.int16))
    path = _claim_shape(path, (40, 40, 40), gz=False)
    with pytest.raises(ValueError, match="holds only .* truncated or corrupt"):
        load_nifti(path)


def test_size_check_against_a_given_limit():
    check_volume_size((512, 512, 300), np.int16, "x", limit_bytes=200 * 2**20)
    with pytest.raises(ValueError, match="x: the header claims 512x512x300 voxels"):
        check_volume_size((512, 512, 300), np.float32, "x", limit_bytes=200 * 2**20)


def test_saving_never_writes_over_the_source_scan(tmp_path):
    path = tmp_path / "ct.nii.gz"
    save_nifti(path, np.zeros((4, 4, 3), np.int16) - 1000, affine=np.eye(4))
    before = path.read_bytes()
    from scan_io.volume import save_labels_like

    scan = load_scan(path)
    with pytest.raises(ValueError, match="is the source scan"):
        save_labels_like(path, np.zeros(scan.data.shape, np.uint8), scan, overwrite=True)
    assert path.read_bytes() == before
