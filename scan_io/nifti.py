"""NIfTI volumes in and out, keeping the affine and header exactly (no napari, no Qt).

Choices, in one place:

* **dtype.** `load_nifti` returns ``np.asanyarray(img.dataobj)``: the dtype on disk is kept
  (an int16 CT stays int16, a uint8 mask stays uint8). nibabel applies ``scl_slope`` /
  ``scl_inter`` only when the header sets a real scaling (slope not NaN/1 or intercept not
  NaN/0); then the data come back as floats, as nibabel defines them. `img.get_fdata()` would
  turn every volume into float64 (4x the memory of int16 and a lossy label round trip).
* **Shape.** Volumes are 3D. Trailing singleton axes (``x, y, z, 1``) are dropped; a real 4D
  file (time or channels on axis 3) is refused with a message that says to split it along
  axis 3. A 2D file gets a third axis of length 1 (one slice).
* **Geometry.** The affine nibabel chooses (sform, else qform, else its fallback) places the
  voxels, and its column lengths are the voxel size: when an sform disagrees with ``pixdim``
  the sform's size is used (napari scale, HD95 in mm, volumes) with a
  `SpacingMismatchWarning`. A header with neither (qform_code = sform_code = 0) is read with
  nibabel's fallback and a `NoOrientationWarning` saying what was assumed: we warn rather
  than refuse, because the scan can still be looked at, and say that left/right and
  front/back may be wrong. A NaN/inf affine or pixdim, and complex voxels, are refused.
* **Saving.** `save_nifti` writes the header and affine of the source (`like`) unchanged:
  qform/sform codes, pixdim, units, description, intent and extensions survive. Only the
  fields the data decide change: ``dim``, the data type, and the scaling (cleared, because
  the data written are the values themselves). Writing is atomic (temporary file in the same
  folder, then ``os.replace``) and never replaces an existing file unless ``overwrite=True``.
* **Display orientation.** `display_orientation` says how to lay a volume out for viewing
  and for the 2D model: slices along the superior axis first, then rows from anterior to
  posterior, then columns from the patient's right to left (radiological view; voxel axes
  reoriented to LPS+ and transposed to ``(k, j, i)``). Only flips and axis swaps: exact and
  reversible with `from_display`. This is the layout of the Synapse/TransUNet ``.npy.h5``
  files (``example_ct_sm_synapse8.npy.h5`` equals the display layout of
  ``example_seg_synapse8.nii.gz``), so a model trained on those files sees a NIfTI scan in
  napari the same way up, with left and right kidney on the sides it learned.
"""

from __future__ import annotations

import os
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
from nibabel import orientations as ornt

from scan_io.atomic import atomic_write_path
from scan_io.checks import NoOrientationWarning, SpacingMismatchWarning, check_volume_size

NIFTI_SUFFIXES = (".nii.gz", ".nii")

__all__ = [
    "NiftiVolume",
    "DisplayOrientation",
    "load_nifti",
    "save_nifti",
    "is_nifti_path",
    "display_orientation",
    "to_display",
    "from_display",
    "header_to_bytes",
    "header_from_bytes",
    "affine_from_scale",
    "labels_dtype",
    "spacing_in_display",
]


@dataclass
class NiftiVolume:
    """A 3D volume as stored: voxel order (i, j, k), the affine and header of its file."""

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    spacing: tuple[float, float, float]
    path: Path | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of `data` (i, j, k)."""
        return tuple(self.data.shape)


@dataclass(frozen=True)
class DisplayOrientation:
    """``display = np.flip(data, flip_axes).transpose(axis_order)`` and back, exactly."""

    axis_order: tuple[int, int, int]
    flip_axes: tuple[int, ...]

    def to_metadata(self) -> dict[str, list[int]]:
        """JSON-friendly form (lists of ints)."""
        return {"axis_order": list(self.axis_order), "flip_axes": list(self.flip_axes)}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> DisplayOrientation:
        """Inverse of `to_metadata`; a missing ``flip_axes`` means no flips."""
        order = tuple(int(a) for a in meta["axis_order"])
        if sorted(order) != [0, 1, 2]:
            raise ValueError(f"axis_order must be a permutation of (0, 1, 2), got {order}")
        flips = tuple(int(a) for a in meta.get("flip_axes", ()))
        return cls(axis_order=order, flip_axes=flips)  # type: ignore[arg-type]


def is_nifti_path(path: str | os.PathLike[str]) -> bool:
    """True for names ending in .nii or .nii.gz (case-insensitive)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")


