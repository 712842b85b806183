"""Data readers (real ACDC/Synapse files and generated npz/NIfTI), spec parsing, the plugin's
array hand-over, TransUNet's transforms and ``SliceDataset``."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from scan_io.nifti import save_nifti
from training.data import (
    Case,
    Slice,
    SliceDataset,
    cases_to_slices,
    read_acdc_slices,
    read_h5_volumes,
    read_nifti_pairs,
    read_npz_slices,
    read_phantom_cases,
    slices_from_arrays,
)
from training.data.normalization import (
    CT_WINDOW,
    MRI_PERCENTILE,
    NO_NORMALIZATION,
    IntensityNormalization,
    normalize,
)
from training.data.phantom import make_phantom
from training.data.specs import load_cases, load_slices, max_label, parse_seeds
from training.data.transforms import (
    augment_pair,
    random_rot_flip,
    random_rotate,
    resize_pair,
)

SYNAPSE_H5 = "ct_abdomen/example_ct_sm_synapse8.npy.h5"


def _link_first(src: Path, dst: Path, names: list[str]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.symlink(src / name, dst / name)
    return dst


def _first_names(shared: Path, list_name: str, n: int) -> list[str]:
    return (shared / "acdc" / list_name).read_text().split()[:n]


# ---------------------------------------------------------------- real h5 files


def test_read_acdc_slices_with_list_file(shared_data, tmp_path):
    names = _first_names(shared_data, "train_slices.list", 4)
    list_file = tmp_path / "few.list"
    list_file.write_text("\n".join(names) + "\n\n")  # blank lines are ignored
    slices = read_acdc_slices(shared_data / "acdc" / "train_slices", list_file)
    assert [s.source for s in slices] == names
    for s in slices:
        assert isinstance(s, Slice)
        assert s.image.ndim == 2 and s.image.dtype == np.float32
        assert s.label.shape == s.image.shape and s.label.dtype == np.uint8
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0
        assert set(np.unique(s.label).tolist()) <= {0, 1, 2, 3}


def test_read_acdc_slices_missing_list_entry(shared_data, tmp_path):
    list_file = tmp_path / "bad.list"
    list_file.write_text("patient999_frame01_slice_1\n")
    with pytest.raises(FileNotFoundError, match="patient999_frame01_slice_1.h5"):
        read_acdc_slices(shared_data / "acdc" / "train_slices", list_file)


def test_read_acdc_slices_refuses_volumes(shared_data, tmp_path):
    names = [n + ".h5" for n in _first_names(shared_data, "val.list", 1)]
    folder = _link_first(shared_data / "acdc" / "val_volumes", tmp_path / "v", names)
    with pytest.raises(ValueError, match="expected a 2-D slice"):
        read_acdc_slices(folder)


def test_read_h5_volumes_acdc(shared_data, tmp_path):
    names = _first_names(shared_data, "val.list", 2)
    list_file = tmp_path / "val2.list"
    list_file.write_text("\n".join(names))
    cases = read_h5_volumes(shared_data / "acdc" / "val_volumes", list_file)
    assert [c.name for c in cases] == names
    for c in cases:
        assert c.image.ndim == 3 and 6 <= c.image.shape[0] <= 17
        assert c.image.dtype == np.float32 and c.label.dtype == np.uint8
        assert c.label.shape == c.image.shape
        assert c.label.max() <= 3 and c.label.max() > 0
        assert c.spacing is None  # ACDC h5 stores no spacing


def test_read_h5_volumes_synapse_npy_h5(shared_data, tmp_path):
    folder = tmp_path / "test_vol_h5"
    folder.mkdir()
    os.symlink(shared_data / SYNAPSE_H5, folder / "case0001.npy.h5")
    (case,) = read_h5_volumes(folder)
    assert case.name == "case0001"  # both .npy and .h5 are stripped
    assert case.image.shape == case.label.shape == (30, 101, 122)
    assert 0.0 <= case.image.min() and case.image.max() <= 1.0
    present = set(np.unique(case.label).tolist())
    assert present <= set(range(9)) and {0, 1, 5, 7} <= present  # aorta, liver, spleen


def test_h5_without_label_or_not_hdf5(tmp_path):
    folder = tmp_path / "h5"
    folder.mkdir()
    with h5py.File(folder / "a.h5", "w") as f:
        f["image"] = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="expected 'image' and 'label'"):
        read_acdc_slices(folder)
    (folder / "a.h5").write_bytes(b"this is not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_h5_volumes(folder)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_acdc_slices(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"No \*\.h5 files"):
        read_h5_volumes(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"No \*\.npz files"):
        read_npz_slices(tmp_path)


# ---------------------------------------------------------------- generated files


def _write_npz(folder: Path, n: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(n):
        image = rng.random((20, 24)).astype(np.float64)  # TransUNet's npz hold float64
        label = rng.integers(0, 9, (20, 24)).astype(np.int32)
        np.savez(folder / f"case0005_slice{i:03d}.npz", image=image, label=label)
        pairs.append((image, label))
    return pairs


def test_read_npz_slices(tmp_path):
    pairs = _write_npz(tmp_path / "train_npz")
    slices = read_npz_slices(tmp_path / "train_npz")
    assert [s.source for s in slices] == [f"case0005_slice{i:03d}" for i in range(3)]
    for s, (image, label) in zip(slices, pairs, strict=True):
        assert s.image.dtype == np.float32 and s.label.dtype == np.uint8
        np.testing.assert_allclose(s.image, image, rtol=1e-6)
        np.testing.assert_array_equal(s.label, label)


def _write_nifti_pairs(root: Path, names=("a", "b"), shape=(24, 20, 5)) -> dict:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir(parents=True)
    rng = np.random.default_rng(1)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    data = {}
    for name in names:
        hu = rng.integers(-1000, 1000, shape).astype(np.int16)
        lab = rng.integers(0, 4, shape).astype(np.uint8)
        save_nifti(root / "imagesTr" / f"{name}_0000.nii.gz", hu, affine=affine)
        save_nifti(root / "labelsTr" / f"{name}.nii.gz", lab, affine=affine, labels=True)
        data[name] = (hu, lab)
    return data


def test_read_nifti_pairs(tmp_path):
    data = _write_nifti_pairs(tmp_path / "ds")
    cases = read_nifti_pairs(tmp_path / "ds", CT_WINDOW)
    assert [c.name for c in cases] == ["a", "b"]
    for c in cases:
        hu, lab = data[c.name]
        # Display layout, as the reader and predict show it: an RAS file (positive diagonal)
        # is flipped along i and j, then laid out (k, j, i).
        assert c.image.shape == c.label.shape == (5, 20, 24)
        np.testing.assert_array_equal(c.label, lab[::-1, ::-1, :].transpose(2, 1, 0))
        np.testing.assert_allclose(
            c.image, normalize(hu, CT_WINDOW)[::-1, ::-1, :].transpose(2, 1, 0))
        assert 0.0 <= c.image.min() and c.image.max() <= 1.0
        assert c.spacing == pytest.approx((2.5, 0.9, 0.8))


def test_read_nifti_pairs_missing_label_and_grid_mismatch(tmp_path):
    root = tmp_path / "ds"
    _write_nifti_pairs(root, names=("a",))
    (root / "labelsTr" / "a.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="labelsTr/a.nii.gz"):
        read_nifti_pairs(root, CT_WINDOW)
    save_nifti(root / "labelsTr" / "a.nii.gz", np.zeros((3, 3, 3), np.uint8), labels=True)
    with pytest.raises(ValueError, match="same grid"):
        read_nifti_pairs(root, CT_WINDOW)


def test_read_phantom_cases():
    cases = read_phantom_cases([3, 4], CT_WINDOW, shape=(6, 32, 32))
    assert [c.name for c in cases] == ["phantom_3", "phantom_4"]
    for c in cases:
        assert c.image.dtype == np.float32 and 0 <= c.image.min() and c.image.max() <= 1
        assert c.image.shape == (6, 32, 32)
        assert c.spacing == (3.0, 2.2, 2.2)
    np.testing.assert_array_equal(cases[0].label, make_phantom(3, shape=(6, 32, 32)).labels)


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("3", [3]), ("100-103", [100, 101, 102, 103]), ("5,1,3", [1, 3, 5]),
     ("1-3,2,9", [1, 2, 3, 9]), (" 4 , 2", [2, 4])],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "1-x", "1-2-3", ","])
def test_parse_seeds_errors(text):
    with pytest.raises(ValueError, match="Bad seed list"):
        parse_seeds(text)


def test_specs_phantom():
    cases = load_cases("phantom:1,2", CT_WINDOW, shape=(6, 32, 32))
    assert [c.name for c in cases] == ["phantom_1", "phantom_2"]
    slices = load_slices("phantom:1", CT_WINDOW, shape=(6, 32, 32))
    # Only labelled slices, each from the phantom.
    assert slices and all(s.label.any() for s in slices)
    assert all(s.source.startswith("phantom_1:") for s in slices)
    assert max_label(slices) <= 8


def test_specs_detect_h5_layouts(shared_data, tmp_path):
    slice_names = [n + ".h5" for n in _first_names(shared_data, "train_slices.list", 3)]
    sl = _link_first(shared_data / "acdc" / "train_slices", tmp_path / "slices", slice_names)
    vol_names = [n + ".h5" for n in _first_names(shared_data, "val.list", 2)]
    vo = _link_first(shared_data / "acdc" / "val_volumes", tmp_path / "vols", vol_names)

    slices = load_slices(str(sl), NO_NORMALIZATION)
    assert len(slices) == 3 and all(s.image.ndim == 2 for s in slices)
    cases = load_cases(str(vo), NO_NORMALIZATION)
    assert len(cases) == 2 and all(c.image.ndim == 3 for c in cases)
    # Volumes as training data: cut into their labelled slices.
    vol_slices = load_slices(str(vo), NO_NORMALIZATION)
    assert len(vol_slices) == sum(int(c.label.reshape(len(c.label), -1).any(1).sum())
                                  for c in cases)
    with pytest.raises(ValueError, match="2-D slices .*evaluation needs 3-D volumes"):
        load_cases(str(sl), NO_NORMALIZATION)


def test_specs_detect_npz_and_nifti(tmp_path):
    _write_npz(tmp_path / "train_npz")
    assert len(load_slices(str(tmp_path / "train_npz"), NO_NORMALIZATION)) == 3
    with pytest.raises(ValueError, match="npz.*evaluation needs 3-D volumes"):
        load_cases(str(tmp_path / "train_npz"), NO_NORMALIZATION)
    _write_nifti_pairs(tmp_path / "nii")
    cases = load_cases(str(tmp_path / "nii"), CT_WINDOW)
    assert [c.name for c in cases] == ["a", "b"]
    assert all(s.label.any() for s in load_slices(str(tmp_path / "nii"), CT_WINDOW))


def test_specs_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_slices(str(tmp_path / "missing"), NO_NORMALIZATION)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cases(str(tmp_path / "missing"), NO_NORMALIZATION)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="Cannot tell the layout"):
        load_slices(str(tmp_path), NO_NORMALIZATION)
    with pytest.raises(ValueError, match="Bad seed list"):
        load_cases("phantom:x", CT_WINDOW)


# ---------------------------------------------------------------- plugin hand-over


def test_slices_from_arrays_axis_and_annotated():
    rng = np.random.default_rng(0)
    vol = rng.integers(-200, 300, (5, 6, 7)).astype(np.int16)
    lab = np.zeros((5, 6, 7), np.uint8)
    lab[1, 2, 3] = 2
    lab[3, 0, 0] = 1
    # Default: every slice with foreground, along axis 0.
    out = slices_from_arrays(vol, lab, None, normalization=CT_WINDOW, num_classes=3)
    assert [s.source for s in out] == ["slice 1", "slice 3"]
    np.testing.assert_array_equal(out[0].label, lab[1])
    np.testing.assert_allclose(out[0].image, normalize(vol, CT_WINDOW)[1])
    assert out[0].label.dtype == np.uint8 and out[0].image.dtype == np.float32
    # Explicit annotated slices (sorted, an empty slice counts: it says "no organ here").
    out = slices_from_arrays(vol, lab, [4, 0], normalization=CT_WINDOW)
    assert [s.source for s in out] == ["slice 0", "slice 4"]
    assert not out[1].label.any()
    # Along axis 2: slices are (5, 6) planes.
    out = slices_from_arrays(vol, lab, None, axis=2, normalization=CT_WINDOW)
    assert [s.source for s in out] == ["slice 0", "slice 3"]
    assert out[0].image.shape == (5, 6)
    np.testing.assert_array_equal(out[1].label, lab[:, :, 3])
    # Along axis 1.
    out = slices_from_arrays(vol, lab, [2], axis=1, normalization=CT_WINDOW)
    assert out[0].image.shape == (5, 7)
    np.testing.assert_array_equal(out[0].label, lab[:, 2, :])


def test_slices_from_arrays_errors():
    vol = np.zeros((4, 5, 5), np.float32)
    lab = np.zeros((4, 5, 5), np.uint8)
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        slices_from_arrays(vol, lab, [0, 4], normalization=NO_NORMALIZATION)
    with pytest.raises(ValueError, match=r"\[-1\]"):
        slices_from_arrays(vol, lab, [-1], normalization=NO_NORMALIZATION)
    lab[0, 0, 0] = 5
    with pytest.raises(ValueError, match="label value 5 does not fit a model with 4 classes"):
        slices_from_arrays(vol, lab, None, normalization=NO_NORMALIZATION, num_classes=4)
    with pytest.raises(ValueError, match="shape .* differ"):
        slices_from_arrays(vol, lab[:3], None, normalization=NO_NORMALIZATION)
    with pytest.raises(ValueError, match="non-negative"):
        slices_from_arrays(vol, -lab.astype(np.int16), None, normalization=NO_NORMALIZATION)


def test_case_validation_and_cases_to_slices():
    with pytest.raises(ValueError, match="same grid"):
        Case("x", np.zeros((2, 3, 3), np.float32), np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(ValueError, match="3-D volume"):
        Case("x", np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8))
    lab = np.zeros((3, 4, 4), np.int64)
    lab[2, 1, 1] = 1
    case = Case("c", np.zeros((3, 4, 4), np.float32), lab)
    assert [s.source for s in cases_to_slices([case])] == ["c:0", "c:1", "c:2"]
    only = cases_to_slices([case], only_labelled=True)
    assert [s.source for s in only] == ["c:2"] and only[0].label.dtype == np.uint8


def test_normalization():
    hu = np.array([-1000, -125, 75, 275, 2000], np.int16)
    np.testing.assert_allclose(normalize(hu, CT_WINDOW), [0, 0, 0.5, 1, 1])
    x = np.linspace(0, 100, 1001)
    out = normalize(x, MRI_PERCENTILE)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    assert normalize(np.full(10, 7.0), MRI_PERCENTILE).max() == 0  # constant volume
    np.testing.assert_allclose(normalize(np.array([-1.0, 0.3, 2.0]), NO_NORMALIZATION),
                               [0, 0.3, 1])
    meta = CT_WINDOW.to_metadata()
    assert IntensityNormalization.from_metadata(meta) == CT_WINDOW
    assert IntensityNormalization.from_metadata(None).kind == "none"
    with pytest.raises(ValueError, match="kind must be one of"):
        IntensityNormalization("zscore")
    with pytest.raises(ValueError, match="low < high"):
        IntensityNormalization("ct_window", 100, -100)


# ---------------------------------------------------------------- transforms


def _pair(shape=(37, 53), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random(shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[5:20, 10:30] = 3
    label[22:30, 35:50] = 7
    label[0:4, 0:4] = 1
    return image, label


@pytest.mark.parametrize("src", [(37, 53), (154, 304), (216, 256), (48, 48), (20, 28)])
@pytest.mark.parametrize("size", [(224, 224), (48, 48), (32, 64)])
def test_resize_pair_shapes_and_label_set(src, size):
    image, label = _pair(src)
    out_img, out_lab = resize_pair(image, label, size)
    assert out_img.shape == size and out_lab.shape == size
    assert out_lab.dtype == label.dtype
    assert set(np.unique(out_lab).tolist()) <= set(np.unique(label).tolist())
    assert 0.0 <= out_img.min() and out_img.max() <= 1.0


def test_resize_pair_same_size_is_identity():
    image, label = _pair((48, 48))
    out_img, out_lab = resize_pair(image, label, (48, 48))
    np.testing.assert_array_equal(out_img, image)
    np.testing.assert_array_equal(out_lab, label)


def test_rotation_and_flip_keep_label_set():
    image, label = _pair()
    labels = set(np.unique(label).tolist())
    for seed in range(12):
        rng = np.random.default_rng(seed)
        img, lab = random_rot_flip(image, label, rng)
        assert set(np.unique(lab).tolist()) == labels
        assert np.bincount(lab.ravel(), minlength=8).tolist() == np.bincount(
            label.ravel(), minlength=8).tolist()
        assert sorted(img.ravel().tolist()) == sorted(image.ravel().tolist())
        img, lab = random_rotate(image, label, rng)
        assert img.shape == image.shape and lab.shape == label.shape
        assert set(np.unique(lab).tolist()) <= labels
        for mode in ("transunet", "rotate", "none"):
            img, lab = augment_pair(image, label, rng, mode)
            assert set(np.unique(lab).tolist()) <= labels


def test_augment_none_is_identity():
    image, label = _pair()
    img, lab = augment_pair(image, label, np.random.default_rng(0), "none")
    assert img is image and lab is label


# ---------------------------------------------------------------- SliceDataset


def _slices(n=4):
    return [Slice(*_pair((30 + 3 * i, 40), seed=i), source=f"s{i}") for i in range(n)]


def test_slice_dataset_shapes_and_dtypes():
    ds = SliceDataset(_slices(), (32, 48), augment="transunet", in_channels=3, seed=1)
    assert len(ds) == 4
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 32, 48) and x.dtype == torch.float32
        assert y.shape == (32, 48) and y.dtype == torch.int64
        assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])  # grey repeated
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert set(y.unique().tolist()) <= {0, 1, 3, 7}
    x, _ = SliceDataset(_slices(), (32, 32), augment="none", in_channels=1)[0]
    assert x.shape == (1, 32, 32)


def test_slice_dataset_deterministic_per_seed_and_epoch():
    def items(seed, epoch):
        ds = SliceDataset(_slices(), (32, 32), augment="transunet", seed=seed)
        ds.set_epoch(epoch)
        return [ds[i] for i in range(len(ds))]

    def same(a, b):
        return all(torch.equal(xa, xb) and torch.equal(ya, yb)
                   for (xa, ya), (xb, yb) in zip(a, b, strict=True))

    assert same(items(0, 0), items(0, 0))
    assert same(items(3, 2), items(3, 2))
    assert not same(items(0, 0), items(0, 1))  # a new epoch draws new augmentations
    assert not same(items(0, 0), items(1, 0))


def test_slice_dataset_without_augment_is_plain_resize():
    sl = _slices(1)
    x, y = SliceDataset(sl, (30, 40), augment="none")[0]
    np.testing.assert_array_equal(x[0].numpy(), sl[0].image)
    np.testing.assert_array_equal(y.numpy(), sl[0].label)


def test_slice_dataset_needs_slices():
    with pytest.raises(ValueError, match="No training slices"):
        SliceDataset([], (32, 32))


# ---------------------------------------------------------------- one orientation everywhere


def _ras_phantom_folder(root: Path, seed: int = 4) -> Path:
    """A phantom stored RAS (voxel order differs from the display layout) as imagesTr/labelsTr."""
    import nibabel as nib

    ph = make_phantom(seed, shape=(6, 48, 44))
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for data, folder, name, labels in ((ph.image, "imagesTr", "p_0000", False),
                                       (ph.labels, "labelsTr", "p", True)):
        img = nib.as_closest_canonical(nib.Nifti1Image(ph.to_nifti_order(data), ph.affine))
        save_nifti(root / folder / f"{name}.nii.gz", np.asarray(img.dataobj),
                   affine=img.affine, labels=labels)
    return root


def test_train_on_a_folder_then_predict_its_own_file_sees_the_same_slices(tmp_path):
    """Training/evaluation read an imagesTr/labelsTr folder in the layout `predict` uses."""
    from scan_io.nifti import load_nifti
    from scan_io.volume import load_scan
    from src_model import load_checkpoint
    from training.cli import main
    from training.inference import predict_volume

    root = _ras_phantom_folder(tmp_path / "ds")
    image_file = root / "imagesTr" / "p_0000.nii.gz"
    raw = load_nifti(image_file)
    assert raw.affine[0, 0] > 0 and raw.affine[1, 1] > 0  # RAS on disk: flips needed

    [case] = read_nifti_pairs(root, CT_WINDOW)
    shown = load_scan(image_file)  # what the napari reader and predict see
    assert case.image.shape == shown.data.shape == (6, 48, 44)
    np.testing.assert_array_equal(case.image, normalize(shown.data, CT_WINDOW))
    np.testing.assert_array_equal(case.label, load_scan(root / "labelsTr" / "p.nii.gz",
                                                        labels=True).data)
    sample = make_phantom(4, shape=(6, 48, 44))
    np.testing.assert_array_equal(case.label, sample.labels)  # left kidney stays left

    run = tmp_path / "run"
    assert main(["train", "--tiny", "--data", str(root), "--val", str(root), "--input-size",
                 "48", "48", "--epochs", "1", "--device", "cpu", "--out-dir", str(run)]) == 0
    out = tmp_path / "pred.nii.gz"
    assert main(["predict", str(image_file), "--checkpoint", str(run / "last.safetensors"),
                 "--out", str(out), "--device", "cpu"]) == 0
    predicted = load_scan(out, labels=True).data
    model, meta = load_checkpoint(run / "last.safetensors")
    on_case = predict_volume(case.image, model, metadata={**meta,
                             "normalization": {"kind": "none"}}, device="cpu").labels
    np.testing.assert_array_equal(predicted, on_case)
