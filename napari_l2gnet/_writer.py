"""npe2 single-layer writers: Labels / Image layer -> NIfTI on the source scan's grid.

With ``layer.metadata["nifti"]`` (set by the reader; the plugin copies it onto every layer it
derives from a scan) the file gets the source's affine and header byte for byte, and the
display layout is undone exactly. Without it the file is axis-aligned, built from the layer's
scale/translate, and a warning says so.

DICOM: `write_labels_seg` saves a Labels layer made on a DICOM series as DICOM SEG
(`scan_io.dicom_seg`); NIfTI export works for the same layer.

An existing label file is replaced: napari's save dialog has already asked. Writing a Labels
layer over a scan is refused, because that would destroy the scan: over the scan the layer was
derived from, and over any existing file that holds an image rather than a label map (read
back and judged by `napari_l2gnet._reader.is_label_volume`), or over a DICOM image file.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scan_io.labels import check_labels
from scan_io.nifti import (
    DisplayOrientation,
    affine_from_scale,
    from_display,
    header_from_bytes,
    is_nifti_path,
    load_nifti,
    save_nifti,
)

from ._layer_record import read_record
from ._reader import is_label_volume


class LayerWriteError(RuntimeError):
    """A refused save, with the one-line reason.

    Not a ValueError on purpose: napari turns a writer's ValueError into "plugin is not a
    valid writer", hiding the reason; any other error reaches the user's notification.
    """


def _reported(func: Callable[..., list[str]]) -> Callable[..., list[str]]:
    @functools.wraps(func)
    def wrapper(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
        try:
            return func(path, data, meta)
        except (ValueError, TypeError) as err:
            raise LayerWriteError(str(err)) from err

    return wrapper


@_reported
def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer as NIfTI (uint8/uint16) on its source scan's grid."""
    return [str(_write(path, data, meta, labels=True))]


