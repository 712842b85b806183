"""npe2 reader for NIfTI scans (.nii, .nii.gz) and DICOM series: one layer per scan.

Layout (see `scan_io.nifti` for the why): the volume is shown as (slices, rows, columns) =
(superior axis, anterior->posterior, patient right->left), the radiological view and the
layout of the Synapse/TransUNet training files. For an RAS-stored scan that is
``data[::-1, ::-1, :].transpose(2, 1, 0)``; for an LPS scan ``data.transpose(2, 1, 0)``.
Only flips and axis swaps: no resampling, so the writer can undo it exactly.

Placement: the layer gets ``scale`` (voxel sizes in display order) and no ``affine`` or
``translate``. The full affine (oblique ones too), the header and the axis order go to
``layer.metadata["nifti"]``; the writer rebuilds the file from there. Keeping the layer
axis-aligned means that every layer the plugin derives (labels, bottleneck-resolution
overlays placed with scale/translate) lines up with the scan without carrying a rotation.

DICOM: a folder holding a series (or one of its files) goes through `scan_io.dicom`, whose
volume is the one the same scan converted to NIfTI would give; the layer is therefore the
NIfTI twin's (same pixels, layout and scale), plus ``metadata["dicom"]`` (identifiers).
Contrast: `scan_io.display.choose_display_window` (CT soft-tissue window or MRI percentiles).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scan_io.cine import load_cine, nifti_frame_count
from scan_io.display import choose_display_window
from scan_io.labels import check_labels
from scan_io.nifti import (
    NiftiVolume,
    display_orientation,
    header_to_bytes,
    is_nifti_path,
    load_nifti,
)
from scan_io.volume import ScanVolume, load_scan, volume_from_nifti

LayerData = tuple[Any, dict[str, Any], str]
PathLike = str | os.PathLike[str]

LABEL_NAME_HINTS = ("seg", "label", "mask")
MAX_GUESSED_LABELS = 64  # at most this many distinct values 0..255 -> a label map


def get_reader(path: PathLike | Sequence[PathLike]) -> Callable[..., list[LayerData]] | None:
    """`read_nifti` when every path is a .nii/.nii.gz file; `read_dicom` for one DICOM series
    (a folder holding DICOM files, a .dcm file, or a file with the DICOM preamble); else None.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if paths and all(is_nifti_path(p) for p in paths):
        return read_nifti
    if len(paths) == 1 and looks_like_dicom(paths[0]):
        return read_dicom
    return None


def looks_like_dicom(path: PathLike, max_files: int = 64) -> bool:
    """A .dcm file, a file with the DICOM preamble, or a folder with such a file among the
    first `max_files` files (cheap: 132 bytes per file read)."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".dcm" or _has_preamble(path)
    if not path.is_dir():
        return False
    for n, file in enumerate(f for f in path.rglob("*") if f.is_file()):
        if n >= max_files:
            return False
        if _has_preamble(file):
            return True
    return False


def _has_preamble(file: Path) -> bool:
    """The 128-byte preamble and ``DICM`` (no pydicom import: get_reader must stay quick)."""
    try:
        with open(file, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def read_nifti(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Read one or more NIfTI files into napari layer data tuples."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [_layer_data(Path(p)) for p in paths]


def read_dicom(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """One DICOM series as an Image layer laid out exactly like its NIfTI twin.

    ``metadata["dicom"]`` keeps the identifiers (study/series/frame-of-reference UIDs, the
    SOP instance UIDs and files in slice order); ``metadata["nifti"]`` the grid, so the layer
    (and labels made on it) can be saved as NIfTI too. A DICOM SEG file becomes a Labels layer
    on the grid of the series it references; a folder opens its series (a study folder: every
    series in it) and the SEGs in it on them (`napari_l2gnet._seg_reader`). A file of a series
    already open in the viewer adds nothing, so selecting every file of a series opens it once.
    """
    from scan_io.dicom_seg_read import is_seg_file

    from ._seg_reader import read_dicom_folder, read_seg_layers, series_is_open

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if len(paths) == 1 and Path(paths[0]).is_file() and series_is_open(paths[0]):
        return [(None,)]  # napari's "nothing to add": all files of a series selected at once
    out = []
    for p in paths:
        if is_seg_file(p):  # labels: placed on the series it references (_seg_reader)
            out += read_seg_layers(Path(p))
        elif Path(p).is_dir():  # its series (a study folder: each) and the SEGs on them
            out += read_dicom_folder(Path(p), series_layer_data)
        else:
            out.append(series_layer_data(p))
    return out


def series_layer_data(path: PathLike) -> LayerData:
    """The Image layer of the DICOM series at ``path`` (a folder, or one of its files)."""
    scan = load_scan(path)
    ids = scan.dicom.ids
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    name = ids.series_description or folder.name
    meta = {"nifti": nifti_metadata(scan.nifti, "image"), "dicom": ids.to_metadata()}
    return scan_layer_data(scan, name, "image", meta)


def layer_name(path: PathLike) -> str:
    """File name without .nii / .nii.gz."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_label_volume(data: np.ndarray, name: str) -> bool:
    """Integer (or whole-valued float with a seg/label/mask name) non-negative label map?

    Named ``*seg*``/``*label*``/``*mask*``: any non-negative integers (whole-valued floats too,
    since some tools store masks as float). Otherwise: an integer volume with values 0..255
    and at most `MAX_GUESSED_LABELS` distinct values.
    """
    if data.size == 0:
        return False
    hinted = any(h in name.lower() for h in LABEL_NAME_HINTS)
    is_int = np.issubdtype(data.dtype, np.integer) or data.dtype == bool
    if data.dtype == bool:
        return True
    if is_int:
        lo, hi = data.min(), data.max()
        if lo < 0:
            return False
        if hinted:
            return True
        return bool(hi <= 255 and np.unique(data).size <= MAX_GUESSED_LABELS)
    if hinted and np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data).all()
        return bool(finite and data.min() >= 0 and np.array_equal(data, np.round(data)))
    return False


