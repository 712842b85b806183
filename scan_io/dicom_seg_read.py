"""DICOM SEG in (highdicom): the segments of a SEG made by any tool, as a label map on the grid
of the image series it references.

A SEG names its source images by SOP Instance UID. `find_seg_series` looks for that series in
a folder (the SEG's own, searched recursively: a PACS export puts a study's series and its
SEGs side by side); `load_seg_on_series` reads the series and places every segment on it.

Label values (docs/dicom.md, "SEG in"):

* With the model's ``class_names`` (``l2gnet evaluate`` / ``finetune``): each segment goes to
  the class whose name equals its label or whose SNOMED code equals its property type
  (case, "_", "-" and spaces ignored: "Liver" is "liver", "Left Kidney" is "left_kidney");
  a segment that matches no class is refused, in one line naming both lists.
* Without (the napari reader): a SEG this package wrote (tracking ids "class N") gets its
  class numbers back; any other SEG gets one label per segment, its segment number, with the
  segment labels as class names.

Frames are placed per source instance. Where the SEG does not state that spatial locations
are preserved (dcmqi's do not), each frame's position must equal its source slice's
(0.1 mm) or the SEG is refused; FRACTIONAL segments count from 0.5; where segments overlap,
the later segment wins and a warning says how many voxels. BINARY, FRACTIONAL and LABELMAP
SEGs are read (a LABELMAP's segment 0 is its background).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from pydicom.dataset import Dataset

if TYPE_CHECKING:
    from scan_io.volume import ScanVolume

__all__ = ["SegSegment", "SegInfo", "is_seg_file", "read_seg_info", "label_values",
           "read_seg_voxels", "load_seg_on_series", "seg_files_in"]

POSITION_TOL_MM = 0.1


@dataclass(frozen=True)
class SegSegment:
    """One segment of a SEG: its number, label and what it is."""

    number: int
    label: str
    tracking_id: str = ""
    property_code: str = ""  # the segmented property type's code value ("" when absent)
    property_meaning: str = ""
    color_rgb: tuple[float, float, float] | None = None  # 0..1, from the recommended colour


@dataclass(frozen=True)
class SegInfo:
    """What a SEG header says, before any pixel is read."""

    path: Path
    series_instance_uid: str  # of the referenced (source) series
    instance_uids: frozenset[str]  # the referenced source instances
    segments: tuple[SegSegment, ...]
    series_description: str = ""


def is_seg_file(path: str | os.PathLike[str]) -> bool:
    """A DICOM file (by its content: preamble and ``DICM``) whose Modality is SEG."""
    from scan_io.dicom import has_dicom_preamble

    path = Path(path)
    if not path.is_file() or not has_dicom_preamble(path):
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except Exception:  # damaged: not a SEG we can read; the image reader reports it
        return False
    return str(ds.get("Modality", "")).upper() == "SEG"


def seg_files_in(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """The SEG files in ``folder`` (below it too with ``recursive``; hidden ones never), in
    path order."""
    folder = Path(folder)
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.is_file() and is_seg_file(p) and not any(
        part.startswith(".") for part in p.relative_to(folder).parts))


def _normal(text: str) -> str:
    return re.sub(r"[_\-\s]+", " ", str(text).strip().lower())


def _segment(item: Dataset) -> SegSegment:
    prop = item.get("SegmentedPropertyTypeCodeSequence")
    code = prop[0] if prop else Dataset()
    color = None
    lab = item.get("RecommendedDisplayCIELabValue")
    if lab is not None and len(lab) == 3:
        import highdicom as hd

        rgb = hd.color.CIELabColor.from_dicom_value([int(v) for v in lab]).to_rgb(clip=True)
        color = tuple(float(c) / 255.0 for c in rgb)
    return SegSegment(
        number=int(item.SegmentNumber),
        label=str(item.get("SegmentLabel", "") or f"segment {int(item.SegmentNumber)}"),
        tracking_id=str(item.get("TrackingID", "") or ""),
        property_code=str(code.get("CodeValue", "") or ""),
        property_meaning=str(code.get("CodeMeaning", "") or ""),
        color_rgb=color,  # type: ignore[arg-type]
    )


def read_seg_info(path: str | os.PathLike[str]) -> SegInfo:
    """The referenced series and instances and the segments of the SEG at ``path``."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable DICOM file ({err})") from err
    if str(ds.get("Modality", "")).upper() != "SEG":
        raise ValueError(f"{path}: not a DICOM SEG (Modality {ds.get('Modality', '?')})")
    series_uid, uids = "", set()
    for ref in ds.get("ReferencedSeriesSequence", []):
        series_uid = series_uid or str(ref.get("SeriesInstanceUID", ""))
        uids |= {str(i.ReferencedSOPInstanceUID)
                 for i in ref.get("ReferencedInstanceSequence", [])}
    for frame in ds.get("PerFrameFunctionalGroupsSequence", []):
        for derivation in frame.get("DerivationImageSequence", []):
            uids |= {str(s.ReferencedSOPInstanceUID)
                     for s in derivation.get("SourceImageSequence", [])}
    # Segment 0 of a LABELMAP SEG is its background, not a segment to place.
    segments = tuple(_segment(item) for item in ds.get("SegmentSequence", [])
                     if int(item.SegmentNumber) != 0)
    if not segments:
        raise ValueError(f"{path}: a DICOM SEG without segments")
    return SegInfo(path, series_uid, frozenset(uids), segments,
                   str(ds.get("SeriesDescription", "") or ""))