@_reported
def write_labels_seg(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer made on a DICOM series as DICOM SEG referencing that series.

    The source series comes from ``metadata["dicom"]["files"]`` (set by the reader) or, for
    layers that carry only the scan's ``metadata["nifti"]``, from its DICOM path; its grid
    must match the layer's. Segment names come from the plugin's class names.
    """
    from scan_io.dicom import check_seg_source, generated_uids_note, series_headers
    from scan_io.dicom_seg import AlgorithmInfo, write_seg_voxels

    out = Path(path) if path.lower().endswith(".dcm") else Path(f"{path}.dcm")
    name = meta.get("name", "layer")
    metadata = meta.get("metadata") or {}
    nifti = metadata.get("nifti")
    files = (metadata.get("dicom") or {}).get("files")
    if not files and nifti and nifti.get("path"):
        from scan_io.dicom import series_files

        source = Path(nifti["path"])
        if source.exists() and not is_nifti_path(source):
            files = [str(f) for f in series_files(source)]
    if not nifti or not files:
        raise ValueError(f"layer {name!r} was not made on a DICOM series; DICOM SEG needs "
                         "one. Save it as NIfTI (.nii.gz) instead")
    arr = check_labels(np.asarray(data), f"labels layer {name!r}")
    _refuse_writing_over_a_scan(out, name, nifti)
    headers, affine = series_headers(files)
    if not np.allclose(affine, np.asarray(nifti["affine"]), atol=1e-3):
        raise ValueError(f"the DICOM files of layer {name!r} no longer match its grid; "
                         "reopen the series")
    voxels = from_display(arr, DisplayOrientation.from_metadata(nifti))
    record = read_record(metadata)
    class_names = record.class_names or None
    checkpoint = Path(record.checkpoint).name if record.checkpoint else ""
    info = AlgorithmInfo(checkpoint=checkpoint, automatic=not record.edited)
    generated = check_seg_source(files[0])
    write_seg_voxels(out, voxels, headers, class_names=class_names, algorithm=info,
                     overwrite=True, class_colors=_shown_colors(meta, int(arr.max(initial=0))))
    if generated:
        warnings.warn(generated_uids_note(Path(files[0]).parent, generated), UserWarning,
                      stacklevel=2)
    return [str(out)]


@_reported
def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write an Image layer as NIfTI (dtype kept) on its source scan's grid."""
    return [str(_write(path, data, meta, labels=False))]


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _refuse_writing_over_a_scan(out: Path, name: str, nifti: dict[str, Any] | None) -> None:
    """A Labels layer never replaces a scan: its own source, or any existing image file."""
    source = (nifti or {}).get("path")
    if source and (nifti or {}).get("kind") == "image" and _same_file(out, source):
        raise ValueError(
            f"refusing to write labels layer {name!r} over the scan it belongs to "
            f"({source}); choose another file name"
        )
    if not out.exists():
        return
    if _is_dicom_image(out):
        raise ValueError(f"refusing to write labels layer {name!r} over {out}: that file is "
                         "a DICOM image of a scan; choose another file name")
    try:
        existing = load_nifti(out)
    except (OSError, ValueError):
        return  # not a readable NIfTI: napari's dialog asked; nothing of ours to protect
    if not is_label_volume(existing.data, out.name):
        raise ValueError(
            f"refusing to write labels layer {name!r} over {out}: that file holds a scan "
            "(an image, not a label map); choose another file name"
        )


def _is_dicom_image(path: Path) -> bool:
    from ._reader import _has_preamble

    if not _has_preamble(path):
        return False
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # unreadable: not a scan we could protect
        return False
    return str(ds.get("Modality", "")).upper() != "SEG" and "Rows" in ds


def _shown_colors(meta: dict[str, Any], top: int) -> list[list[float]] | None:
    """RGB in [0, 1] of labels 0..top as the layer shows them (its colormap), so that the SEG
    recommends the colours the user saw; None when the layer state has no colormap."""
    colormap = meta.get("colormap")
    if colormap is None or not hasattr(colormap, "map"):
        return None
    try:
        return [[float(v) for v in np.ravel(colormap.map(np.array([c])))[:3]]
                for c in range(top + 1)]
    except Exception:  # an unusual colormap: the SEG viewer chooses colours itself
        return None


def _class_names(meta: dict[str, Any]) -> list[str] | None:
    """The class names the plugin keeps on a Labels layer (None: a layer of the user's)."""
    metadata = meta.get("metadata") or {}
    names = read_record(metadata).class_names
    return [str(n) for n in names] if names else None


def _write_cine(out: Path, arr: np.ndarray, nifti: dict[str, Any], name: str, labels: bool,
                meta: dict[str, Any]) -> Path:
    """A cine layer back as a 4-D NIfTI (x, y, z, t) on its scan's grid (`scan_io.cine`)."""
    from scan_io.cine import save_cine

    expected = tuple(int(n) for n in nifti.get("shape", ()))
    frame = from_display(arr[0], DisplayOrientation.from_metadata(nifti)).shape
    if expected and frame != expected:
        raise ValueError(f"layer {name!r} has frames of shape {arr.shape[1:]} but its source "
                         f"scan has {expected} voxels per frame; cannot write it on that grid")
    return save_cine(out, arr, np.asarray(nifti["affine"], dtype=np.float64),
                     header_from_bytes(nifti["header"]), DisplayOrientation.from_metadata(nifti),
                     labels=labels, overwrite=True,
                     class_names=_class_names(meta) if labels else None)


def _write(path: str, data: Any, meta: dict[str, Any], *, labels: bool) -> Path:
    out = Path(path) if is_nifti_path(path) else Path(f"{path}.nii.gz")
    arr = np.asarray(data)
    name = meta.get("name", "layer")
    nifti = (meta.get("metadata") or {}).get("nifti")
    if labels:
        arr = check_labels(arr, f"labels layer {name!r}")
        _refuse_writing_over_a_scan(out, name, nifti)
    if nifti and arr.ndim == 4:  # a cine (time, slices, rows, columns): 4-D NIfTI
        return _write_cine(out, arr, nifti, name, labels, meta)
    if nifti:
        source = nifti.get("path")
        orientation = DisplayOrientation.from_metadata(nifti)
        if arr.ndim != 3:
            raise ValueError(f"layer {name!r} has shape {arr.shape}; NIfTI writing needs 3D")
        voxels = from_display(arr, orientation)
        expected = tuple(int(n) for n in nifti.get("shape", voxels.shape))
        if voxels.shape != expected:
            raise ValueError(
                f"layer {name!r} has shape {arr.shape} but its source scan "
                f"{source or ''} has {expected} voxels (in file order); cannot write it "
                "on that grid"
            )
        save_nifti(
            out,
            voxels,
            affine=np.asarray(nifti["affine"], dtype=np.float64),
            header=header_from_bytes(nifti["header"]),
            labels=labels,
            overwrite=True,
            class_names=_class_names(meta) if labels else None,
        )
        return out

    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise ValueError(f"layer {name!r} has shape {arr.shape}; NIfTI writing needs 2D or 3D")
    scale = list(meta.get("scale", (1.0, 1.0, 1.0)))
    translate = list(meta.get("translate", (0.0, 0.0, 0.0)))
    scale = ([1.0] * 3 + scale)[-3:]
    translate = ([0.0] * 3 + translate)[-3:]
    warnings.warn(
        f"layer {name!r} has no NIfTI source metadata: writing {out.name} axis-aligned from the "
        f"layer's scale {scale} and translate {translate} (it will not share a scan's "
        "orientation or origin)",
        UserWarning,
        stacklevel=3,
    )
    save_nifti(
        out,
        arr.transpose(2, 1, 0),
        affine=affine_from_scale(scale, translate),
        labels=labels,
        overwrite=True,
        class_names=_class_names(meta) if labels else None,
    )
    return out
