"""Readers for the layouts the papers' code uses, and for NIfTI folders and the phantom.

- ACDC (and any h5 slice folder): one ``image`` float [0, 1] and ``label`` per ``.h5`` file.
- Synapse (TransUNet): ``train_npz/*.npz`` slices, ``test_vol_h5/*.npy.h5`` volumes.
- nnU-Net style folders: ``imagesTr/NAME_0000.nii.gz`` (or ``NAME.nii.gz``) +
  ``labelsTr/NAME.nii.gz``.
- DICOM SEG: a SEG file (or a folder of them), each the labels of the DICOM series it
  references, found beside it (``scan_io.dicom_seg_read``; docs/dicom.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scan_io.checks import replace_non_finite
from scan_io.labels import check_labels

from .cases import Case, Slice
from .normalization import IntensityNormalization, normalize


def _files(folder: str | Path, pattern: str, list_file: str | Path | None) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Data folder {folder} does not exist")
    if list_file is not None:
        names = [ln.strip() for ln in Path(list_file).read_text().splitlines() if ln.strip()]
        suffix = pattern.lstrip("*")
        files = [folder / (n if n.endswith(suffix) else n + suffix) for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} files named in {list_file} are missing, "
                                    f"e.g. {missing[0]}")
    else:
        files = sorted(folder.glob(pattern))
    if not files:
        raise FileNotFoundError(f"No {pattern} files in {folder}")
    return files


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (float32, non-finite voxels replaced with a warning) and checked ``label``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "image" not in f or "label" not in f:
                raise ValueError(f"{path} has datasets {list(f)}; expected 'image' and 'label'")
            image, label = np.asarray(f["image"], np.float32), np.asarray(f["label"])
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file: {err}") from err
    return replace_non_finite(image, path), check_labels(label, path)


_SLICE_NAME = re.compile(r"^(?P<volume>.+)_slice_(?P<index>\d+)$")


def read_acdc_slices(folder: str | Path, list_file: str | Path | None = None) -> list[Slice]:
    """2-D training slices (``image`` (H, W) in [0, 1], ``label``), e.g. acdc/train_slices.

    Files named ``<volume>_slice_<n>.h5`` (the ACDC layout) also get their neighbours,
    slices n - 1 and n + 1 of the same volume among the files read (the slice itself where
    one is missing), for models with slice context."""
    out = []
    for path in _files(folder, "*.h5", list_file):
        image, label = _read_h5(path)
        if image.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D slice, got shape {image.shape}")
        out.append(Slice(image, label, path.stem))
    _link_neighbours(out)
    return out


def _link_neighbours(slices: list[Slice]) -> None:
    """Set ``neighbours`` of slices named ``<volume>_slice_<n>`` from their namesakes n +- 1
    (only a neighbour of the same in-plane shape counts)."""
    by_key = {}
    for s in slices:
        m = _SLICE_NAME.match(s.source)
        if m:
            by_key[m["volume"], int(m["index"])] = s
    for (volume, index), s in by_key.items():
        pair = []
        for k in (index - 1, index + 1):
            other = by_key.get((volume, k))
            pair.append(other.image if other is not None and other.image.shape == s.image.shape
                        else s.image)
        s.neighbours = (pair[0], pair[1])


def read_h5_volumes(folder: str | Path, list_file: str | Path | None = None) -> list[Case]:
    """3-D volumes ``image`` (D, H, W) in [0, 1] + ``label``: ACDC val_volumes, Synapse
    ``test_vol_h5/*.npy.h5``."""
    out = []
    for path in _files(folder, "*.h5", list_file):
        image, label = _read_h5(path)
        name = path.name.removesuffix(".h5").removesuffix(".npy")
        out.append(Case(name, image, label))
    return out


def read_npz_slices(folder: str | Path) -> list[Slice]:
    """Synapse ``train_npz/*.npz`` slices (``image`` already windowed to [0, 1], ``label``)."""
    out = []
    for path in _files(folder, "*.npz", None):
        with np.load(path, allow_pickle=False) as data:
            image, label = data["image"].astype(np.float32), data["label"]
        out.append(Slice(replace_non_finite(image, path), check_labels(label, path),
                         path.stem))
    return out


def read_nifti_pairs(root: str | Path, normalization: IntensityNormalization) -> list[Case]:
    """``root/imagesTr`` + ``root/labelsTr`` (nnU-Net names) as cases in display layout.

    Both files go through `scan_io.load_scan`, the function the napari reader and
    ``l2gnet predict`` use, so training and evaluation slice a scan exactly as inference
    does (axial slices, anterior up, patient right on the left; docs/design.md, "Orientation
    and exact round trips"), whatever the voxel order on disk.
    """
    from scan_io.volume import load_scan

    root = Path(root)
    images = [p for p in _files(root / "imagesTr", "*.nii*", None)
              if not p.name.startswith(".")]
    out = []
    for img_path in images:
        name = img_path.name.split(".nii")[0].removesuffix("_0000")
        lab_path = next((root / "labelsTr" / f"{name}{ext}" for ext in (".nii.gz", ".nii")
                         if (root / "labelsTr" / f"{name}{ext}").is_file()), None)
        if lab_path is None:
            raise FileNotFoundError(f"No label file labelsTr/{name}.nii.gz for {img_path}")
        img, lab = load_scan(img_path), load_scan(lab_path, labels=True)
        if img.nifti.shape != lab.nifti.shape:
            raise ValueError(f"{img_path} {img.nifti.shape} and {lab_path} {lab.nifti.shape} "
                             "are not on the same grid")
        if not np.allclose(img.affine, lab.affine, atol=1e-3):
            raise ValueError(f"{img_path} and {lab_path} have different affines (voxel to "
                             "world); the labels were not drawn on this image's grid")
        out.append(Case(name, normalize(img.data, normalization), lab.data, img.spacing))
    return out


def read_seg_cases(path: str | Path, normalization: IntensityNormalization,
                   class_names: Sequence[str] | None = None) -> list[Case]:
    """Each DICOM SEG at ``path`` (a SEG file, or the SEG files directly in a folder) with the
    series it references (found beside it) as a case in display layout, the way
    `read_nifti_pairs` gives a NIfTI pair. With the model's ``class_names`` the segments are
    matched to its classes by name or code (``scan_io.dicom_seg_read.label_values``)."""
    from scan_io.dicom_seg_read import load_seg_on_series, seg_files_in

    path = Path(path)
    segs = [path] if path.is_file() else seg_files_in(path)
    if not segs:
        raise FileNotFoundError(f"No DICOM SEG files in {path}")
    out = []
    for seg in segs:
        scan, labels, _ = load_seg_on_series(seg, class_names)
        out.append(Case(seg.name.removesuffix(".dcm"), normalize(scan.data, normalization),
                        labels, scan.spacing))
    return out


def read_phantom_cases(
    seeds: Sequence[int], normalization: IntensityNormalization, **phantom_kwargs
) -> list[Case]:
    """Generated abdominal CT phantoms (``training.data.phantom``) as normalised cases."""
    from .phantom import make_phantom

    out = []
    for seed in seeds:
        p = make_phantom(seed, **phantom_kwargs)
        out.append(Case(f"phantom_{seed}", normalize(p.image, normalization), p.labels,
                        p.spacing))
    return out
