"""NIfTI headers whose geometry cannot be trusted (issue 28 items 1, 2, 3, 6, 7): no
orientation at all, an sform that disagrees with pixdim, NaN in the affine or pixdim, complex
voxels. Each is refused in one line or read with a warning that says what was assumed."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from scan_io.checks import NoOrientationWarning, SpacingMismatchWarning
from scan_io.nifti import load_nifti, save_nifti
from scan_io.volume import load_scan
from training.data.normalization import NO_NORMALIZATION
from training.data.specs import load_cases


def _write(path: Path, data: np.ndarray, affine: np.ndarray | None,
           zooms: tuple[float, float, float] | None = None) -> Path:
    """A NIfTI file; ``affine`` None writes a header with qform_code = sform_code = 0."""
    if affine is None:
        header = nib.Nifti1Header()
        header.set_data_shape(data.shape)
        header.set_data_dtype(data.dtype)
        header.set_zooms(zooms or (1.0, 1.0, 1.0))
        img = nib.Nifti1Image(data, None, header=header)
    else:
        img = nib.Nifti1Image(data, affine)
        if zooms is not None:
            img.header.set_zooms(zooms)
    nib.save(img, str(path))
    return path


def _volume(shape=(6, 5, 4)) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.int16).reshape(shape)


def test_no_orientation_in_the_header_warns_instead_of_guessing_silently(tmp_path):
    path = _write(tmp_path / "old.nii.gz", _volume(), None, zooms=(2.0, 2.0, 3.0))
    with pytest.warns(NoOrientationWarning, match=r"old\.nii\.gz.*qform_code = sform_code = 0"):
        scan = load_scan(path)
    assert scan.spacing == (3.0, 2.0, 2.0)


def test_a_header_with_an_orientation_gives_no_orientation_warning(tmp_path, recwarn):
    load_scan(_write(tmp_path / "ok.nii.gz", _volume(), np.diag([2.0, 2.0, 3.0, 1.0])))
    assert not [w for w in recwarn if issubclass(w.category, NoOrientationWarning)]


def test_sform_voxel_size_wins_over_pixdim_with_a_warning(tmp_path):
    path = _write(tmp_path / "mism.nii.gz", _volume(), np.diag([0.8, 0.8, 2.5, 1.0]),
                  zooms=(1.0, 1.0, 1.0))
    assert nib.load(str(path)).header.get_zooms() == (1.0, 1.0, 1.0)  # what pixdim says
    with pytest.warns(SpacingMismatchWarning, match=r"0\.8 x 0\.8 x 2\.5.*1 x 1 x 1"):
        vol = load_nifti(path)
    np.testing.assert_allclose(vol.spacing, (0.8, 0.8, 2.5))
    with pytest.warns(SpacingMismatchWarning):
        scan = load_scan(path)
    np.testing.assert_allclose(scan.spacing, (2.5, 0.8, 0.8))  # display order (S, P, L)


def test_mismatched_pixdim_does_not_change_hd95_in_mm(tmp_path):
    """Evaluation reads spacing from the same loader: HD95 in mm follows the sform."""
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    label = np.zeros((6, 5, 4), np.uint8)
    label[1:4, 1:3, 1:3] = 1
    _write(tmp_path / "imagesTr" / "c_0000.nii.gz", _volume(), affine, zooms=(1.0, 1.0, 1.0))
    _write(tmp_path / "labelsTr" / "c.nii.gz", label, affine, zooms=(1.0, 1.0, 1.0))
    with pytest.warns(SpacingMismatchWarning):
        [case] = load_cases(str(tmp_path), NO_NORMALIZATION)
    np.testing.assert_allclose(case.spacing, (2.5, 0.8, 0.8))


@pytest.mark.parametrize("where", ["sform offset", "qform offset"])
def test_nan_in_the_affine_is_refused_in_one_line(tmp_path, where):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[0, 3] = np.nan
    img = nib.Nifti1Image(_volume(), affine)
    if where == "qform offset":
        img.header.set_sform(None, code=0)
        img.header["qoffset_x"] = np.nan
        img.header["qform_code"] = 1
        img = nib.Nifti1Image(_volume(), None, header=img.header)
    path = tmp_path / "nan_affine.nii.gz"
    nib.save(img, str(path))
    with pytest.raises(ValueError, match=r"nan_affine\.nii\.gz.*not finite") as err:
        load_nifti(path)
    assert "\n" not in str(err.value)


def test_pixdim_nan_is_refused(tmp_path):
    img = nib.Nifti1Image(_volume(), np.diag([1.0, 1.0, 2.0, 1.0]))
    img.header["pixdim"][2] = np.nan
    path = tmp_path / "pixnan.nii.gz"
    nib.save(img, str(path))
    with pytest.raises(ValueError, match=r"pixnan\.nii\.gz.*pixdim.*nan") as err:
        load_scan(path)
    assert "\n" not in str(err.value)


def test_complex_voxels_are_refused_in_one_line(tmp_path):
    path = _write(tmp_path / "cplx.nii.gz", _volume().astype(np.complex64), np.eye(4))
    with pytest.raises(ValueError, match=r"cplx\.nii\.gz.*complex.*magnitude") as err:
        load_scan(path)
    assert "\n" not in str(err.value)


def test_saved_labels_keep_a_mismatched_header_as_it_was(tmp_path):
    """The sform decides the spacing we use; the file we write keeps the source header."""
    src = _write(tmp_path / "mism.nii.gz", _volume(), np.diag([0.8, 0.8, 2.5, 1.0]),
                 zooms=(1.0, 1.0, 1.0))
    with pytest.warns(SpacingMismatchWarning):
        vol = load_nifti(src)
    out = save_nifti(tmp_path / "out.nii.gz", np.zeros(vol.shape, np.uint8), like=vol,
                     labels=True)
    np.testing.assert_allclose(nib.load(str(out)).affine, vol.affine)
