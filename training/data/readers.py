"""Readers for the layouts the papers' code uses, and for NIfTI folders and the phantom.

- ACDC (and any h5 slice folder): one ``image`` float [0, 1] and ``label`` per ``.h5`` file.
- Synapse (TransUNet): ``train_npz/*.npz`` slices, ``test_vol_h5/*.npy.h5`` volumes.
- nnU-Net style folders: ``imagesTr/NAME_0000.nii.gz`` (or ``NAME.nii.gz``) +
  ``labelsTr/NAME.nii.gz``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..normalization import IntensityNormalization, normalize
from .cases import Case, Slice


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
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "image" not in f or "label" not in f:
                raise ValueError(f"{path} has datasets {list(f)}; expected 'image' and 'label'")
            return np.asarray(f["image"], np.float32), np.asarray(f["label"])
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file: {err}") from err


def read_acdc_slices(folder: str | Path, list_file: str | Path | None = None) -> list[Slice]:
    """2-D training slices (``image`` (H, W) in [0, 1], ``label``), e.g. acdc/train_slices."""
    out = []
    for path in _files(folder, "*.h5", list_file):
        image, label = _read_h5(path)
        if image.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D slice, got shape {image.shape}")
        out.append(Slice(image, label.astype(np.uint8), path.stem))
    return out


def read_h5_volumes(folder: str | Path, list_file: str | Path | None = None) -> list[Case]:
    """3-D volumes ``image`` (D, H, W) in [0, 1] + ``label``: ACDC val_volumes, Synapse
    ``test_vol_h5/*.npy.h5``."""
    out = []
    for path in _files(folder, "*.h5", list_file):
        image, label = _read_h5(path)
        name = path.name.removesuffix(".h5").removesuffix(".npy")
        out.append(Case(name, image, label.astype(np.uint8)))
    return out


def read_npz_slices(folder: str | Path) -> list[Slice]:
    """Synapse ``train_npz/*.npz`` slices (``image`` already windowed to [0, 1], ``label``)."""
    out = []
    for path in _files(folder, "*.npz", None):
        with np.load(path, allow_pickle=False) as data:
            out.append(Slice(data["image"].astype(np.float32), data["label"].astype(np.uint8),
                             path.stem))
    return out


def read_nifti_pairs(
    root: str | Path, normalization: IntensityNormalization, slice_axis: int = 2
) -> list[Case]:
    """``root/imagesTr`` + ``root/labelsTr`` (nnU-Net names); slices along voxel axis k."""
    from scan_io.nifti import load_nifti

    root = Path(root)
    images = _files(root / "imagesTr", "*.nii*", None)
    out = []
    for img_path in images:
        name = img_path.name.split(".nii")[0].removesuffix("_0000")
        lab_path = next((root / "labelsTr" / f"{name}{ext}" for ext in (".nii.gz", ".nii")
                         if (root / "labelsTr" / f"{name}{ext}").is_file()), None)
        if lab_path is None:
            raise FileNotFoundError(f"No label file labelsTr/{name}.nii.gz for {img_path}")
        img, lab = load_nifti(img_path), load_nifti(lab_path)
        if img.data.shape != lab.data.shape:
            raise ValueError(f"{img_path} {img.data.shape} and {lab_path} {lab.data.shape} "
                             "are not on the same grid")
        image = np.moveaxis(normalize(img.data, normalization), slice_axis, 0)
        label = np.moveaxis(np.asarray(lab.data), slice_axis, 0).astype(np.uint8)
        spacing = tuple(float(img.spacing[a]) for a in (slice_axis, *[
            a for a in range(3) if a != slice_axis]))
        out.append(Case(name, image, label, spacing))
    return out


def read_phantom_cases(
    seeds: Sequence[int], normalization: IntensityNormalization, **phantom_kwargs
) -> list[Case]:
    """Generated abdominal CT phantoms (``training.phantom``) as normalised cases."""
    from ..phantom import make_phantom

    out = []
    for seed in seeds:
        p = make_phantom(seed, **phantom_kwargs)
        out.append(Case(f"phantom_{seed}", normalize(p.image, normalization), p.labels,
                        p.spacing))
    return out