def _to_3d(data: np.ndarray, path: Path) -> np.ndarray:
    if data.ndim == 2:
        return data[:, :, np.newaxis]
    if data.ndim > 3:
        extra = data.shape[3:]
        if all(n == 1 for n in extra):
            return data.reshape(data.shape[:3])
        raise ValueError(
            f"{path}: {data.ndim}D NIfTI of shape {data.shape} is not supported; only 3D "
            f"volumes are. Split it along axis 3 (the {data.shape[3]} volumes) into 3D files "
            f"first, e.g. nibabel.funcs.four_to_three(nibabel.load(path))."
        )
    if data.ndim < 2:
        raise ValueError(f"{path}: {data.ndim}D NIfTI of shape {data.shape} is not a volume")
    return data


def open_nifti_image(path: Path) -> nib.Nifti1Image:
    """The NIfTI image at ``path`` (header read, voxels not yet): one line naming the file for
    a missing file, a folder, another suffix or a file nibabel cannot read. The 3-D and the
    cine readers both open files here."""
    if not path.exists():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a NIfTI file")
    if not is_nifti_path(path):
        raise ValueError(f"{path}: not a NIfTI file (expected a .nii or .nii.gz name)")
    try:
        img = nib.load(str(path), mmap=False)
    except Exception as exc:  # nibabel raises several types for a broken file
        raise ValueError(f"cannot read {path} as NIfTI: {exc}") from exc
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise ValueError(f"{path}: not a NIfTI-1/2 image (nibabel read {type(img).__name__})")
    return img


def load_nifti(path: str | os.PathLike[str]) -> NiftiVolume:
    """Read a 3D .nii/.nii.gz file; dtype kept as on disk (see the module docstring)."""
    path = Path(path)
    img = open_nifti_image(path)
    _check_before_reading(img, path)
    affine, spacing = checked_geometry(img, path)
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise ValueError(f"cannot read the voxel data of {path}: {exc}") from exc
    data = _to_3d(np.asarray(data), path)
    return NiftiVolume(
        data=data,
        affine=affine,
        header=img.header,
        spacing=spacing,  # type: ignore[arg-type]
        path=path,
    )


def _mm(sizes: Sequence[float]) -> str:
    return " x ".join(f"{float(s):.4g}" for s in sizes)


