"""Compressed DICOM opens with the declared decoders, and a file that cannot be decoded is named
with the real reason (issue 27, item 4).

Two sources: small series generated here and compressed with pydicom's own encoders (RLE,
JPEG-LS, JPEG 2000; JPEG lossless with `scan_io.testing.encode_jpeg_lossless`, as pydicom has no
encoder for it), each compared voxel for voxel with the uncompressed series; and the vendor
files pydicom ships (CT_small, MR_small in five transfer syntaxes, two vendor JPEG 2000 CT
slices, a truncated file).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from scan_io.testing import encode_jpeg_lossless, write_dicom_series
from scan_io.volume import load_scan

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])  # (column, row, slice) -> LPS mm


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """4 slices of 48 x 40 CT-like values (HU -1000..2000), uncompressed, intercept -1024."""
    rng = np.random.default_rng(7)
    values = rng.integers(-1000, 2000, size=(4, 40, 48)).astype(np.int16)
    values[:, 10:20, 10:30] = 40  # flat patches: runs for RLE, easy predictions for JPEG
    folder = tmp_path_factory.mktemp("plain") / "series"
    write_dicom_series(folder, values, AFFINE, intercept=-1024, seed=1)
    return folder


def _recompress(plain: Path, dst: Path, syntax: str) -> Path:
    shutil.copytree(plain, dst)
    for f in dst.iterdir():
        ds = pydicom.dcmread(f)
        if syntax == JPEGLosslessSV1:  # no pydicom encoder: our own codestream
            ds.PixelData = encapsulate([encode_jpeg_lossless(ds.pixel_array)])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        else:
            ds.compress(syntax, generate_instance_uid=False)
        ds.save_as(f)
    return dst


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless,
                                    JPEGLosslessSV1], ids=lambda s: s.name)
def test_each_lossless_syntax_opens_as_the_uncompressed_series(plain, tmp_path, syntax):
    folder = _recompress(plain, tmp_path / "c", syntax)
    stored = {pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID
              for f in folder.iterdir()}
    assert stored == {syntax}
    compressed, reference = load_scan(folder), load_scan(plain)
    assert compressed.data.dtype == reference.data.dtype
    np.testing.assert_array_equal(compressed.data, reference.data)
    assert -1000 <= compressed.data.min() and compressed.data.max() < 2000  # HU, not stored


# ------------------------------------------------------------------ pydicom's vendor files


def _alone(name: str, tmp_path: Path) -> Path:
    """A shipped file in a folder of its own (the test-files folder mixes series)."""
    (tmp_path / name).mkdir()
    return Path(shutil.copy(get_testdata_file(name), tmp_path / name / name))


def test_ct_small_opens_in_hounsfield_units(tmp_path):
    path = _alone("CT_small.dcm", tmp_path)
    ds = pydicom.dcmread(path)
    scan = load_scan(path)
    assert scan.data.shape == (1, ds.Rows, ds.Columns) and scan.format == "dicom"
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    # Display layout of an LPS axial slice: rows and columns as stored.
    np.testing.assert_array_equal(scan.data[0], hu)
    np.testing.assert_allclose(scan.spacing[1:], [float(v) for v in ds.PixelSpacing])


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_implicit.dcm"])
def test_mr_small_in_every_syntax_equals_the_uncompressed_file(tmp_path, name):
    reference = load_scan(_alone("MR_small.dcm", tmp_path)).data
    assert reference.shape == (1, 64, 64) and reference.std() > 0
    np.testing.assert_array_equal(load_scan(_alone(name, tmp_path)).data, reference)


@pytest.mark.parametrize("name", ["693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"])
def test_vendor_jpeg2000_ct_opens_in_hounsfield_units(tmp_path, name):
    """Two 512 x 512 JPEG 2000 CT slices from vendors (one whose codestream's signedness
    disagrees with the header, a known vendor quirk pydicom corrects)."""
    from pydicom.pixels import apply_modality_lut

    path = _alone(name, tmp_path)
    ds = pydicom.dcmread(path)
    scan = load_scan(path)
    assert scan.data.shape == (1, 512, 512)
    np.testing.assert_array_equal(scan.data[0], apply_modality_lut(ds.pixel_array, ds))
    assert scan.data.min() < -500 < 0 < scan.data.max()  # air and tissue, in HU


# ------------------------------------------------------------------ the real reason


def test_truncated_shipped_file_is_named_as_truncated(tmp_path):
    path = _alone("MR_truncated.dcm", tmp_path)
    with pytest.raises(ValueError, match="damaged or truncated") as err:
        load_scan(path)
    assert str(path) in str(err.value) and "install" not in str(err.value).lower()


@pytest.mark.parametrize("syntax", [None, JPEG2000Lossless, RLELossless],
                         ids=["uncompressed", "jpeg2000", "rle"])
def test_truncated_file_in_a_series_is_named_with_the_reason(plain, tmp_path, syntax):
    folder = _recompress(plain, tmp_path / "c", syntax) if syntax else shutil.copytree(
        plain, tmp_path / "c")
    victim = sorted(folder.iterdir())[2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 400])  # cut inside the pixel data
    with pytest.raises(ValueError, match="damaged or truncated") as err:
        load_scan(folder)
    assert victim.name in str(err.value) and "install" not in str(err.value).lower()


def test_a_syntax_pydicom_cannot_decode_says_so(plain, tmp_path):
    folder = shutil.copytree(plain, tmp_path / "mpeg")
    f = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(f)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    ds["PixelData"].VR = "OB"
    ds.save_as(f)
    with pytest.raises(ValueError, match=r"transfer syntax MPEG2 .* is not one pydicom can "
                                         r"decode"):
        load_scan(folder)


def test_declared_decoders_are_installed():
    """The decoders pyproject declares are what pydicom uses for these syntaxes."""
    from pydicom.pixels import get_decoder

    for syntax in (JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1, RLELossless):
        assert "pylibjpeg" in get_decoder(syntax).available_plugins, syntax.name
