"""The identifiers of a DICOM series as exported, made whole: UIDs recovered or generated.

Anonymisers and some PACS exports empty the Study, Series and SOP Instance UIDs (and even the
SOP Class UID) of the images. Opening such a series needs none of them, but a DICOM SEG must
name the study, series and instances it segments. The policy (docs/dicom.md, "UIDs"):

* **Recovered**: an empty SOPInstanceUID or SOPClassUID is taken from the file meta
  (MediaStorageSOPInstanceUID / MediaStorageSOPClassUID), which names the same object.
* **Generated**: an empty StudyInstanceUID or SeriesInstanceUID (or a SOPInstanceUID that the
  file meta does not hold either) gets a UID derived from the series' own header values
  (frame of reference, study date and time, series description and number, orientation,
  slice positions, instance UIDs), under pydicom's UID root. The same series always gets the
  same UIDs, so two SEGs made on it reference one study and series, and opening such a SEG
  finds the series again. A PACS files a SEG with generated study/series UIDs apart from the
  images (they share no study); the generated names are listed in ``generated``.
* **Missing**: a SOP Class UID that neither the dataset nor the file meta holds cannot be
  invented; `check_seg_sources` refuses to write a SEG for such a series, in one line.

Nothing here changes a file: the repaired headers are copies.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

__all__ = ["RepairedIds", "repair_uids", "series_key", "check_seg_sources"]

_PREFIX = "napari-l2gnet generated UID"


@dataclass(frozen=True)
class RepairedIds:
    """Header copies (slice order) with every UID that can be had, and what was done."""

    headers: list[Dataset]
    generated: tuple[str, ...] = ()  # attribute names given generated UIDs
    from_file_meta: tuple[str, ...] = ()  # attribute names taken from the file meta


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return str(value).strip() if value is not None else ""


def _meta(ds: Dataset, keyword: str) -> str:
    meta = getattr(ds, "file_meta", None)
    return _text(meta, keyword) if meta is not None else ""


def series_key(ds: Dataset) -> str:
    """What groups files into a series: the SeriesInstanceUID, or for files without one,
    the header values that one acquisition shares (frame of reference, series number and
    description, orientation, size), so that two anonymised series in a folder stay apart."""
    uid = _text(ds, "SeriesInstanceUID")
    if uid:
        return uid
    parts = [_text(ds, k) for k in ("FrameOfReferenceUID", "SeriesNumber", "SeriesDescription",
                                    "Modality", "Rows", "Columns")]
    iop = ds.get("ImageOrientationPatient")
    parts.append(",".join(f"{float(v):.4f}" for v in iop) if iop else "")
    return "no-uid:" + "|".join(parts)


def _entropy(headers: Sequence[Dataset]) -> list[str]:
    first = headers[0]
    parts = [_PREFIX] + [_text(first, k) for k in (
        "FrameOfReferenceUID", "StudyDate", "StudyTime", "PatientID", "SeriesDescription",
        "SeriesNumber", "Modality", "Rows", "Columns")]
    iop = first.get("ImageOrientationPatient")
    parts.append(",".join(f"{float(v):.4f}" for v in iop) if iop else "")
    for ds in headers:
        ipp = ds.get("ImagePositionPatient")
        parts.append(",".join(f"{float(v):.2f}" for v in ipp) if ipp else "")
        parts.append(_text(ds, "SOPInstanceUID") or _meta(ds, "MediaStorageSOPInstanceUID"))
    return parts


def _uid(parts: Sequence[str], *what: str) -> str:
    return str(generate_uid(entropy_srcs=["\x1f".join([*parts, *what])]))


def repair_uids(headers: Sequence[Dataset]) -> RepairedIds:
    """Copies of one series' headers (slice order) with empty UIDs recovered or generated
    (module doc). Headers with all their UIDs are returned unchanged (still copied)."""
    out = [copy.deepcopy(ds) for ds in headers]
    if not out:
        return RepairedIds(out)
    generated: list[str] = []
    from_meta: list[str] = []
    parts = _entropy(out)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        values = {_text(ds, keyword) for ds in out}
        if values == {""}:
            uid = _uid(parts, keyword)
            for ds in out:
                setattr(ds, keyword, uid)
            generated.append(keyword)
    for k, ds in enumerate(out):
        for keyword, meta_keyword in (("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
                                      ("SOPClassUID", "MediaStorageSOPClassUID")):
            if _text(ds, keyword):
                continue
            value = _meta(ds, meta_keyword)
            if value:
                setattr(ds, keyword, value)
                if keyword not in from_meta:
                    from_meta.append(keyword)
            elif keyword == "SOPInstanceUID":
                setattr(ds, keyword, _uid(parts, keyword, str(k)))
                if keyword not in generated:
                    generated.append(keyword)
    return RepairedIds(out, tuple(generated), tuple(from_meta))


def check_seg_sources(headers: Sequence[Dataset], files: Sequence[str | Path] = ()) -> None:
    """Refuse, in one line, a series a DICOM SEG cannot reference: images without a SOP Class
    UID (neither in the dataset nor in the file meta). ``headers`` are `repair_uids` output."""
    for k, ds in enumerate(headers):
        if not _text(ds, "SOPClassUID"):
            where = str(files[k]) if k < len(files) else f"slice {k + 1}"
            raise ValueError(
                f"{where}: no SOPClassUID (empty, and absent from the file meta too); a DICOM "
                "SEG must name the kind of image it segments. Save the labels as NIfTI "
                "(.nii.gz) instead"
            )
