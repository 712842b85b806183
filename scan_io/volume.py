"""One way in and out for every scan: `load_scan` and `save_labels_like`.

`load_scan` turns a NIfTI file (or a DICOM series, see `scan_io.dicom`) into the display
layout every path of the project uses: slices along the superior axis, rows anterior to
posterior, columns patient right to left (``scan_io.nifti.display_orientation``; only flips
and axis swaps). The napari reader, ``l2gnet predict``, and the training/evaluation readers
of ``imagesTr``/``labelsTr`` folders all call it, so a model sees a scan the same way up
whichever way it arrives (docs/design.md, "Orientation and exact round trips").

It also applies the checks every scan gets: the size and colour refusals of the NIfTI reader,
non-finite voxels replaced with a warning (`scan_io.checks`), and, for label maps, the label
check (`scan_io.labels`).

`save_labels_like` writes a label map (display layout) on the source's own grid: NIfTI for a
``.nii``/``.nii.gz`` name (header and affine of the source), DICOM SEG for ``.dcm`` (needs a
DICOM source; `scan_io.dicom_seg`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scan_io.checks import replace_non_finite
from scan_io.labels import check_labels
from scan_io.nifti import (
    DisplayOrientation,
    NiftiVolume,
    display_orientation,
    from_display,
    is_nifti_path,
    load_nifti,
    save_nifti,
    spacing_in_display,
    to_display,
)

if TYPE_CHECKING:
    from scan_io.dicom import DicomSeries

__all__ = ["ScanVolume", "load_scan", "save_labels_like", "find_scans", "is_scan_path",
           "scan_name"]

PathLike = str | os.PathLike[str]


@dataclass
class ScanVolume:
    """A scan in display layout, with what is needed to write results back on its grid."""

    data: np.ndarray  # (slices, rows, columns) = (S, A->P, R->L)
    spacing: tuple[float, float, float]  # mm, display order
    orientation: DisplayOrientation  # display = to_display(voxels, orientation)
    nifti: NiftiVolume  # the voxels in file order (i, j, k), affine (RAS) and header
    path: Path | None = None
    dicom: DicomSeries | None = field(default=None, repr=False)  # set for a DICOM series

    @property
    def format(self) -> str:
        """"dicom" or "nifti"."""
        return "dicom" if self.dicom is not None else "nifti"

    @property
    def affine(self) -> np.ndarray:
        """Voxel (i, j, k) -> RAS mm, as nibabel defines it."""
        return self.nifti.affine

    def to_voxels(self, display: np.ndarray) -> np.ndarray:
        """A display-layout array back in the file's voxel order (exact)."""
        return from_display(display, self.orientation)


def is_dicom_path(path: PathLike) -> bool:
    """A folder, a ``.dcm`` name, or a file that starts with the DICOM preamble."""
    path = Path(path)
    if path.is_dir():
        return True
    if path.suffix.lower() == ".dcm":
        return True
    if path.is_file() and not is_nifti_path(path):
        try:
            with open(path, "rb") as fh:
                return fh.read(132)[128:132] == b"DICM"
        except OSError:
            return False
    return False


def is_scan_path(path: PathLike) -> bool:
    """NIfTI file name, or something that may be DICOM (see `is_dicom_path`)."""
    return is_nifti_path(path) or is_dicom_path(path)