def checked_geometry(img: nib.Nifti1Image,
                     path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The affine and voxel size (mm, i/j/k) to use, or a one-line refusal.

    The voxel size is the length of the affine's columns, so it always agrees with where the
    affine puts the voxels; see the module docstring for the warnings and refusals.
    """
    header = img.header
    pixdim = np.asarray(header["pixdim"][1:4], dtype=np.float64)
    if not np.isfinite(pixdim).all():
        raise ValueError(f"{path}: the header's voxel size (pixdim) is {pixdim.tolist()}, not "
                         "finite; the file is corrupt: fix pixdim (e.g. nibabel "
                         "header.set_zooms) before opening it")
    affine = np.array(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise ValueError(f"{path}: the header's affine (sform/qform) is not finite (NaN or inf "
                         "in its rotation or offset); the file's placement is corrupt: fix the "
                         "sform/qform (e.g. nibabel set_sform) before opening it")
    spacing = tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    if min(spacing) <= 0:
        raise ValueError(f"{path}: the header's affine gives a voxel size of {_mm(spacing)} mm "
                         "(a zero axis); the file's placement is corrupt: fix the sform/qform")
    if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0:
        warnings.warn(
            f"{path}: the header gives no orientation (qform_code = sform_code = 0); shown "
            "as if stored right->left, posterior->anterior, inferior->superior (nibabel's "
            "default), so left/right and front/back may be wrong: set the file's sform or "
            "qform to be sure", NoOrientationWarning, stacklevel=3)
    elif not np.allclose(spacing, np.abs(pixdim), rtol=1e-3, atol=1e-5):
        warnings.warn(
            f"{path}: the sform's voxel size {_mm(spacing)} mm differs from the header's "
            f"pixdim {_mm(np.abs(pixdim))}; using the sform's (it places the voxels): fix "
            "pixdim if the sform is wrong", SpacingMismatchWarning, stacklevel=3)
    return affine, spacing  # type: ignore[return-value]


def _check_before_reading(img: nib.Nifti1Image, path: Path) -> None:
    """Refuse colour or complex data and impossible sizes from the header alone (nothing
    allocated)."""
    on_disk = img.header.get_data_dtype()
    if on_disk.fields is not None or on_disk.kind == "V":
        raise ValueError(
            f"{path}: a colour (RGB/RGBA) NIfTI; scans must be greyscale. Convert it to one "
            "channel first (e.g. keep one channel, or average them)"
        )
    if on_disk.kind == "c":
        raise ValueError(
            f"{path}: complex-valued voxels ({on_disk}); scans must be real. Save the "
            "magnitude (abs) or the real part as a real-valued NIfTI first"
        )
    in_memory = np.dtype(np.float64) if _has_scaling(img.header) else on_disk  # nibabel's
    file_bytes = None
    if path.name.lower().endswith(".nii"):  # uncompressed: the file must hold every voxel
        file_bytes = max(0, path.stat().st_size - int(img.header.get_data_offset()))
        file_bytes = file_bytes // on_disk.itemsize * np.dtype(in_memory).itemsize
    check_volume_size(img.shape, in_memory, path, file_bytes=file_bytes)


def labels_dtype(data: np.ndarray) -> np.dtype:
    """Smallest NIfTI-friendly integer type for a label map: uint8, uint16, uint32, else int."""
    if data.dtype == bool or data.size == 0:
        return np.dtype(np.uint8)
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise TypeError(f"labels must be integers, got {data.dtype}")
    if np.issubdtype(data.dtype, np.floating) and not np.array_equal(data, np.round(data)):
        raise ValueError("labels must be whole numbers; got fractional values")
    lo, hi = data.min(), data.max()
    for cand in (np.uint8, np.uint16, np.uint32, np.int16, np.int32):
        info = np.iinfo(cand)
        if info.min <= lo and hi <= info.max:
            return np.dtype(cand)
    return np.dtype(np.int64)


def _fits(data: np.ndarray, dtype: npt.DTypeLike) -> bool:
    info = np.iinfo(dtype)
    return bool(info.min <= data.min() and data.max() <= info.max)


def _has_scaling(header: nib.Nifti1Header) -> bool:
    slope, inter = header["scl_slope"], header["scl_inter"]
    real_slope = np.isfinite(slope) and slope not in (0.0, 1.0)
    real_inter = np.isfinite(inter) and inter != 0.0
    return bool(real_slope or real_inter)


def _set_affine_keep_codes(header: nib.Nifti1Header, affine: np.ndarray) -> None:
    """Put `affine` in the header's sform (and qform if it was used); keep the codes."""
    if np.allclose(header.get_best_affine(), affine, rtol=0, atol=1e-12):
        return
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code or not qform_code:
        header.set_sform(affine, code=sform_code or 2)  # 2 = aligned, nibabel's default
    if qform_code:
        header.set_qform(affine, code=qform_code)


def save_nifti(
    path: str | os.PathLike[str],
    data: np.ndarray,
    like: NiftiVolume | None = None,
    affine: np.ndarray | None = None,
    header: nib.Nifti1Header | None = None,
    *,
    labels: bool = False,
    dtype: npt.DTypeLike | None = None,
    overwrite: bool = False,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write `data` (voxel order i, j, k) on the grid of `like` (or `affine` + `header`).

    ``class_names`` (labels): the name of each label value, stored in the header as a JSON
    comment extension (``read_class_names`` reads it back; other tools keep or ignore it).

    ``labels=True`` stores the smallest unsigned type that holds the labels (uint8/uint16);
    otherwise the data's own dtype is kept unless `dtype` says otherwise. The file is written
    to a temporary name in the same folder and moved into place; an existing file is kept
    unless ``overwrite=True``.
    """
    path = Path(path)
    suffix = _suffix(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; not overwriting it. Pass overwrite=True to replace it."
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist (writing {path.name})")
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"save_nifti writes 3D volumes; got data of shape {data.shape}")
    if like is not None:
        if tuple(like.data.shape) != data.shape:
            raise ValueError(
                f"data shape {data.shape} does not match the reference volume's shape "
                f"{tuple(like.data.shape)} (voxel order i, j, k); "
                "reorder or resample the data onto that grid first"
            )
        header = like.header if header is None else header
        affine = like.affine if affine is None else affine
    if header is None:
        header = nib.Nifti1Header()
        if affine is None:
            affine = np.eye(4)
        header.set_qform(affine, code=1)  # scanner
        header.set_sform(affine, code=1)
        header.set_xyzt_units("mm")
    header = header.copy()
    if affine is None:
        affine = header.get_best_affine()
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {affine.shape}")

    if dtype is not None:
        out_dtype = np.dtype(dtype)
    elif labels:
        out_dtype = labels_dtype(data)
    elif data.dtype == bool:
        out_dtype = np.dtype(np.uint8)
    elif data.dtype == np.float16:
        out_dtype = np.dtype(np.float32)
    elif data.dtype == np.int64 and data.size and _fits(data, np.int32):
        out_dtype = np.dtype(np.int32)  # nibabel refuses int64 without an explicit dtype
    else:
        out_dtype = data.dtype
    if out_dtype != data.dtype:
        if np.issubdtype(out_dtype, np.integer) and data.size and not _fits(data, out_dtype):
            raise ValueError(f"data range [{data.min()}, {data.max()}] does not fit {out_dtype}")
        data = data.astype(out_dtype)

    dtype_changed = header.get_data_dtype() != out_dtype
    if dtype_changed or _has_scaling(header):
        header.set_data_dtype(out_dtype)
        header.set_slope_inter(np.nan, np.nan)  # the values written are the values
        if labels:
            header["cal_min"], header["cal_max"] = 0.0, 0.0  # an image's window means nothing
    _set_affine_keep_codes(header, affine)
    if class_names is not None:
        _set_class_names(header, class_names)

    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    img = image_class(data, affine, header)
    with atomic_write_path(path, suffix=suffix, overwrite=overwrite) as tmp:
        img.to_filename(str(tmp))
    return path


# --------------------------------------------------------------------------- header <-> bytes


def header_to_bytes(header: nib.Nifti1Header) -> dict[str, Any]:
    """The header as plain data that rebuilds it exactly (raw block + extensions)."""
    return {
        "format": "nifti2" if isinstance(header, nib.Nifti2Header) else "nifti1",
        "binaryblock": bytes(header.binaryblock),
        "extensions": [
            [int(ext.get_code()), bytes(ext.get_content())] for ext in header.extensions
        ],
    }


def header_from_bytes(blob: dict[str, Any] | bytes) -> nib.Nifti1Header:
    """Inverse of `header_to_bytes` (a bare binary block is accepted too)."""
    if isinstance(blob, (bytes, bytearray)):
        blob = {"binaryblock": bytes(blob)}
    raw = bytes(blob["binaryblock"])
    fmt = blob.get("format") or ("nifti2" if len(raw) == 540 else "nifti1")
    klass = nib.Nifti2Header if fmt == "nifti2" else nib.Nifti1Header
    extensions = [
        nib.nifti1.Nifti1Extension(int(code), bytes(content))
        for code, content in blob.get("extensions", [])
    ]
    return klass(binaryblock=raw, check=False, extensions=extensions)


# --------------------------------------------------------------------------- display layout


def display_orientation(affine: np.ndarray) -> DisplayOrientation:
    """Flips and axis order that show a volume as (S slices, A->P rows, R->L columns).

    The voxel axes are matched to the nearest world axes (``nibabel.io_orientation``; oblique
    scans too), flipped to point left, posterior and superior (LPS+), and laid out
    ``(k_S, j_P, i_L)``. No resampling.
    """
    io = ornt.io_orientation(np.asarray(affine, dtype=np.float64))
    # io[v] = (world axis of voxel axis v, +1/-1 in RAS+). LPS+ means flip world x and y.
    axis_order = [0, 0, 0]
    flips = []
    for voxel_axis, (world_axis, sign) in enumerate(io[:3]):
        world_axis = int(world_axis)
        lps_sign = -sign if world_axis in (0, 1) else sign
        if lps_sign < 0:
            flips.append(voxel_axis)
        axis_order[2 - world_axis] = voxel_axis  # display axis 0 = S, 1 = P, 2 = L
    return DisplayOrientation(axis_order=tuple(axis_order), flip_axes=tuple(flips))  # type: ignore[arg-type]


def to_display(data: np.ndarray, orientation: DisplayOrientation) -> np.ndarray:
    """Voxel order (i, j, k) -> display order (a view, no copy)."""
    if orientation.flip_axes:
        data = np.flip(data, orientation.flip_axes)
    return data.transpose(orientation.axis_order)


def from_display(data: np.ndarray, orientation: DisplayOrientation) -> np.ndarray:
    """Display order -> voxel order (i, j, k); exact inverse of `to_display`."""
    data = np.asarray(data).transpose(np.argsort(orientation.axis_order))
    if orientation.flip_axes:
        data = np.flip(data, orientation.flip_axes)
    return data


def spacing_in_display(spacing: Sequence[float], orientation: DisplayOrientation) -> tuple:
    """Voxel sizes in display order."""
    return tuple(float(spacing[a]) for a in orientation.axis_order)


def affine_from_scale(
    scale: Sequence[float], translate: Sequence[float] | None = None
) -> np.ndarray:
    """Affine for a volume in display order ``(S, P, L)`` placed by napari's scale/translate.

    Inverse of the display layout with the voxel axes already in LPS order: the written file
    is axis-aligned RAS-coded (x, y negated), so that reading it back shows it the same way.
    Use it only when no source header exists (a warning is the caller's business).
    """
    s = [float(v) for v in scale][-3:]
    t = [float(v) for v in (translate if translate is not None else (0, 0, 0))][-3:]
    # voxel (i, j, k) = display (col, row, plane); world RAS x = -L, y = -P, z = S
    affine = np.diag([-s[2], -s[1], s[0], 1.0])
    affine[:3, 3] = [-t[2], -t[1], t[0]]
    return affine


_CLASS_NAMES_KEY = "l2gnet_class_names"
_COMMENT_ECODE = 6  # NIfTI "comment" extension: free text, here one JSON object


def _set_class_names(header, class_names: Sequence[str]) -> None:
    """Put the class names in ``header`` as a JSON comment extension (replacing ours)."""
    import json

    keep = [e for e in header.extensions if _class_names_of(e) is None]
    header.extensions.clear()
    header.extensions.extend(keep)
    text = json.dumps({_CLASS_NAMES_KEY: [str(n) for n in class_names]})
    header.extensions.append(nib.nifti1.Nifti1Extension(_COMMENT_ECODE, text.encode()))


def _class_names_of(extension) -> list[str] | None:
    import json

    if int(extension.get_code()) != _COMMENT_ECODE:
        return None
    try:
        value = json.loads(bytes(extension.get_content()).rstrip(b"\0").decode())
    except (ValueError, UnicodeDecodeError):
        return None
    names = value.get(_CLASS_NAMES_KEY) if isinstance(value, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def read_class_names(path: str | os.PathLike[str]) -> list[str] | None:
    """The class names a label file written by this package carries (None: none)."""
    header = nib.load(str(path)).header
    for extension in getattr(header, "extensions", ()):
        names = _class_names_of(extension)
        if names is not None:
            return names
    return None
