"""Untrustworthy NIfTI geometry through napari (issue 28 items 1, 2, 6, 7): a notification
instead of a silent guess, the sform's voxel size as the layer's scale, and files that are
refused leave the viewer as it was (nothing added, later opens and close still work)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from napari.utils.notifications import notification_manager

PLUGIN = "napari-l2gnet"


def _volume() -> np.ndarray:
    return np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4) * 7 - 100


def _no_orientation(path: Path) -> Path:
    header = nib.Nifti1Header()
    header.set_data_shape((6, 5, 4))
    header.set_data_dtype(np.int16)
    header.set_zooms((2.0, 2.0, 3.0))
    nib.save(nib.Nifti1Image(_volume(), None, header=header), str(path))
    return path


def test_no_orientation_is_a_notification_in_napari(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path = _no_orientation(tmp_path / "old_scan.nii.gz")
    with notification_manager:
        before = len(notification_manager.records)
        [layer] = viewer.open(str(path), plugin=PLUGIN)
        notes = [str(n.message) for n in notification_manager.records[before:]]
    assert any("old_scan.nii.gz" in n and "no orientation" in n for n in notes), notes
    np.testing.assert_allclose(layer.scale, (3.0, 2.0, 2.0))


def test_layer_scale_is_the_sforms_voxel_size(make_napari_viewer, tmp_path):
    img = nib.Nifti1Image(_volume(), np.diag([0.8, 0.8, 2.5, 1.0]))
    img.header.set_zooms((1.0, 1.0, 1.0))
    path = tmp_path / "mism.nii.gz"
    nib.save(img, str(path))
    viewer = make_napari_viewer()
    with pytest.warns(UserWarning, match="differs from the header's pixdim"):
        [layer] = viewer.open(str(path), plugin=PLUGIN)
    np.testing.assert_allclose(layer.scale, (2.5, 0.8, 0.8))
    np.testing.assert_allclose(layer.metadata["nifti"]["spacing"], (0.8, 0.8, 2.5))


def _pixdim_nan(path: Path) -> Path:
    img = nib.Nifti1Image(_volume(), np.diag([1.0, 1.0, 2.0, 1.0]))
    img.header["pixdim"][1] = np.nan
    nib.save(img, str(path))
    return path


def _complex(path: Path) -> Path:
    nib.save(nib.Nifti1Image(_volume().astype(np.complex64), np.eye(4)), str(path))
    return path


@pytest.mark.parametrize(("make", "needle"), [(_pixdim_nan, "pixdim"), (_complex, "complex")])
def test_refused_file_adds_nothing_and_the_viewer_keeps_working(make_napari_viewer, tmp_path,
                                                                make, needle):
    viewer = make_napari_viewer()
    bad = make(tmp_path / "bad.nii.gz")
    with pytest.raises(Exception, match=needle) as err:
        viewer.open(str(bad), plugin=PLUGIN)
    assert "bad.nii.gz" in str(err.value)
    assert len(viewer.layers) == 0
    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(_volume(), np.diag([1.0, 1.0, 2.0, 1.0])), str(good))
    [layer] = viewer.open(str(good), plugin=PLUGIN)
    assert np.isfinite(layer.scale).all()
    viewer.layers.clear()