def nifti_metadata(vol: NiftiVolume, kind: str) -> dict[str, Any]:
    """What the writer needs to put a layer back on this file's grid, exactly."""
    orientation = display_orientation(vol.affine)
    return {
        "path": str(vol.path) if vol.path is not None else None,
        "kind": kind,
        "affine": vol.affine.tolist(),
        "header": header_to_bytes(vol.header),
        **orientation.to_metadata(),
        "shape": [int(n) for n in vol.data.shape],
        "dtype": str(vol.data.dtype),
        "spacing": [float(s) for s in vol.spacing],
    }


def _layer_data(path: Path) -> LayerData:
    if nifti_frame_count(path) > 1:
        return _cine_layer_data(path)
    vol = load_nifti(path)
    name = layer_name(path)
    kind = "labels" if is_label_volume(vol.data, name) else "image"
    scan = volume_from_nifti(vol, labels=kind == "labels")
    return scan_layer_data(scan, name, kind, {"nifti": nifti_metadata(scan.nifti, kind)})


def _cine_layer_data(path: Path) -> LayerData:
    """A 4-D NIfTI (x, y, z, t) as one layer (t, slices, rows, columns): napari's extra slider
    is time. ``metadata["cine"]`` holds the frame count and interval; ``metadata["nifti"]``
    the grid every frame shares (the first frame's), for measuring in mL."""
    name = layer_name(path)
    cine = load_cine(path)
    kind = "labels" if is_label_volume(cine.frames, name) else "image"
    if kind == "labels":
        cine.frames = check_labels(cine.frames, path)
    meta = {"nifti": nifti_metadata(cine.nifti, kind),
            "cine": {"frames": cine.num_frames, "frame_interval_ms": cine.frame_interval_ms}}
    kwargs: dict[str, Any] = {"name": name, "scale": (1.0, *cine.spacing), "metadata": meta}
    if kind == "image":
        window = choose_display_window(cine.frames[0])
        kwargs.update(contrast_limits=window.contrast_limits, colormap="gray")
        kwargs["metadata"]["display"] = window.to_metadata()
    return cine.frames, kwargs, kind


def scan_layer_data(scan: ScanVolume, name: str, kind: str,
                    metadata: dict[str, Any]) -> LayerData:
    """Layer data tuple of a scan in display layout: voxel size as ``scale``; an image gets
    the contrast of `scan_io.display.choose_display_window` (CT soft-tissue window or MRI
    percentiles), recorded in ``metadata["display"]``."""
    kwargs: dict[str, Any] = {"name": name, "scale": scan.spacing, "metadata": dict(metadata)}
    if kind == "image":
        window = choose_display_window(scan.data)
        kwargs["contrast_limits"] = window.contrast_limits
        kwargs["colormap"] = "gray"
        kwargs["metadata"]["display"] = window.to_metadata()
    return scan.data, kwargs, kind
