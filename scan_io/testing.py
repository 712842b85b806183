"""Write a DICOM series from a volume with pydicom: the tests' and benchmarks' generated scans.

Clinical series cannot ship with the project, so the DICOM tests turn a real NIfTI scan
(``../shared/data/ct_abdomen``) into a series: single-frame files with shuffled random names,
any orientation (an LPS axial one, or an oblique one), stored values with a rescale slope and
intercept. Not a DICOM exporter for users: only what the reader needs is written.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from scan_io.nifti import NiftiVolume, display_orientation

__all__ = ["display_affine_lps", "rotation", "write_dicom_series", "encode_jpeg_lossless",
           "CT_IMAGE_STORAGE", "MR_IMAGE_STORAGE"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def display_affine_lps(vol: NiftiVolume) -> np.ndarray:
    """4x4 mapping a display index (column, row, slice, 1) of ``vol`` to LPS millimetres."""
    orient = display_orientation(vol.affine)
    n = vol.data.shape
    m = np.zeros((4, 4))
    m[3, 3] = 1.0
    for display_axis, file_axis in enumerate(orient.axis_order):
        col = 2 - display_axis  # (column, row, slice) = display axes (2, 1, 0)
        if file_axis in orient.flip_axes:
            m[file_axis, col] = -1.0
            m[file_axis, 3] = n[file_axis] - 1
        else:
            m[file_axis, col] = 1.0
    return _LPS @ vol.affine @ m


def rotation(degrees: float, axis: int = 0) -> np.ndarray:
    """4x4 rotation about a patient axis (0 = x, 1 = y, 2 = z) through the origin."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(4)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def write_dicom_series(
    folder: str | os.PathLike[str],
    display: np.ndarray,
    affine_lps: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    seed: int = 0,
    modality: str = "CT",
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_description: str = "generated",
) -> list[Path]:
    """One file per display slice, under random names, written in random order.

    ``display`` is (slices, rows, columns); ``affine_lps`` maps (column, row, slice, 1) to LPS
    mm. Stored values are ``round((value - intercept) / slope)`` as uint16 (or int16 when some
    are negative). Returns the files in slice order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    stored = np.round((np.asarray(display, np.float64) - intercept) / slope)
    signed = stored.min() < 0
    dtype = np.int16 if signed else np.uint16
    info = np.iinfo(dtype)
    if stored.min() < info.min or stored.max() > info.max:
        raise ValueError(f"values do not fit {np.dtype(dtype)} with slope {slope} and "
                         f"intercept {intercept}")
    stored = stored.astype(dtype)
    row_dir = affine_lps[:3, 0] / np.linalg.norm(affine_lps[:3, 0])
    col_dir = affine_lps[:3, 1] / np.linalg.norm(affine_lps[:3, 1])
    pixel_spacing = [float(np.linalg.norm(affine_lps[:3, 1])),
                     float(np.linalg.norm(affine_lps[:3, 0]))]
    thickness = float(np.linalg.norm(affine_lps[:3, 2]))
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    n = stored.shape[0]
    names = [f"{rng.integers(0, 2**40):x}" for _ in range(n)]  # no order in the names
    files = []
    for s in rng.permutation(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName, ds.PatientID = "Generated^Phantom", "GEN0001"
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20260101", "120000", ""
        ds.ReferringPhysicianName, ds.StudyID = "", "1"
        ds.Modality, ds.SeriesNumber, ds.SeriesDescription = modality, 3, series_description
        ds.InstanceNumber = int(rng.integers(1, 10_000))  # deliberately not the slice order
        ds.Manufacturer = "napari-l2gnet tests"
        ds.ImageOrientationPatient = [f"{v:.10g}" for v in (*row_dir, *col_dir)]
        position = affine_lps @ np.array([0.0, 0.0, float(s), 1.0])
        ds.ImagePositionPatient = [f"{v:.10g}" for v in position[:3]]
        ds.PixelSpacing = [f"{v:.10g}" for v in pixel_spacing]
        ds.SliceThickness = f"{thickness:.10g}"
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
        if modality == "CT":
            ds.RescaleType = "HU"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = np.ascontiguousarray(stored[s]).tobytes()
        path = folder / names[s]
        ds.save_as(path, enforce_file_format=True)
        files.append((s, path))
    return [p for _, p in sorted(files)]


def encode_jpeg_lossless(frame: np.ndarray) -> bytes:
    """A 16-bit greyscale frame as a JPEG lossless (process 14, first-order prediction:
    selection value 1) codestream, the transfer syntax PACS use most for lossless CT.

    pydicom can decode this syntax (pylibjpeg-libjpeg) but has no encoder for it, so the tests
    make their own: one Huffman table with a 5-bit code per difference category (valid, if not
    optimal), ITU T.81 prediction and byte stuffing. Test support only.
    """
    frame = np.asarray(frame)
    if frame.ndim != 2 or frame.dtype not in (np.uint16, np.uint8):
        raise ValueError("expected a 2-D uint8/uint16 frame")
    rows, cols = frame.shape
    precision = 16
    x = frame.astype(np.int64)
    pred = np.empty_like(x)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = x[0, :-1]  # first row: the left neighbour
    pred[1:, 0] = x[:-1, 0]  # first column: the one above
    pred[1:, 1:] = x[1:, :-1]  # selection value 1: the left neighbour
    diff = (x - pred) % (1 << precision)
    diff[diff >= 1 << (precision - 1)] -= 1 << precision
    bits: list[str] = []
    for d in diff.ravel().tolist():
        size = min(abs(d).bit_length(), 16)
        bits.append(format(size, "05b"))  # Huffman code of category `size`: 5 bits
        if 0 < size < 16:
            bits.append(format(d if d > 0 else (d - 1) & ((1 << size) - 1), f"0{size}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad the last byte with ones
    data = bytearray()
    for i in range(0, len(stream), 8):
        byte = int(stream[i:i + 8], 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0x00)  # byte stuffing
    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)  # 17 codes of length 5
    dht = b"\x00" + counts + bytes(range(17))
    sof = (bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big")
           + b"\x01\x01\x11\x00")
    sos = b"\x01\x01\x00\x01\x00\x00"  # one component, table 0, predictor 1, Se 0, Pt 0

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    return (b"\xff\xd8" + segment(0xC3, sof) + segment(0xC4, dht) + segment(0xDA, sos)
            + bytes(data) + b"\xff\xd9")
