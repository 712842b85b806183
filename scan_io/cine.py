"""4-D NIfTI cine series, (x, y, z, t) on disk, as frames in display layout (no torch).

A cine MRI study saved as one NIfTI file holds one 3-D volume per cardiac phase on axis 3
(the NIfTI standard puts time there; ACDC's ``*_4d.nii.gz`` files are laid out so). Each
frame is shown like a 3-D scan (`scan_io.nifti.display_orientation`), giving an array
``(t, slices, rows, columns)``: napari shows the time axis as an extra slider.

Refused, one line each: a file with more than 4 dimensions or whose 4th axis is a vector or
other intent rather than time (``x, y, z, 1, t`` puts time on axis 4); 3-D files are not
cines (`load_scan` reads them). A 4-D file with one frame is a 3-D scan: `nifti_frame_count`
says 1 and `scan_io.nifti.load_nifti` reads it as 3-D.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from scan_io.atomic import atomic_write_path
from scan_io.checks import check_volume_size, replace_non_finite
from scan_io.labels import check_labels
from scan_io.nifti import (
    DisplayOrientation,
    NiftiVolume,
    display_orientation,
    from_display,
    is_nifti_path,
    labels_dtype,
    open_nifti_image,
    spacing_in_display,
    to_display,
)

__all__ = ["CineSeries", "load_cine", "nifti_frame_count", "save_cine"]

_TIME_TO_MS = {"sec": 1000.0, "msec": 1.0, "usec": 0.001}


@dataclass
class CineSeries:
    """A cine series: ``frames`` (t, slices, rows, columns) in display layout.

    ``nifti`` is the first frame as a `NiftiVolume` (voxel order, affine and header of the
    file), the grid every frame shares; ``frame_interval_ms`` the time between frames when
    the header says it in a time unit, else None.
    """

    frames: np.ndarray
    spacing: tuple[float, float, float]
    orientation: DisplayOrientation
    nifti: NiftiVolume
    frame_interval_ms: float | None = None
    path: Path | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def affine(self) -> np.ndarray:
        return self.nifti.affine


def _check_time_axis(img: nib.Nifti1Image, path: Path) -> int:
    """Number of frames on axis 3, or a one-line ValueError when time is elsewhere."""
    shape = img.shape
    if len(shape) <= 3:
        return 1
    extra = shape[4:]
    if any(n > 1 for n in extra):
        where = 4 + next(i for i, n in enumerate(extra) if n > 1)
        raise ValueError(
            f"{path}: NIfTI of shape {shape} has {shape[where]} entries on axis {where}; a cine "
            "must have time on axis 3, (x, y, z, t). Reorder it first (e.g. numpy.moveaxis "
            f"with nibabel) so the frames are on axis 3")
    intent = img.header.get_intent()[0]
    if shape[3] > 1 and intent not in ("none", "", None):
        raise ValueError(
            f"{path}: axis 3 holds a '{intent}' (NIfTI intent), not time; a cine must have "
            "time on axis 3, (x, y, z, t)")
    return int(shape[3])


def nifti_frame_count(path: str | os.PathLike[str]) -> int:
    """Frames on axis 3 of a NIfTI file from its header alone (1 for a 3-D file).

    ValueError when the file's time axis is not axis 3 (see the module docstring).
    """
    path = Path(path)
    return _check_time_axis(open_nifti_image(path), path)


def load_cine(path: str | os.PathLike[str], *, labels: bool = False,
              num_classes: int | None = None) -> CineSeries:
    """Read a 4-D NIfTI (x, y, z, t) as frames in display layout; dtype kept as on disk.

    ``labels=True``: the label check of `scan_io.labels` (whole non-negative values);
    otherwise non-finite voxels are replaced with a warning, as `load_scan` does.
    """
    path = Path(path)
    img = open_nifti_image(path)
    frames = _check_time_axis(img, path)
    if len(img.shape) < 4:
        raise ValueError(f"{path}: a 3-D scan of shape {img.shape}, not a cine (x, y, z, t)")
    header = img.header
    check_volume_size(img.shape, header.get_data_dtype(), path)
    try:
        data = np.asarray(np.asanyarray(img.dataobj))
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise ValueError(f"cannot read the voxel data of {path}: {exc}") from exc
    data = data.reshape(img.shape[:3] + (frames,))
    data = check_labels(data, path, num_classes) if labels else replace_non_finite(data, path)
    affine = np.array(img.affine, dtype=np.float64)
    orientation = display_orientation(affine)
    zooms = tuple(float(z) for z in header.get_zooms())
    spacing = tuple((zooms[:3] + (1.0, 1.0, 1.0))[:3])
    stacked = np.stack([to_display(data[..., t], orientation) for t in range(frames)])
    unit = header.get_xyzt_units()[1]
    interval = zooms[3] * _TIME_TO_MS[unit] if len(zooms) > 3 and unit in _TIME_TO_MS \
        and zooms[3] > 0 else None
    first = NiftiVolume(data=np.ascontiguousarray(data[..., 0]), affine=affine, header=header,
                        spacing=spacing, path=path)  # type: ignore[arg-type]
    return CineSeries(frames=stacked, spacing=spacing_in_display(spacing, orientation),
                      orientation=orientation, nifti=first, frame_interval_ms=interval,
                      path=path)


def save_cine(path: str | os.PathLike[str], frames: np.ndarray, affine: np.ndarray,
              header: nib.Nifti1Header, orientation: DisplayOrientation, *,
              labels: bool = False, overwrite: bool = False,
              class_names: list[str] | None = None) -> Path:
    """Write display-layout frames (t, slices, rows, columns) as a 4-D NIfTI (x, y, z, t) on
    the grid of the cine they were made on (its ``affine``, ``header`` and ``orientation``).

    Labels are stored as the smallest unsigned type, with ``class_names`` in the header as
    `scan_io.nifti.save_nifti` stores them; the write is atomic and an existing file is kept
    unless ``overwrite``.
    """
    from scan_io.nifti import _set_class_names

    path = Path(path)
    if not is_nifti_path(path):
        raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; not overwriting it. Pass overwrite=True to "
                              "replace it.")
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"a cine is (t, slices, rows, columns); got shape {frames.shape}")
    if labels:
        frames = check_labels(frames, path).astype(labels_dtype(frames))
    voxels = np.stack([from_display(f, orientation) for f in frames], axis=-1)
    header = header.copy()
    header.set_data_dtype(voxels.dtype)
    header.set_slope_inter(np.nan, np.nan)  # the values written are the values
    if labels:
        header["cal_min"], header["cal_max"] = 0.0, 0.0
        if class_names is not None:
            _set_class_names(header, class_names)
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    img = image_class(np.ascontiguousarray(voxels), np.asarray(affine, np.float64), header)
    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else ".nii"
    with atomic_write_path(path, suffix=suffix, overwrite=overwrite) as tmp:
        img.to_filename(str(tmp))
    return path