def label_values(segments: Sequence[SegSegment], class_names: Sequence[str] | None = None,
                 source: str | os.PathLike[str] = "SEG") -> tuple[dict[int, int], list[str]]:
    """{segment number: label value} and the class names (index = label value).

    See the module doc for the rules (the model's classes, this package's own SEGs, or the
    segment numbers)."""
    if class_names:
        from scan_io.dicom_seg import segment_code

        by_name = {_normal(n): i for i, n in enumerate(class_names) if i > 0}
        by_code = {}
        for i, n in enumerate(class_names):
            category, prop = segment_code(n)
            if i > 0 and prop.meaning != "Tissue":
                by_code[str(prop.value)] = i
        values, unmatched = {}, []
        for s in segments:
            value = (by_name.get(_normal(s.label)) or by_name.get(_normal(s.property_meaning))
                     or by_code.get(s.property_code))
            if value is None:
                unmatched.append(s.label)
            else:
                values[s.number] = value
        if unmatched:
            raise ValueError(
                f"{source}: segment(s) {', '.join(repr(u) for u in unmatched)} match no class "
                f"of the model ({', '.join(list(class_names)[1:])}); name the segments after "
                "the model's classes"
            )
        return values, list(class_names)
    tracked = [s.tracking_id.split()[-1] for s in segments
               if re.fullmatch(r"class \d+", s.tracking_id)]
    if len(tracked) == len(segments) and len(set(tracked)) == len(segments):
        values = {s.number: int(t) for s, t in zip(segments, tracked, strict=True)}
    else:
        values = {s.number: s.number for s in segments}
    names = [f"class {k}" for k in range(max(values.values()) + 1)]
    names[0] = "background"
    for s in segments:
        names[values[s.number]] = s.label
    return values, names


def _position(group: Dataset | None) -> np.ndarray | None:
    if group is None:
        return None
    planes = group.get("PlanePositionSequence")
    if not planes or "ImagePositionPatient" not in planes[0]:
        return None
    return np.array([float(v) for v in planes[0].ImagePositionPatient])


def _check_frames_on_sources(seg: Dataset, headers: Sequence[Dataset], path: Path) -> None:
    """Refuse frames that lie elsewhere than the source slice they reference."""
    if str(seg.get("SpatialLocationsPreserved", "")).upper() == "NO":
        raise ValueError(f"{path}: the SEG says its frames do not keep the source images' "
                         "pixel positions (SpatialLocationsPreserved NO); cannot place it")
    positions = {str(h.SOPInstanceUID): np.array([float(v) for v in h.ImagePositionPatient])
                 for h in headers}
    shared = seg.get("SharedFunctionalGroupsSequence")
    shared_pos = _position(shared[0]) if shared else None
    for k, frame in enumerate(seg.get("PerFrameFunctionalGroupsSequence", [])):
        pos = _position(frame)
        pos = shared_pos if pos is None else pos
        if pos is None:
            continue
        for derivation in frame.get("DerivationImageSequence", []):
            for src in derivation.get("SourceImageSequence", []):
                expected = positions.get(str(src.ReferencedSOPInstanceUID))
                if expected is not None and np.linalg.norm(pos - expected) > POSITION_TOL_MM:
                    raise ValueError(
                        f"{path}: frame {k + 1} lies {np.linalg.norm(pos - expected):.2f} mm "
                        "from the source slice it references; the SEG is not on this "
                        "series' grid"
                    )


