"""NIfTI load/save: exact round trips (axis-aligned, oblique, anisotropic, real files), the
display layout, and every refusal with its message."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from scan_io.nifti import (
    DisplayOrientation,
    NiftiVolume,
    affine_from_scale,
    display_orientation,
    from_display,
    header_from_bytes,
    header_to_bytes,
    labels_dtype,
    load_nifti,
    save_nifti,
    to_display,
)

REAL_FILES = ["example_ct_sm.nii.gz", "example_seg_synapse8.nii.gz", "example_mr_sm.nii.gz"]


def _rotation(ax: float, az: float) -> np.ndarray:
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx


def _affine(spacing, rotation=None, origin=(-90.0, 12.5, 40.25)) -> np.ndarray:
    affine = np.eye(4)
    rot = np.eye(3) if rotation is None else rotation
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def _write(path: Path, data: np.ndarray, affine: np.ndarray, qcode=1, scode=2, **hdr) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=qcode)
    img.header.set_sform(affine, code=scode)
    img.header.set_xyzt_units("mm", "sec")
    for key, value in hdr.items():
        img.header[key] = value
    img.header.set_data_dtype(data.dtype)
    nib.save(img, str(path))
    return path


CASES = {
    "axis_aligned": dict(spacing=(1.0, 1.0, 1.0), rotation=None, dtype=np.int16),
    "oblique": dict(spacing=(0.8, 0.9, 2.5), rotation=_rotation(0.17, 0.52), dtype=np.float32),
    "anisotropic": dict(spacing=(0.7, 0.7, 3.0), rotation=None, dtype=np.int16),
    "flipped_lps": dict(
        spacing=(1.2, 1.2, 2.0), rotation=np.diag([-1.0, -1.0, 1.0]), dtype=np.uint8
    ),
}


@pytest.fixture(params=sorted(CASES))
def generated(request, tmp_path) -> tuple[str, Path, np.ndarray, np.ndarray]:
    case = CASES[request.param]
    rng = np.random.default_rng(0)
    data = (rng.normal(0, 300, size=(13, 11, 7))).astype(case["dtype"])
    affine = _affine(case["spacing"], case["rotation"])
    path = _write(tmp_path / f"{request.param}.nii.gz", data, affine, descrip=request.param)
    return request.param, path, data, affine


def _assert_same_header(a: nib.Nifti1Header, b: nib.Nifti1Header) -> None:
    for key in a.keys():
        va, vb = np.asarray(a[key]), np.asarray(b[key])
        assert np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"), key
    assert a.binaryblock == b.binaryblock


def test_generated_round_trip_is_exact(generated, tmp_path) -> None:
    name, path, data, affine = generated
    vol = load_nifti(path)
    assert isinstance(vol, NiftiVolume)
    assert vol.data.dtype == data.dtype and np.array_equal(vol.data, data)
    assert vol.affine.dtype == np.float64 and vol.affine.shape == (4, 4)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    np.testing.assert_allclose(vol.spacing, CASES[name]["spacing"], rtol=1e-6)
    assert int(vol.header["qform_code"]) == 1 and int(vol.header["sform_code"]) == 2

    out = save_nifti(tmp_path / f"copy_{name}.nii.gz", vol.data, like=vol)
    back = load_nifti(out)
    assert back.data.dtype == vol.data.dtype and np.array_equal(back.data, vol.data)
    assert np.array_equal(back.affine, vol.affine)
    _assert_same_header(vol.header, back.header)


def test_uncompressed_nii_round_trip(tmp_path) -> None:
    data = np.arange(60, dtype=np.int16).reshape(5, 4, 3)
    path = _write(tmp_path / "plain.nii", data, _affine((0.7, 0.7, 3.0)))
    vol = load_nifti(path)
    out = save_nifti(tmp_path / "plain_copy.nii", vol.data, like=vol)
    assert out.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_file_round_trip(shared_data, tmp_path, name) -> None:
    vol = load_nifti(shared_data / "ct_abdomen" / name)
    assert vol.data.ndim == 3 and vol.spacing == (3.0, 3.0, 3.0)
    labels = "seg" in name
    out = save_nifti(tmp_path / name, vol.data, like=vol, labels=labels)
    back = load_nifti(out)
    assert back.data.dtype == vol.data.dtype and np.array_equal(back.data, vol.data)
    assert np.array_equal(back.affine, vol.affine)
    _assert_same_header(vol.header, back.header)


def test_real_dtypes_and_orientations(shared_data) -> None:
    ct = load_nifti(shared_data / "ct_abdomen" / "example_ct_sm.nii.gz")
    seg = load_nifti(shared_data / "ct_abdomen" / "example_seg_synapse8.nii.gz")
    mr = load_nifti(shared_data / "ct_abdomen" / "example_mr_sm.nii.gz")
    assert ct.data.dtype == np.int16 and ct.data.shape == (122, 101, 30)
    assert seg.data.dtype == np.uint8 and set(np.unique(seg.data)) <= set(range(9))
    assert mr.data.dtype == np.int16 and mr.data.shape == (117, 91, 20)
    assert nib.aff2axcodes(ct.affine) == ("R", "A", "S")
    assert nib.aff2axcodes(mr.affine) == ("L", "P", "S")
    assert display_orientation(ct.affine) == DisplayOrientation((2, 1, 0), (0, 1))
    assert display_orientation(mr.affine) == DisplayOrientation((2, 1, 0), ())


def test_display_layout_matches_synapse_h5(shared_data) -> None:
    """The display layout is the layout of the Synapse/TransUNet files the model trains on."""
    h5py = pytest.importorskip("h5py")
    seg = load_nifti(shared_data / "ct_abdomen" / "example_seg_synapse8.nii.gz")
    with h5py.File(shared_data / "ct_abdomen" / "example_ct_sm_synapse8.npy.h5", "r") as f:
        label = f["label"][:]
    assert np.array_equal(to_display(seg.data, display_orientation(seg.affine)), label)


def test_scaled_int16_comes_back_as_values(tmp_path) -> None:
    raw = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_data_dtype(np.int16)
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, str(tmp_path / "scaled.nii.gz"))
    vol = load_nifti(tmp_path / "scaled.nii.gz")
    assert vol.data.dtype.kind == "f"
    np.testing.assert_array_equal(vol.data, raw * 2.0 - 1024.0)
    out = save_nifti(tmp_path / "scaled_copy.nii.gz", vol.data, like=vol)
    back = load_nifti(out)
    np.testing.assert_array_equal(back.data, vol.data)
    assert np.isnan(back.header["scl_slope"]) or back.header["scl_slope"] in (0, 1)


def test_unscaled_int16_stays_int16(tmp_path) -> None:
    data = np.full((3, 3, 3), -1000, dtype=np.int16)
    vol = load_nifti(_write(tmp_path / "ct.nii.gz", data, np.eye(4)))
    assert vol.data.dtype == np.int16


def test_labels_are_written_small(tmp_path) -> None:
    vol = load_nifti(_write(tmp_path / "ct.nii.gz", np.zeros((4, 5, 6), np.int16), np.eye(4)))
    labels = np.zeros((4, 5, 6), dtype=np.int64)
    labels[1:3, 2:4, 3:5] = 7
    out = save_nifti(tmp_path / "seg.nii.gz", labels, like=vol, labels=True)
    back = load_nifti(out)
    assert back.data.dtype == np.uint8 and np.array_equal(back.data, labels)
    assert np.array_equal(back.affine, vol.affine)
    assert int(back.header["qform_code"]) == 1 and int(back.header["sform_code"]) == 2
    big = labels.astype(np.int32) * 100
    assert (
        load_nifti(save_nifti(tmp_path / "big.nii.gz", big, like=vol, labels=True)).data.dtype
        == np.uint16
    )


def test_labels_dtype() -> None:
    assert labels_dtype(np.array([0, 255])) == np.uint8
    assert labels_dtype(np.array([0, 256])) == np.uint16
    assert labels_dtype(np.array([True, False])) == np.uint8
    assert labels_dtype(np.array([0.0, 3.0])) == np.uint8
    with pytest.raises(ValueError, match="whole numbers"):
        labels_dtype(np.array([0.5]))


def test_affine_without_like_keeps_header_codes(tmp_path) -> None:
    vol = load_nifti(
        _write(
            tmp_path / "a.nii.gz",
            np.zeros((3, 4, 5), np.float32),
            _affine((1, 1, 1)),
            qcode=1,
            scode=4,
        )
    )
    new_affine = _affine((2.0, 2.0, 2.0), _rotation(0.3, 0.0))
    out = save_nifti(tmp_path / "b.nii.gz", vol.data, affine=new_affine, header=vol.header)
    back = load_nifti(out)
    np.testing.assert_allclose(back.affine, new_affine, atol=1e-6)
    assert int(back.header["sform_code"]) == 4 and int(back.header["qform_code"]) == 1


def test_save_without_reference(tmp_path) -> None:
    data = np.ones((2, 3, 4), dtype=np.float32)
    back = load_nifti(save_nifti(tmp_path / "plain.nii.gz", data))
    assert np.array_equal(back.data, data) and np.array_equal(back.affine, np.eye(4))


def test_trailing_singleton_axis_is_dropped(tmp_path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1)
    vol = load_nifti(_write(tmp_path / "s.nii.gz", data, np.eye(4)))
    assert vol.data.shape == (2, 3, 4)
    out = save_nifti(tmp_path / "s2.nii.gz", vol.data, like=vol)
    assert np.array_equal(load_nifti(out).data, vol.data)


def test_2d_file_gets_one_slice(tmp_path) -> None:
    data = np.arange(12, dtype=np.int16).reshape(3, 4)
    vol = load_nifti(_write(tmp_path / "flat.nii.gz", data, np.eye(4)))
    assert vol.data.shape == (3, 4, 1) and len(vol.spacing) == 3


def test_4d_is_refused_with_the_axis_to_split(tmp_path) -> None:
    path = _write(tmp_path / "fmri.nii.gz", np.zeros((4, 4, 3, 5), np.float32), np.eye(4))
    with pytest.raises(ValueError, match=r"4D NIfTI .* not supported.*axis 3") as info:
        load_nifti(path)
    assert "fmri.nii.gz" in str(info.value)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
        load_nifti(tmp_path / "nope.nii.gz")


def test_non_nifti_name(tmp_path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ValueError, match=r"scan\.png.*not a NIfTI"):
        load_nifti(path)


@pytest.mark.parametrize("payload", [b"this is not a nifti file", None])
def test_unreadable_nifti(tmp_path, payload) -> None:
    path = tmp_path / "broken.nii.gz"
    if payload is None:  # a valid gzip stream of garbage
        payload = gzip.compress(b"x" * 400)
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=r"broken\.nii\.gz"):
        load_nifti(path)


def test_truncated_data_is_reported(tmp_path) -> None:
    path = _write(tmp_path / "t.nii", np.ones((20, 20, 20), np.float32), np.eye(4))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"t\.nii"):
        load_nifti(path)


def test_overwrite_is_refused_unless_asked(tmp_path) -> None:
    data = np.zeros((2, 2, 2), np.uint8)
    path = save_nifti(tmp_path / "m.nii.gz", data)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_nifti(path, data + 1)
    assert path.read_bytes() == before
    save_nifti(path, data + 1, overwrite=True)
    assert load_nifti(path).data.max() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nii.gz"]  # no temp files left


def test_failed_write_leaves_nothing(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        save_nifti(tmp_path / "x.nii.gz", np.full((2, 2, 2), 300), dtype=np.uint8)
    assert list(tmp_path.iterdir()) == []


def test_shape_mismatch_with_like(tmp_path) -> None:
    vol = load_nifti(_write(tmp_path / "a.nii.gz", np.zeros((3, 4, 5), np.int16), np.eye(4)))
    with pytest.raises(ValueError, match=r"\(5, 4, 3\) does not match .* \(3, 4, 5\)"):
        save_nifti(tmp_path / "b.nii.gz", np.zeros((5, 4, 3)), like=vol)


def test_bad_output_name(tmp_path) -> None:
    with pytest.raises(ValueError, match=".nii or .nii.gz"):
        save_nifti(tmp_path / "out.nrrd", np.zeros((2, 2, 2)))


def test_header_bytes_round_trip_with_extension(tmp_path) -> None:
    img = nib.Nifti1Image(np.zeros((2, 3, 4), np.float32), np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment"))
    nib.save(img, str(tmp_path / "e.nii.gz"))
    vol = load_nifti(tmp_path / "e.nii.gz")
    blob = header_to_bytes(vol.header)
    rebuilt = header_from_bytes(blob)
    assert rebuilt.binaryblock == vol.header.binaryblock
    assert [e.get_content() for e in rebuilt.extensions] == [b"a comment"]
    out = save_nifti(tmp_path / "e2.nii.gz", vol.data, affine=vol.affine, header=rebuilt)
    back = load_nifti(out)
    assert back.header.binaryblock == vol.header.binaryblock
    assert [e.get_content() for e in back.header.extensions] == [b"a comment"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_display_round_trip(case) -> None:
    affine = _affine(CASES[case]["spacing"], CASES[case]["rotation"])
    orientation = display_orientation(affine)
    data = np.arange(2 * 3 * 5).reshape(2, 3, 5)
    shown = to_display(data, orientation)
    assert shown.shape == tuple(data.shape[a] for a in orientation.axis_order)
    assert np.array_equal(from_display(shown, orientation), data)
    meta = orientation.to_metadata()
    assert DisplayOrientation.from_metadata(meta) == orientation


def test_display_is_superior_posterior_left() -> None:
    """Each display axis steps toward S, P and L in world space (RAS+ coordinates)."""
    for affine in (
        np.diag([3.0, 3.0, 3.0, 1.0]),
        np.diag([-1.0, -1.0, 2.0, 1.0]),
        _affine((1, 1, 1), _rotation(0.2, 0.3)),
        np.array([[0, 0, 2.0, 0], [1.0, 0, 0, 0], [0, -1.5, 0, 0], [0, 0, 0, 1]]),
    ):
        orientation = display_orientation(affine)
        directions = affine[:3, :3]
        for display_axis, world_axis, sign in ((0, 2, 1), (1, 1, -1), (2, 0, -1)):
            voxel_axis = orientation.axis_order[display_axis]
            step = directions[:, voxel_axis] * (-1 if voxel_axis in orientation.flip_axes else 1)
            assert np.argmax(np.abs(step)) == world_axis
            assert np.sign(step[world_axis]) == sign


def test_affine_from_scale_reads_back_in_the_same_layout() -> None:
    affine = affine_from_scale((3.0, 0.7, 0.8), (10.0, -5.0, 2.0))
    orientation = display_orientation(affine)
    assert orientation == DisplayOrientation((2, 1, 0), ())
    assert nib.affines.voxel_sizes(affine).tolist() == [0.8, 0.7, 3.0]
