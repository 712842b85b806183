"""Opening a DICOM SEG in napari: a Labels layer on the grid of the series the SEG segments.

A SEG file opened on its own: the series is looked up first among the viewer's open layers
(an Image layer whose ``metadata["dicom"]`` holds the SOP instances the SEG references): then
only the Labels layer is added, placed like that image. Otherwise the series is looked for
beside the SEG (its folder, recursively) and opened too, so the user sees the image under the
labels. Either way the Labels layer carries the series' ``metadata["nifti"]``/``["dicom"]``
(so it saves back as NIfTI or DICOM SEG), one label per segment, the segment labels as class
names (the status bar names the class under the cursor) and the SEG's recommended colours.

A folder (`read_dicom_folder`) opens as a PACS viewer opens a study: its series (each series
folder of a study folder) and, on them, the SEG files found in it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scan_io.dicom_seg_read import (
    SegInfo,
    label_values,
    read_seg_info,
    read_seg_voxels,
)
from scan_io.nifti import DisplayOrientation, to_display

LayerData = tuple[Any, dict[str, Any], str]


def _open_series_layer(info: SegInfo):
    """The open Image layer of the series the SEG references, or None."""
    from napari import current_viewer
    from napari.layers import Image

    viewer = current_viewer()
    if viewer is None:  # no viewer (a script): look beside the SEG instead
        return None
    best, hits = None, 0
    for layer in viewer.layers:
        dicom = (layer.metadata or {}).get("dicom")
        if not isinstance(layer, Image) or not dicom or not layer.metadata.get("nifti"):
            continue
        n = len(info.instance_uids & set(dicom.get("sop_instance_uids", ())))
        if n > hits:
            best, hits = layer, n
    return best


def series_is_open(file: str | os.PathLike[str]) -> bool:
    """Is ``file`` one of the files of an Image layer already open in the current viewer?"""
    from napari import current_viewer
    from napari.layers import Image

    viewer = current_viewer()
    if viewer is None:
        return False
    target = Path(file).resolve()
    for layer in viewer.layers:
        files = ((layer.metadata or {}).get("dicom") or {}).get("files") or ()
        if isinstance(layer, Image) and any(Path(f).resolve() == target for f in files):
            return True
    return False


def _features(names: list[str]):
    import pandas as pd

    return pd.DataFrame({"index": np.arange(len(names)), "class": names})


def _colormap(info: SegInfo, values: dict[int, int]):
    """The SEG's recommended colours, when every segment has one; else napari's default."""
    if not all(s.color_rgb for s in info.segments):
        return None
    from napari.utils.colormaps import DirectLabelColormap

    mapping: dict[Any, tuple[float, ...]] = {0: (0.0, 0.0, 0.0, 0.0), None: (0.0, 0.0, 0.0, 0.0)}
    for s in info.segments:
        mapping[values[s.number]] = (*s.color_rgb, 1.0)  # type: ignore[misc]
    return DirectLabelColormap(color_dict=mapping)


def read_dicom_folder(folder: Path, series_reader: Callable[[Path], LayerData]
                      ) -> list[LayerData]:
    """A DICOM folder as a PACS viewer opens it: the Image layer of its series (of each
    series folder below it, for a study folder), then a Labels layer for each SEG in it
    whose series was opened. A SEG on another series is named in a warning."""
    from scan_io.dicom_seg_read import seg_files_in
    from scan_io.nifti import is_nifti_path
    from scan_io.volume import find_scans

    scans = [s for s in find_scans(folder) if not is_nifti_path(s)] or [folder]
    images = [series_reader(s) for s in scans]
    out = list(images)
    for seg in seg_files_in(folder, recursive=True):
        try:
            out += read_seg_layers(seg, opened=images)
        except ValueError as err:
            warnings.warn(f"{seg}: not opened ({err})", UserWarning, stacklevel=2)
    return out


def _opened_series(info: SegInfo, opened: Sequence[LayerData]) -> LayerData | None:
    best, hits = None, 0
    for layer_data in opened:
        dicom = layer_data[1]["metadata"].get("dicom") or {}
        n = len(info.instance_uids & set(dicom.get("sop_instance_uids", ())))
        if n > hits:
            best, hits = layer_data, n
    return best


def read_seg_layers(path: Path, opened: Sequence[LayerData] | None = None
                    ) -> list[LayerData]:
    """The layers for one SEG file: its Labels layer, preceded by its series' Image layer
    when the series was not open yet (module doc). With ``opened`` (the image layers being
    opened with it), the series must be one of those."""
    from scan_io.dicom import find_series_with_instances, series_headers

    from ._reader import series_layer_data

    info = read_seg_info(path)
    out: list[LayerData] = []
    image = _open_series_layer(info) if opened is None else None
    given = _opened_series(info, opened) if opened is not None else None
    if image is not None:
        meta = {"nifti": dict(image.metadata["nifti"]), "dicom": dict(image.metadata["dicom"])}
        scale = tuple(image.scale)
    elif given is not None:
        meta = {k: given[1]["metadata"][k] for k in ("nifti", "dicom")}
        scale = tuple(given[1]["scale"])
    elif opened is not None:
        raise ValueError("its series is not among those opened; open the SEG file itself")
    else:
        files = find_series_with_instances(path.parent, info.instance_uids)
        if not files:
            raise ValueError(
                f"{path}: the series this SEG segments ({info.series_instance_uid or 'no UID'}"
                f", {len(info.instance_uids)} images) is neither open nor in {path.parent}; "
                "open the series first, then the SEG"
            )
        image_data = series_layer_data(files[0])
        out.append(image_data)
        meta = {k: image_data[1]["metadata"][k] for k in ("nifti", "dicom")}
        scale = tuple(image_data[1]["scale"])
    values, names = label_values(info.segments, None, path)
    headers, affine = series_headers(meta["dicom"]["files"])
    if not np.allclose(affine, np.asarray(meta["nifti"]["affine"]), atol=1e-3):
        raise ValueError(f"{path}: the series' files no longer match the open layer's grid; "
                         "reopen the series")
    voxels = read_seg_voxels(path, headers, values)
    orientation = DisplayOrientation.from_metadata(meta["nifti"])
    display = np.ascontiguousarray(to_display(voxels, orientation))
    kwargs: dict[str, Any] = {
        "name": info.series_description or path.stem,
        "scale": scale,
        "features": _features(names),
        "metadata": {**meta, "class_names": names,
                     "seg": {"path": str(path), "segments": [s.label for s in info.segments],
                             "values": {str(k): v for k, v in values.items()}}},
    }
    colormap = _colormap(info, values)
    if colormap is not None:
        kwargs["colormap"] = colormap
    out.append((display, kwargs, "labels"))
    return out


__all__ = ["read_seg_layers", "read_dicom_folder", "series_is_open"]
