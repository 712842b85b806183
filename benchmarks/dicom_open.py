"""Time to open a generated DICOM series as a napari layer, against its NIfTI twin.

Writes a CT-like 512 x 512 x N volume (int16 HU) as a single-frame DICOM series (random file
names, rescale intercept -1024) and as a .nii.gz twin into a temporary folder, then times
what File > Open runs for each: ``napari_l2gnet._reader.get_reader(path)(path)`` (files on
disk -> layer data tuple: read, rescale, display layout, contrast window). Best of
``--repeats`` runs each; one JSON line per format, then one with the ratio.

    python benchmarks/dicom_open.py                  # 512 x 512 x 300
    python benchmarks/dicom_open.py --slices 60      # quicker
    python benchmarks/dicom_open.py --syntax jpeg2000  # the series JPEG 2000 lossless, as
                                                       # PACS exports often are (also jpegls, rle)

``--syntax`` compresses the series with pydicom's encoders before timing, so the DICOM figure
includes decoding (pylibjpeg's plugins, the package's declared decoders).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_l2gnet._reader import get_reader  # noqa: E402
from scan_io.testing import write_dicom_series  # noqa: E402

SYNTAXES = {"none": None, "jpeg2000": "1.2.840.10008.1.2.4.90",
            "jpegls": "1.2.840.10008.1.2.4.80", "rle": "1.2.840.10008.1.2.5"}


def _compress(folder: Path, syntax: str | None) -> None:
    """Re-encode every file of ``folder`` in ``syntax`` (lossless) with pydicom's encoders."""
    if syntax is None:
        return
    import pydicom

    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.compress(syntax, generate_instance_uid=False)
        ds.save_as(f)


def _volume(shape: tuple[int, int, int]) -> np.ndarray:
    """A smooth body-like HU volume (display order: slices, rows, columns)."""
    s, r, c = shape
    yy, xx = np.mgrid[0:r, 0:c]
    body = ((yy - r / 2) / (0.42 * r)) ** 2 + ((xx - c / 2) / (0.47 * c)) ** 2 < 1
    rng = np.random.default_rng(0)
    vol = np.full(shape, -1000, np.int16)
    vol[:, body] = 40
    vol += rng.normal(0, 20, shape).astype(np.int16)
    return vol


def _time_open(path: Path, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        reader = get_reader(str(path))
        assert reader is not None, path
        [(data, _kwargs, _kind)] = reader(str(path))
        np.asarray(data).sum()  # touch every voxel: a view is not a loaded layer
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--syntax", choices=sorted(SYNTAXES), default="none",
                        help="compress the DICOM series first (lossless)")
    args = parser.parse_args()
    shape = (args.slices, args.size, args.size)
    spacing = 0.7
    affine_lps = np.diag([spacing, spacing, 1.5, 1.0])  # (column, row, slice) -> LPS mm
    common = {"shape": list(shape), "python": platform.python_version(),
              "machine": platform.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        volume = _volume(shape)
        write_dicom_series(tmp / "series", volume, affine_lps, intercept=-1024.0)
        _compress(tmp / "series", SYNTAXES[args.syntax])
        ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
        nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0), ras), str(tmp / "twin.nii.gz"))
        dicom_s = _time_open(tmp / "series", args.repeats)
        nifti_s = _time_open(tmp / "twin.nii.gz", args.repeats)
        [(a, _, _)] = get_reader(str(tmp / "series"))(str(tmp / "series"))
        [(b, _, _)] = get_reader(str(tmp / "twin.nii.gz"))(str(tmp / "twin.nii.gz"))
        same = bool(np.array_equal(a, b))
    print(json.dumps({"format": "dicom", "syntax": args.syntax, "seconds": round(dicom_s, 3),
                      "files": shape[0], **common}))
    print(json.dumps({"format": "nifti.gz", "seconds": round(nifti_s, 3), **common}))
    print(json.dumps({"ratio_dicom_over_nifti": round(dicom_s / nifti_s, 2),
                      "syntax": args.syntax, "same_pixels": same, **common}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
