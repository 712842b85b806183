"""Reader and writer through napari: layers with the right layout, scale and metadata, and
files written back on exactly the source grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_l2gnet._reader import get_reader, is_label_volume, read_nifti
from napari_l2gnet._writer import LayerWriteError, write_image, write_labels
from scan_io.nifti import display_orientation, load_nifti, to_display

PLUGIN = "napari-l2gnet"


def _oblique_file(path: Path, dtype=np.int16) -> Path:
    c, s = np.cos(0.4), np.sin(0.4)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.7, 0.7, 3.0])
    affine[:3, 3] = [-30.0, 12.0, 5.5]
    data = np.random.default_rng(1).integers(-1000, 1000, size=(9, 8, 5)).astype(dtype)
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)
    img.header.set_data_dtype(dtype)
    nib.save(img, str(path))
    return path


@pytest.fixture
def ct(shared_data) -> Path:
    return shared_data / "ct_abdomen" / "example_ct_sm.nii.gz"


@pytest.fixture
def seg(shared_data) -> Path:
    return shared_data / "ct_abdomen" / "example_seg_synapse8.nii.gz"


def _same_file_content(a: Path, b: Path) -> None:
    va, vb = load_nifti(a), load_nifti(b)
    assert va.data.dtype == vb.data.dtype and np.array_equal(va.data, vb.data)
    assert np.array_equal(va.affine, vb.affine)
    assert va.header.binaryblock == vb.header.binaryblock


# ----------------------------------------------------------------------- without a viewer


def test_get_reader_only_for_nifti(tmp_path) -> None:
    assert get_reader("scan.nii.gz") is read_nifti
    assert get_reader("scan.NII") is read_nifti
    assert get_reader(["a.nii", "b.nii.gz"]) is read_nifti
    assert get_reader("scan.png") is None
    assert get_reader(["a.nii", "b.tif"]) is None
    assert get_reader(str(tmp_path)) is None


def test_layer_data_tuple_for_ct_and_seg(ct, seg) -> None:
    [(data, kwargs, kind)] = read_nifti(str(ct))
    vol = load_nifti(ct)
    assert kind == "image" and kwargs["name"] == "example_ct_sm"
    assert data.shape == (30, 101, 122) and data.dtype == np.int16
    assert np.array_equal(data, vol.data[::-1, ::-1, :].transpose(2, 1, 0))  # RAS -> S, P, L
    assert kwargs["scale"] == (3.0, 3.0, 3.0)
    meta = kwargs["metadata"]["nifti"]
    assert meta["axis_order"] == [2, 1, 0] and meta["flip_axes"] == [0, 1]
    assert np.array_equal(np.array(meta["affine"]), vol.affine)
    assert meta["header"]["binaryblock"] == vol.header.binaryblock
    assert meta["path"] == str(ct) and meta["shape"] == [122, 101, 30]
    [(labels, lkwargs, lkind)] = read_nifti(seg)
    assert (
        lkind == "labels" and labels.dtype == np.uint8 and lkwargs["name"] == "example_seg_synapse8"
    )


def test_mr_lps_is_only_transposed(shared_data) -> None:
    path = shared_data / "ct_abdomen" / "example_mr_sm.nii.gz"
    [(data, kwargs, kind)] = read_nifti(path)
    assert kind == "image"
    assert np.array_equal(data, load_nifti(path).data.transpose(2, 1, 0))
    assert kwargs["metadata"]["nifti"]["flip_axes"] == []


def test_label_guess() -> None:
    small = np.zeros((4, 4, 4), np.int16)
    small[0, 0, 0] = 3
    assert is_label_volume(small, "anything")
    assert not is_label_volume(small - 5, "mask")
    assert not is_label_volume(np.arange(300, dtype=np.int16).reshape(3, 10, 10), "ct")
    assert is_label_volume(np.arange(300, dtype=np.int16).reshape(3, 10, 10), "ct_seg")
    assert not is_label_volume(
        np.arange(100, dtype=np.uint8).reshape(1, 10, 10), "t1"
    )  # 100 values
    assert is_label_volume(np.array([[[0.0, 2.0]]], np.float32), "liver_Mask")
    assert not is_label_volume(np.array([[[0.0, 2.5]]], np.float32), "liver_mask")
    assert not is_label_volume(np.array([[[0.0, 2.0]]], np.float32), "t2")


def test_writer_round_trip_without_a_viewer(tmp_path, seg) -> None:
    [(data, kwargs, _)] = read_nifti(seg)
    out = write_labels(str(tmp_path / "seg.nii.gz"), data, kwargs)
    assert out == [str(tmp_path / "seg.nii.gz")]
    _same_file_content(seg, Path(out[0]))


def test_writer_appends_the_extension(tmp_path, seg) -> None:
    [(data, kwargs, _)] = read_nifti(seg)
    out = write_labels(str(tmp_path / "noext"), data, kwargs)
    assert out == [str(tmp_path / "noext.nii.gz")]


def test_writer_refuses_wrong_shape(tmp_path, ct) -> None:
    [(data, kwargs, _)] = read_nifti(ct)
    with pytest.raises(LayerWriteError, match="cannot write it on that grid"):
        write_image(str(tmp_path / "x.nii.gz"), data[:-1], kwargs)


def test_labels_never_written_over_their_scan(tmp_path, ct) -> None:
    copy = tmp_path / "ct.nii.gz"
    copy.write_bytes(ct.read_bytes())
    [(data, kwargs, _)] = read_nifti(copy)
    with pytest.raises(LayerWriteError, match="refusing to write labels"):
        write_labels(str(copy), np.zeros(data.shape, np.uint8), kwargs)
    assert copy.read_bytes() == ct.read_bytes()


# ----------------------------------------------------------------------- through napari


def test_open_gives_layer_with_scale_and_metadata(make_napari_viewer, ct, seg) -> None:
    viewer = make_napari_viewer()
    [image] = viewer.open(str(ct), plugin=PLUGIN)
    [labels] = viewer.open(str(seg), plugin=PLUGIN)
    assert image._type_string == "image" and labels._type_string == "labels"
    assert image.name == "example_ct_sm"
    np.testing.assert_array_equal(image.scale, [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(image.translate, [0.0, 0.0, 0.0])
    assert image.data.shape == (30, 101, 122)
    assert viewer.dims.nsteps[0] == 30  # the slider browses axial slices
    meta = image.metadata["nifti"]
    assert np.array_equal(np.array(meta["affine"]), load_nifti(ct).affine)
    assert labels.metadata["nifti"]["kind"] == "labels"


def test_save_labels_layer_round_trip(make_napari_viewer, tmp_path, seg) -> None:
    viewer = make_napari_viewer()
    [labels] = viewer.open(str(seg), plugin=PLUGIN)
    out = tmp_path / "seg_copy.nii.gz"
    labels.save(str(out), plugin=PLUGIN)
    _same_file_content(seg, out)


def test_save_image_layer_round_trip(make_napari_viewer, tmp_path, ct) -> None:
    import napari

    viewer = make_napari_viewer()
    [image] = viewer.open(str(ct), plugin=PLUGIN)
    out = tmp_path / "ct_copy.nii.gz"
    napari.save_layers(str(out), [image], plugin=PLUGIN)
    _same_file_content(ct, out)


def test_edited_labels_land_on_the_right_voxel(make_napari_viewer, tmp_path, ct) -> None:
    viewer = make_napari_viewer()
    [image] = viewer.open(str(ct), plugin=PLUGIN)
    drawn = viewer.add_labels(
        np.zeros(image.data.shape, np.uint8),
        scale=image.scale,
        metadata={"nifti": dict(image.metadata["nifti"])},
        name="drawn",
    )
    drawn.data[4, 10, 20] = 5  # plane 4, row 10 (from anterior), column 20 (from the right)
    out = tmp_path / "drawn.nii.gz"
    drawn.save(str(out), plugin=PLUGIN)
    vol, src = load_nifti(out), load_nifti(ct)
    assert vol.data.dtype == np.uint8 and vol.data.shape == src.data.shape
    i, j, k = np.argwhere(vol.data == 5)[0]
    assert (i, j, k) == (121 - 20, 100 - 10, 4)  # RAS file: i and j run the other way
    assert np.array_equal(vol.affine, src.affine)
    assert int(vol.header["sform_code"]) == int(src.header["sform_code"])
    assert int(vol.header["qform_code"]) == int(src.header["qform_code"])


def test_oblique_round_trip_through_napari(make_napari_viewer, tmp_path) -> None:
    path = _oblique_file(tmp_path / "oblique.nii.gz")
    viewer = make_napari_viewer()
    [image] = viewer.open(str(path), plugin=PLUGIN)
    vol = load_nifti(path)
    assert np.array_equal(image.data, to_display(vol.data, display_orientation(vol.affine)))
    np.testing.assert_allclose(image.scale, [3.0, 0.7, 0.7], rtol=1e-6)
    out = tmp_path / "oblique_copy.nii.gz"
    image.save(str(out), plugin=PLUGIN)
    _same_file_content(path, out)


def test_layer_without_metadata_warns_and_keeps_scale(make_napari_viewer, tmp_path) -> None:
    viewer = make_napari_viewer()
    data = np.zeros((6, 7, 8), np.uint16)
    data[1, 2, 3] = 300
    layer = viewer.add_labels(data, scale=(2.5, 0.8, 0.9), translate=(10, 20, 30), name="new")
    out = tmp_path / "new.nii.gz"
    with pytest.warns(UserWarning, match="no NIfTI source metadata"):
        layer.save(str(out), plugin=PLUGIN)
    [reread] = viewer.open(str(out), plugin=PLUGIN)
    assert np.array_equal(reread.data, data)
    np.testing.assert_allclose(reread.scale, [2.5, 0.8, 0.9], rtol=1e-6)
    assert load_nifti(out).data.dtype == np.uint16


# ----------------------------------------------------------------------- reliability


def test_labels_are_never_saved_over_any_scan(make_napari_viewer, tmp_path, ct, seg) -> None:
    """A Labels layer opened from its own file, or drawn from scratch, cannot replace a scan;
    replacing an earlier label file stays possible (napari's dialog has asked)."""
    scan = tmp_path / "ct.nii.gz"
    scan.write_bytes(ct.read_bytes())
    viewer = make_napari_viewer()
    [labels] = viewer.open(str(seg), plugin=PLUGIN)
    with pytest.raises(LayerWriteError, match="holds a scan"):
        write_labels(str(scan), labels.data, {"name": labels.name, "metadata": labels.metadata})
    drawn = viewer.add_labels(np.zeros(labels.data.shape, np.uint8), name="drawn")
    with pytest.raises(LayerWriteError, match="holds a scan"):
        drawn.save(str(scan), plugin=PLUGIN)  # through napari: the reason reaches the user
    assert scan.read_bytes() == ct.read_bytes()
    earlier = tmp_path / "earlier_seg.nii.gz"
    earlier.write_bytes(seg.read_bytes())
    labels.data[0, 0, 0] = 3
    labels.save(str(earlier), plugin=PLUGIN)
    assert load_nifti(earlier).data.max() == 8


def test_labels_layer_with_bad_values_is_refused(tmp_path, seg) -> None:
    [(data, kwargs, _)] = read_nifti(seg)
    bad = data.astype(np.int16)
    bad[0, 0, 0] = -1
    with pytest.raises(LayerWriteError, match="label value -1 is negative"):
        write_labels(str(tmp_path / "x.nii.gz"), bad, kwargs)
    assert not (tmp_path / "x.nii.gz").exists()


def test_ct_opens_with_a_soft_tissue_window_and_mri_with_percentiles(
        make_napari_viewer, ct, shared_data) -> None:
    viewer = make_napari_viewer()
    [image] = viewer.open(str(ct), plugin=PLUGIN)
    assert tuple(image.contrast_limits) == (-160.0, 240.0)
    display = image.metadata["display"]
    assert display["kind"] == "ct_soft_tissue" and "W400/L40" in display["reason"]
    mr_path = shared_data / "ct_abdomen" / "example_mr_sm.nii.gz"
    [mr] = viewer.open(str(mr_path), plugin=PLUGIN)
    expected = np.percentile(load_nifti(mr_path).data, [1, 99])
    np.testing.assert_allclose(mr.contrast_limits, expected)
    assert mr.metadata["display"]["kind"] == "percentile"
    assert "not Hounsfield" in mr.metadata["display"]["reason"]


def test_nan_voxels_warn_when_opened(tmp_path) -> None:
    from scan_io.checks import NonFiniteVoxelsWarning

    data = np.arange(60, dtype=np.float32).reshape(5, 4, 3)
    data[0, 0, 0] = np.nan
    path = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.warns(NonFiniteVoxelsWarning, match="1 NaN"):
        [(layer, _, _)] = read_nifti(path)
    assert np.isfinite(layer).all()
