"""Label maps out as DICOM SEG (highdicom), referencing the series they were made on.

What the SEG holds (docs/design.md, "The napari plugin"): the patient, study and frame-of-
reference identification copied from the source series (what the standard requires, nothing
more); one frame per source slice that has any label, each referencing its source instance; one
segment per class present in the labels, numbered 1..n in class order, labelled with the
checkpoint's class name and coded with SNOMED CT concepts where the class is an organ of the
abdominal (Synapse) or cardiac (ACDC) models, else a generic "Tissue"; and the algorithm
(L2GNet, the checkpoint's name, the package version) in each segment's algorithm identification.
Written atomically; an existing file is kept unless ``overwrite=True``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from scan_io.atomic import atomic_write_path

if TYPE_CHECKING:
    from scan_io.volume import ScanVolume

__all__ = ["AlgorithmInfo", "write_seg", "write_seg_voxels", "segment_code", "read_seg_labels"]


def _package_version() -> str:
    try:
        return version("napari-l2gnet")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class AlgorithmInfo:
    """Who made the segmentation: goes into every segment's algorithm identification."""

    name: str = "L2GNet"
    checkpoint: str = ""  # the checkpoint's file name
    version: str = ""  # default: the napari-l2gnet package version
    automatic: bool = True  # False once a person edited the labels (SEMIAUTOMATIC)


# SNOMED CT concepts for the classes of the shipped models (normalised name -> code).
_ORGANS: dict[str, Code] = {
    "aorta": codes.SCT.Aorta,
    "gallbladder": codes.SCT.Gallbladder,
    "left kidney": Code("18639004", "SCT", "Left kidney"),
    "right kidney": Code("9846003", "SCT", "Right kidney"),
    "kidney": codes.SCT.Kidney,
    "liver": codes.SCT.Liver,
    "pancreas": codes.SCT.Pancreas,
    "spleen": codes.SCT.Spleen,
    "stomach": codes.SCT.Stomach,
    "rv": codes.SCT.RightVentricle,
    "right ventricle": codes.SCT.RightVentricle,
    "lv": codes.SCT.LeftVentricle,
    "left ventricle": codes.SCT.LeftVentricle,
    "myo": codes.SCT.LeftVentricleMyocardium,
    "myocardium": codes.SCT.LeftVentricleMyocardium,
    "heart": codes.SCT.Heart,
}


def segment_code(name: str) -> tuple[Code, Code]:
    """(category, type) codes for a class name: an organ's SNOMED code, else Tissue."""
    key = re.sub(r"[_\-\s]+", " ", name.strip().lower())
    if key in _ORGANS:
        return codes.SCT.AnatomicalStructure, _ORGANS[key]
    return codes.SCT.Tissue, codes.SCT.Tissue


def write_seg(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    source: ScanVolume,
    *,
    class_names: Sequence[str] | None = None,
    algorithm: AlgorithmInfo | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``labels`` (display layout of ``source``, a DICOM series) as a DICOM SEG file."""
    if source.dicom is None:
        raise ValueError(f"{path}: a DICOM SEG needs a DICOM source series")
    return write_seg_voxels(path, source.to_voxels(np.asarray(labels)), source.dicom.headers,
                            class_names=class_names, algorithm=algorithm, overwrite=overwrite)


def write_seg_voxels(
    path: str | os.PathLike[str],
    voxels: np.ndarray,
    headers: Sequence[Dataset],
    *,
    class_names: Sequence[str] | None = None,
    algorithm: AlgorithmInfo | None = None,
    overwrite: bool = False,
) -> Path:
    """``voxels`` (column, row, slice) on the series whose headers (slice order) are given."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; not overwriting it. Pass overwrite=True "
                              "(--overwrite) to replace it")
    first = headers[0]
    expected = (int(first.Columns), int(first.Rows), len(headers))
    if voxels.shape != expected:
        raise ValueError(f"labels of shape {voxels.shape} (column, row, slice) do not match "
                         f"the source series' {expected}")
    algorithm = algorithm or AlgorithmInfo()
    classes = [int(c) for c in np.unique(voxels) if c > 0]
    if not classes:
        raise ValueError(f"{path}: the labels are empty (background only); a DICOM SEG needs "
                         "at least one segment")
    lut = np.zeros(int(voxels.max()) + 1, np.uint16)
    lut[classes] = np.arange(1, len(classes) + 1)
    frames = np.ascontiguousarray(lut[voxels].transpose(2, 1, 0))  # (slice, row, column)
    frames = frames.astype(np.uint8 if len(classes) < 256 else np.uint16)

    family = codes.cid7162.ArtificialIntelligence
    ident = hd.AlgorithmIdentificationSequence(
        name=algorithm.name, family=family, version=algorithm.version or _package_version(),
        source=algorithm.checkpoint or None,
        parameters={"checkpoint": algorithm.checkpoint} if algorithm.checkpoint else None,
    )
    kind = (hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if algorithm.automatic
            else hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC)
    names = list(class_names or [])
    descriptions = []
    for number, c in enumerate(classes, start=1):
        name = names[c] if c < len(names) else f"class {c}"
        category, prop = segment_code(name)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=category,
            segmented_property_type=prop, algorithm_type=kind,
            algorithm_identification=ident, tracking_id=f"class {c}",
            tracking_uid=hd.UID(),
        ))
    seg = hd.seg.Segmentation(
        source_images=list(headers),
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(first.get("SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="napari-l2gnet",
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version or _package_version(),
        device_serial_number="none",
        series_description=f"{algorithm.name} segmentation"[:64],
        content_description=(f"{algorithm.name} {algorithm.checkpoint}".strip())[:64],
        content_label="L2GNET",
    )
    with atomic_write_path(path, suffix=".dcm", overwrite=overwrite) as tmp:
        seg.save_as(tmp)
    return path


def read_seg_labels(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Class index map (row, column) per referenced source SOPInstanceUID, via highdicom.

    Segments map back to classes through their tracking id ("class N"). Source instances
    without a frame (no label on that slice) are absent.
    """
    seg = hd.seg.segread(str(path))
    classes = {}
    for number in seg.segment_numbers:
        desc = seg.get_segment_description(number)
        tracking = str(desc.tracking_id or "")
        classes[number] = int(tracking.split()[-1]) if tracking.startswith("class ") else number
    out: dict[str, np.ndarray] = {}
    for uid in {ref[2] for ref in seg.get_source_image_uids()}:
        try:
            frame = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[uid], combine_segments=True,
                relabel=False)[0]
        except (ValueError, KeyError, IndexError):
            continue
        mapped = np.zeros(frame.shape, np.uint16)
        for number, cls in classes.items():
            mapped[frame == number] = cls
        out[uid] = mapped
    return out