def read_seg_voxels(path: str | os.PathLike[str], headers: Sequence[Dataset],
                    values: dict[int, int]) -> np.ndarray:
    """The SEG's segments as one label map (column, row, slice) on the series whose headers
    (slice order, UIDs repaired: `scan_io.dicom.series_headers`) are given."""
    import highdicom as hd

    path = Path(path)
    try:
        seg = hd.seg.segread(str(path))
    except Exception as err:
        raise ValueError(f"{path}: not a DICOM SEG highdicom can read ({err})") from err
    uids = [str(h.SOPInstanceUID) for h in headers]
    referenced = {str(u[2]) for u in seg.get_source_image_uids()}
    if not referenced & set(uids):
        raise ValueError(f"{path}: references none of the {len(uids)} images of this series; "
                         "open the series the SEG was made on")
    rows, cols = int(headers[0].Rows), int(headers[0].Columns)
    if (int(seg.Rows), int(seg.Columns)) != (rows, cols):
        raise ValueError(f"{path}: frames of {seg.Rows} x {seg.Columns} pixels, but the series' "
                         f"images are {rows} x {cols}")
    spatial_ok = str(seg.get("SpatialLocationsPreserved", "")).upper() == "YES"
    if not spatial_ok:
        _check_frames_on_sources(seg, headers, path)
    top = max(values.values())
    out = np.zeros((len(uids), rows, cols), np.uint8 if top < 256 else np.uint16)
    overlap = 0
    for number, value in values.items():
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=[number], combine_segments=False,
            ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
        mask = pixels[..., 0] >= 0.5 if np.issubdtype(pixels.dtype, np.floating) else (
            pixels[..., 0] > 0)
        overlap += int(np.count_nonzero(mask & (out > 0) & (out != value)))
        out[mask] = value
    if overlap:
        warnings.warn(f"{path}: segments overlap in {overlap} voxels; each took the label of "
                      "the later segment", UserWarning, stacklevel=2)
    return out.transpose(2, 1, 0)  # (column, row, slice)


def load_seg_on_series(
    path: str | os.PathLike[str],
    class_names: Sequence[str] | None = None,
    series_files: Sequence[str | os.PathLike[str]] | None = None,
) -> tuple[ScanVolume, np.ndarray, list[str]]:
    """The series a SEG references (``series_files``, or found beside the SEG), the SEG as a
    label map in that scan's display layout, and the class names (index = label value)."""
    from scan_io.dicom import find_series_with_instances, series_headers
    from scan_io.volume import load_scan

    path = Path(path)
    info = read_seg_info(path)
    files = list(series_files or []) or find_series_with_instances(path.parent,
                                                                   info.instance_uids)
    if not files:
        raise ValueError(
            f"{path}: the series this SEG segments ({info.series_instance_uid or 'no UID'}, "
            f"{len(info.instance_uids)} images) is not in {path.parent}; put the SEG beside "
            "its series (or open the series first in napari)"
        )
    values, names = label_values(info.segments, class_names, path)
    scan = load_scan(files[0])
    headers, _ = series_headers([str(f) for f in scan.dicom.files])  # type: ignore[union-attr]
    voxels = read_seg_voxels(path, headers, values)
    return scan, np.ascontiguousarray(voxels_to_display(voxels, scan)), names


def voxels_to_display(voxels: np.ndarray, scan: ScanVolume) -> np.ndarray:
    """A (column, row, slice) array on ``scan``'s grid in its display layout."""
    from scan_io.nifti import to_display

    return to_display(voxels, scan.orientation)