def scan_name(path: PathLike) -> str:
    """File name without .nii/.nii.gz/.dcm (a folder's own name)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _holds_dicom_files(folder: Path) -> bool:
    """Does ``folder`` itself hold DICOM image files? SEG, SR and other non-image objects do
    not count: a study folder with a SEG beside its series folders is not a series."""
    for file in folder.iterdir():
        if file.is_file() and not file.name.startswith("."):
            if file.suffix.lower() != ".dcm":
                try:
                    with open(file, "rb") as fh:
                        if fh.read(132)[128:132] != b"DICM":
                            continue
                except OSError:
                    continue
            if not _is_non_image_object(file):
                return True
    return False


def _is_non_image_object(file: Path) -> bool:
    import pydicom

    from scan_io.dicom import NON_IMAGE_MODALITIES

    try:
        ds = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["Modality"])
    except Exception:  # damaged: counts as an image file; reading the series reports it
        return False
    return str(ds.get("Modality", "")).upper() in NON_IMAGE_MODALITIES


def find_scans(path: PathLike) -> list[Path]:
    """The scans at ``path``, each a path `load_scan` opens, in name order.

    A NIfTI or DICOM file: itself. A folder that holds DICOM files: the folder (one series).
    Any other folder: its ``.nii``/``.nii.gz`` files and, searched recursively, every
    subfolder that holds DICOM files (a study folder of series folders). Hidden files and
    folders (the atomic writer's ``.name.tmp`` temporaries among them) are never scans.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file():
        if not is_scan_path(path):
            raise ValueError(f"{path}: not a scan (a .nii/.nii.gz file or a DICOM file)")
        return [path]
    if _holds_dicom_files(path):
        return [path]
    found: list[Path] = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and is_nifti_path(entry):
            found.append(entry)
        elif entry.is_dir():
            found += find_scans(entry) if _has_scans(entry) else []
    return found


def _has_scans(folder: Path) -> bool:
    return _holds_dicom_files(folder) or any(
        not e.name.startswith(".") and (is_nifti_path(e) or e.is_dir())
        for e in folder.iterdir())


def volume_from_nifti(vol: NiftiVolume, *, labels: bool = False,
                      num_classes: int | None = None) -> ScanVolume:
    """Display layout of an already loaded NIfTI volume, with the checks of `load_scan`."""
    source = vol.path if vol.path is not None else "volume"
    if labels:
        vol.data = check_labels(vol.data, source, num_classes)
    else:
        vol.data = replace_non_finite(vol.data, source)
    orientation = display_orientation(vol.affine)
    return ScanVolume(
        data=to_display(vol.data, orientation),
        spacing=spacing_in_display(vol.spacing, orientation),
        orientation=orientation,
        nifti=vol,
        path=vol.path,
    )


def load_scan(path: PathLike, *, labels: bool = False,
              num_classes: int | None = None) -> ScanVolume:
    """Read a NIfTI file or a DICOM series (folder or one of its files) in display layout.

    ``labels=True`` runs the label check (non-negative whole numbers, below ``num_classes``
    when given) and stores the labels as the smallest unsigned type; otherwise non-finite
    voxels are replaced with a warning. Errors are one-line ``ValueError``/``OSError``s.
    """
    path = Path(path)
    if is_nifti_path(path):
        return volume_from_nifti(load_nifti(path), labels=labels, num_classes=num_classes)
    if not path.exists():
        raise FileNotFoundError(f"scan not found: {path}")
    if is_dicom_path(path):
        from scan_io.dicom import load_dicom_series

        series = load_dicom_series(path)
        scan = volume_from_nifti(series.volume, labels=labels, num_classes=num_classes)
        scan.dicom = series
        scan.path = path
        return scan
    raise ValueError(f"{path}: not a scan this tool reads (a .nii/.nii.gz file, or a DICOM "
                     "series folder or .dcm file)")


def save_labels_like(
    path: PathLike,
    labels: np.ndarray,
    source: ScanVolume,
    *,
    overwrite: bool = False,
    class_names: Sequence[str] | None = None,
    algorithm: dict[str, Any] | None = None,
    class_colors: Sequence[Sequence[float]] | None = None,
) -> Path:
    """Write ``labels`` (display layout, shape of ``source.data``) on ``source``'s grid.

    ``.nii``/``.nii.gz``: NIfTI with the source's affine and header. ``.dcm``: DICOM SEG
    referencing the source series (``source`` must be DICOM; ``class_names`` name the
    segments, ``class_colors`` (RGB in [0, 1]) colour them, ``algorithm`` is
    `scan_io.dicom_seg.AlgorithmInfo` fields). Never replaces an
    existing file unless ``overwrite=True``, and never writes onto the source scan itself.
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.shape != source.data.shape:
        raise ValueError(f"labels of shape {labels.shape} do not match the scan's display "
                         f"shape {source.data.shape}")
    labels = check_labels(labels, "labels",
                          len(class_names) if class_names is not None else None)
    _refuse_source_paths(path, source)
    if is_nifti_path(path):
        return save_nifti(path, source.to_voxels(labels), like=source.nifti, labels=True,
                          overwrite=overwrite, class_names=class_names)
    if path.suffix.lower() == ".dcm":
        if source.dicom is None:
            raise ValueError(f"{path}: DICOM SEG needs a DICOM source series; this scan came "
                             "from NIfTI. Save as .nii.gz instead")
        from scan_io.dicom_seg import AlgorithmInfo, write_seg

        info = AlgorithmInfo(**(algorithm or {}))
        return write_seg(path, labels, source, class_names=class_names, algorithm=info,
                         overwrite=overwrite, class_colors=class_colors)
    raise ValueError(f"{path}: output must end in .nii.gz, .nii (NIfTI) or .dcm (DICOM SEG)")


def _refuse_source_paths(path: Path, source: ScanVolume) -> None:
    """Never write a result over the scan it was made from (a file or a series member)."""
    out = path.resolve()
    sources = [source.path] if source.path is not None else []
    if source.dicom is not None:
        sources += list(source.dicom.files)
    for src in sources:
        src = Path(src).resolve()
        if out == src:
            raise ValueError(f"{path} is the source scan {src}; refusing to overwrite it. "
                             "Choose another output name")
