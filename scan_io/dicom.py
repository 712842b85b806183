"""DICOM image series in (pydicom), as a volume on the same footing as a NIfTI file.

`load_dicom_series` takes a folder (searched recursively) or one file of a series and returns
a `DicomSeries` whose ``volume`` is a `scan_io.nifti.NiftiVolume`: voxels in (i = column,
j = row, k = slice) order with the RAS affine nibabel would give the same scan converted to
NIfTI (dcm2niix's convention). The display layout, the checks and the writers are therefore
the NIfTI ones, and a DICOM series opens exactly as its NIfTI twin does.

How the volume is built (docs/design.md, "Orientation and exact round trips"):

* **Series.** Files are grouped by SeriesInstanceUID; with several image series in a folder
  the one with the most slices opens and the others are listed (``other_series``) and
  warned about. Non-image objects (SEG, SR, RTSTRUCT, presentation states, ...) are skipped;
  a folder with nothing else is refused.
* **Order.** Slices are sorted by their position along the slice normal (the cross product
  of the ImageOrientationPatient row and column directions), never by file name or
  InstanceNumber.
* **Geometry.** The affine comes from ImageOrientationPatient, PixelSpacing and the first
  slice's ImagePositionPatient; the slice step is the vector between the first and last
  positions divided by the gaps (never SliceThickness). LPS patient coordinates are turned
  into RAS (x and y negated).
* **Values.** RescaleSlope/RescaleIntercept are applied per slice. The result keeps an
  integer type (int16, else int32) when every value is whole, as CT HU are, else float32.
* **Refused**, each in one line naming the file or series: mixed orientations, gantry tilt
  (positions not along the normal), uneven slice spacing or missing slices, two slices at
  one position, differing rows/columns/pixel spacing, colour or multi-frame images,
  pixel data that cannot be decoded (the reason: no decoder for the transfer syntax, or
  damaged/truncated data), and folders without image objects. Warnings: other series in the
  folder, unreadable non-DICOM files and damaged DICOM files skipped.
* **Identifiers.** Empty UIDs (anonymised exports) are recovered from the file meta or
  generated, consistently (`scan_io.dicom_ids`); files without a SeriesInstanceUID are grouped
  by the values one acquisition shares.
* **Decoders.** Compressed pixel data (JPEG 2000, JPEG-LS, JPEG lossless and baseline, RLE)
  is decoded by pydicom's plugins: pylibjpeg with its openjpeg, libjpeg and rle plugins (the
  package's dependencies), or Pillow.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from scan_io.checks import check_volume_size
from scan_io.dicom_ids import check_seg_sources, repair_uids, series_key
from scan_io.nifti import NiftiVolume

__all__ = ["DicomSeries", "DicomIdentifiers", "DicomSeriesWarning", "load_dicom_series",
           "read_headers", "series_files", "series_headers", "NON_IMAGE_MODALITIES",
           "has_dicom_preamble", "decode_failure", "check_seg_source",
           "generated_uids_note", "find_series_with_instances"]

NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD",
                                  "PR", "KO", "REG", "FID", "DOC", "PLAN", "AU", "ECG"})
ORIENTATION_TOL = 1e-4  # direction cosines that differ more than this are different
TILT_TOL_DEG = 0.5  # slice positions off the normal by more: gantry tilt
SPACING_RTOL = 0.01  # gaps differing by more than 1 % (or 0.01 mm): uneven or missing


class DicomSeriesWarning(UserWarning):
    """Something about a DICOM folder the user should know (other series, skipped files)."""


@dataclass(frozen=True)
class DicomIdentifiers:
    """The DICOM identifiers of an opened series (kept in the layer metadata)."""

    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]  # in slice order (increasing position)
    files: tuple[str, ...]  # the same order
    modality: str = ""
    series_description: str = ""
    series_number: int | None = None
    patient_id: str = ""
    other_series: tuple[str, ...] = ()
    generated_uids: tuple[str, ...] = ()  # UIDs the files lack, generated (scan_io.dicom_ids)

    def to_metadata(self) -> dict[str, Any]:
        """Plain data for ``layer.metadata["dicom"]``."""
        return {
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "frame_of_reference_uid": self.frame_of_reference_uid,
            "sop_class_uid": self.sop_class_uid,
            "sop_instance_uids": list(self.sop_instance_uids),
            "files": list(self.files),
            "modality": self.modality,
            "series_description": self.series_description,
            "series_number": self.series_number,
            "patient_id": self.patient_id,
            "other_series": list(self.other_series),
            "generated_uids": list(self.generated_uids),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> DicomIdentifiers:
        """Inverse of `to_metadata`."""
        return cls(
            study_instance_uid=str(meta["study_instance_uid"]),
            series_instance_uid=str(meta["series_instance_uid"]),
            frame_of_reference_uid=str(meta.get("frame_of_reference_uid", "")),
            sop_class_uid=str(meta.get("sop_class_uid", "")),
            sop_instance_uids=tuple(str(u) for u in meta["sop_instance_uids"]),
            files=tuple(str(f) for f in meta["files"]),
            modality=str(meta.get("modality", "")),
            series_description=str(meta.get("series_description", "")),
            series_number=meta.get("series_number"),
            patient_id=str(meta.get("patient_id", "")),
            other_series=tuple(meta.get("other_series", ())),
            generated_uids=tuple(meta.get("generated_uids", ())),
        )


@dataclass
class DicomSeries:
    """One image series: the volume (file order i, j, k; RAS affine) and its identifiers."""

    volume: NiftiVolume
    ids: DicomIdentifiers
    # Slice order, no pixels; UIDs made whole (scan_io.dicom_ids.repair_uids).
    headers: list[Dataset] = field(repr=False, default_factory=list)

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(Path(f) for f in self.ids.files)


# --------------------------------------------------------------------------- reading headers


def _candidate_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*")
                      if p.is_file() and not any(part.startswith(".")
                                                 for part in p.relative_to(path).parts))
    return [path]


def read_headers(path: str | os.PathLike[str]) -> list[tuple[Path, Dataset]]:
    """(file, header without pixel data) of every DICOM file under ``path``.

    Files that are not DICOM are skipped, with a warning when some were.
    """
    path = Path(path)
    out, skipped, damaged = [], [], []
    for file in _candidate_files(path):
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as err:
            if has_dicom_preamble(file):
                damaged.append(f"{file.name} ({_one_line(err, 120)})")
            else:
                skipped.append(file)
            continue
        out.append((file, ds))
    if skipped and path.is_dir():
        warnings.warn(f"{path}: skipped {len(skipped)} file(s) that are not readable DICOM, "
                      f"e.g. {skipped[0].name}", DicomSeriesWarning, stacklevel=3)
    if damaged:
        warnings.warn(f"{path}: skipped {len(damaged)} damaged or truncated DICOM file(s): "
                      f"{'; '.join(damaged[:3])}", DicomSeriesWarning, stacklevel=3)
    return out


def has_dicom_preamble(file: str | os.PathLike[str]) -> bool:
    """True when ``file`` starts with the 128-byte preamble and ``DICM`` (DICOM Part 10),
    whatever its name; reads 132 bytes."""
    try:
        with open(file, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _is_image(ds: Dataset) -> bool:
    modality = str(ds.get("Modality", "")).upper()
    return (modality not in NON_IMAGE_MODALITIES and "Rows" in ds and "Columns" in ds
            and "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds)


def _describe(items: list[tuple[Path, Dataset]]) -> str:
    ds = items[0][1]
    uid = str(ds.get("SeriesInstanceUID", "") or "") or "a series without a UID"
    text = f"{uid} ({len(items)} file(s)"
    if ds.get("SeriesDescription"):
        text += f", {ds.SeriesDescription!s}"
    if ds.get("Modality"):
        text += f", {ds.Modality!s}"
    return text + ")"


def _choose_series(path: Path, headers: list[tuple[Path, Dataset]]
                   ) -> tuple[list[tuple[Path, Dataset]], tuple[str, ...]]:
    if not headers:
        raise ValueError(f"{path}: no DICOM files found (expected a DICOM series folder or "
                         "one of its files)")
    images = [(f, ds) for f, ds in headers if _is_image(ds)]
    if not images:
        kinds = sorted({str(ds.get("Modality", "?")) for _, ds in headers})
        raise ValueError(
            f"{path}: holds only non-image DICOM objects ({', '.join(kinds)}); open the image "
            "series they refer to instead"
        )
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for file, ds in images:
        groups[series_key(ds)].append((file, ds))
    if path.is_file():
        return groups[series_key(images[0][1])], ()
    ranked = sorted(groups, key=lambda u: (-len(groups[u]), u))
    chosen, others = ranked[0], tuple(_describe(groups[u]) for u in ranked[1:])
    if others:
        warnings.warn(
            f"{path} holds {len(groups)} image series; opened the largest, "
            f"{_describe(groups[chosen])}; not opened: {'; '.join(others)}. Open "
            "one of those by giving one of its files",
            DicomSeriesWarning, stacklevel=3,
        )
    return groups[chosen], others


# --------------------------------------------------------------------------- geometry


def _floats(value: Any, n: int, name: str, file: Path) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{file}: {name} is not numeric ({value!r})") from err
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise ValueError(f"{file}: {name} must hold {n} finite numbers, got {value!r}")
    return arr


def _geometry(items: list[tuple[Path, Dataset]], label: str
              ) -> tuple[list[tuple[Path, Dataset]], np.ndarray]:
    """Slices sorted along the normal and the LPS affine of voxel (column, row, slice)."""
    first_file, first = items[0]
    iop = _floats(first.ImageOrientationPatient, 6, "ImageOrientationPatient", first_file)
    for file, ds in items[1:]:
        other = _floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", file)
        if not np.allclose(other, iop, atol=ORIENTATION_TOL):
            raise ValueError(
                f"{label}: mixed slice orientations ({first_file.name} and {file.name} differ); "
                "a series must have one orientation. Split it, or open one orientation's files"
            )
    row_dir, col_dir = iop[:3], iop[3:]
    if not (np.isclose(np.linalg.norm(row_dir), 1, atol=1e-3)
            and np.isclose(np.linalg.norm(col_dir), 1, atol=1e-3)
            and abs(row_dir @ col_dir) < 1e-3):
        raise ValueError(f"{first_file}: ImageOrientationPatient {list(iop)} is not two "
                         "orthogonal unit vectors")
    normal = np.cross(row_dir, col_dir)
    positions = np.array([_floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", f)
                          for f, ds in items])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    items = [items[i] for i in order]
    positions, along = positions[order], along[order]

    for key in ("Rows", "Columns"):
        values = {int(ds.get(key)) for _, ds in items}
        if len(values) > 1:
            raise ValueError(f"{label}: slices differ in {key} ({sorted(values)}); not one volume")
    spacings = {tuple(_floats(ds.get("PixelSpacing", [1, 1]), 2, "PixelSpacing", f))
                for f, ds in items}
    if len(spacings) > 1:
        raise ValueError(f"{label}: slices differ in PixelSpacing ({sorted(spacings)})")
    row_spacing, col_spacing = next(iter(spacings))  # between rows, between columns

    n = len(items)
    if n > 1:
        gaps = np.diff(along)
        if np.any(gaps < 1e-3):
            i = int(np.argmin(gaps))
            raise ValueError(
                f"{label}: {items[i][0].name} and {items[i + 1][0].name} lie at the same "
                f"position ({along[i]:.3f} mm along the normal); the folder mixes several "
                "acquisitions or time points. Keep one per position"
            )
        step = (positions[-1] - positions[0]) / (n - 1)
        cos = abs(step @ normal) / np.linalg.norm(step)
        tilt = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
        if tilt > TILT_TOL_DEG:
            raise ValueError(
                f"{label}: slice positions run {tilt:.1f} degrees off the slice normal "
                "(gantry tilt); resample the series to an untilted grid first (e.g. dcm2niix "
                "corrects tilt)"
            )
        typical = float(np.median(gaps))
        uneven = np.abs(gaps - typical) > max(SPACING_RTOL * typical, 0.01)
        if uneven.any():
            i = int(np.flatnonzero(uneven)[0])
            ratio = gaps[i] / typical
            if np.isclose(ratio, round(ratio), rtol=SPACING_RTOL) and round(ratio) >= 2:
                raise ValueError(
                    f"{label}: {int(round(ratio)) - 1} slice(s) missing between "
                    f"{items[i][0].name} and {items[i + 1][0].name} (gap {gaps[i]:.2f} mm, "
                    f"usual {typical:.2f} mm); add the missing files"
                )
            raise ValueError(
                f"{label}: uneven slice spacing (gaps from {gaps.min():.2f} to "
                f"{gaps.max():.2f} mm, e.g. {gaps[i]:.2f} mm after {items[i][0].name}); "
                "resample to even spacing first"
            )
    else:
        thickness = float(items[0][1].get("SpacingBetweenSlices",
                                          items[0][1].get("SliceThickness", 1.0)) or 1.0)
        step = normal * thickness

    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing  # voxel i = column index: along a row
    affine[:3, 1] = col_dir * row_spacing  # voxel j = row index: down a column
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    return items, affine


# --------------------------------------------------------------------------- pixels


def _pixels(file: Path, label: str) -> tuple[np.ndarray, Dataset]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(file)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as err:
            raise ValueError(f"{file}: cannot be read, the file is damaged or truncated "
                             f"({_one_line(err)}); export it again") from err
    ended = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise ValueError(f"{file}: colour DICOM ({ds.get('PhotometricInterpretation', '')}); "
                         "scans must be greyscale")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise ValueError(f"{file}: multi-frame (enhanced) DICOM is not supported; convert it "
                         "to single-frame files first (e.g. dcm2niix to NIfTI)")
    if "PixelData" not in ds or ended:
        reason = _one_line(ended[0]) if ended else "it holds no pixel data"
        raise ValueError(f"{file}: damaged or truncated ({reason}); export it again")
    try:
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises several types when decoding fails
        raise ValueError(decode_failure(file, ds, err)) from err
    return np.asarray(pixels), ds


def _one_line(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_failure(file: str | os.PathLike[str], ds: Dataset, err: BaseException) -> str:
    """One line saying why the pixel data of ``file`` could not be decoded: no decoder for
    its transfer syntax (how to get one), or damaged/truncated data (with pydicom's reason)."""
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.get("TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
    name = getattr(syntax, "name", str(syntax or "unknown"))
    try:
        decoder = get_decoder(syntax) if syntax else None
    except NotImplementedError:
        decoder = None
    if decoder is None:
        return (f"{file}: its transfer syntax {name} is not one pydicom can decode; convert "
                "the series to an uncompressed or a JPEG/JPEG 2000/RLE syntax (e.g. "
                "gdcmconv --raw, dcmdjpeg)")
    if not decoder.is_available:
        return (f"{file}: no installed decoder for its transfer syntax {name} "
                f"({_one_line(err)}); reinstall napari-l2gnet's dependencies (pip install "
                "pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg pylibjpeg-rle) or decompress "
                "the series (gdcmconv --raw)")
    return (f"{file}: its pixel data ({name}) is damaged or truncated and cannot be decoded "
            f"({_one_line(err)}); export the file again")


def _to_values(slices: list[np.ndarray], slopes: Sequence[float], intercepts: Sequence[float]
               ) -> np.ndarray:
    """Apply slope/intercept per slice and return (column, row, slice); an integer type when
    every value is whole.

    Whole-number slopes and intercepts (CT: 1 and -1024) are applied in integer arithmetic,
    others in float64 (kept as int16/int32 when every result is whole, else float32). The
    work is done slice-major (contiguous) and the result is a transposed view of it.
    """
    stacked = np.stack(slices)  # (slice, row, column)
    if all(s == 1 for s in slopes) and all(b == 0 for b in intercepts):
        values = stacked
    else:
        whole = all(float(v).is_integer() for v in (*slopes, *intercepts))
        work = np.int32 if whole and stacked.dtype.itemsize <= 2 else (
            np.int64 if whole else np.float64)
        values = np.empty(stacked.shape, work)
        for k, (slope, inter) in enumerate(zip(slopes, intercepts, strict=True)):
            if whole:
                np.multiply(stacked[k], int(slope), out=values[k], casting="unsafe")
                values[k] += int(inter)
            else:
                np.multiply(stacked[k], slope, out=values[k])
                values[k] += inter
        if not whole and not np.array_equal(values, np.round(values)):
            return values.astype(np.float32).transpose(2, 1, 0)
    lo, hi = values.min(), values.max()
    fits = [c for c in (np.int16, np.int32)
            if np.iinfo(c).min <= lo and hi <= np.iinfo(c).max]
    out = values.astype(fits[0], copy=values.dtype != fits[0]) if fits else values.astype(
        np.float32)
    return out.transpose(2, 1, 0)


def _header(affine_ras: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_qform(affine_ras, code=1)  # scanner coordinates
    header.set_sform(affine_ras, code=1)
    header.set_xyzt_units("mm")
    return header


def _select(path: Path) -> tuple[list[tuple[Path, Dataset]], tuple[str, ...], np.ndarray, str]:
    """The chosen series' (file, header) in slice order, other series, LPS affine, label."""
    if not path.exists():
        raise FileNotFoundError(f"DICOM path not found: {path}")
    if path.is_file():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError) as err:
            raise ValueError(f"{path}: not a readable DICOM file ({err})") from err
        if not _is_image(ds):
            seg = str(ds.get("Modality", "")).upper() == "SEG"
            raise ValueError(
                f"{path}: a {ds.get('Modality', 'non-image')} object, not an image; open the "
                "image series it refers to instead" + (
                    " (a SEG holds labels: open it in napari beside its series, or give it "
                    "as --data to l2gnet evaluate/finetune)" if seg else ""))
        key = series_key(ds)
        headers = [(f, h) for f, h in read_headers(path.parent)
                   if series_key(h) == key] or [(path, ds)]
        items, others = _choose_series(path, headers)
    else:
        items, others = _choose_series(path, read_headers(path))
    label = f"{path} (series {items[0][1].get('SeriesInstanceUID') or 'without a UID'})"
    items, affine_lps = _geometry(items, label)
    return items, others, affine_lps, label


def series_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files of the series `load_dicom_series` would open at ``path``, in slice order."""
    items, _, _, _ = _select(Path(path))
    return [f for f, _ in items]


def find_series_with_instances(folder: str | os.PathLike[str], uids: frozenset[str] | set[str]
                               ) -> list[Path]:
    """The files (slice order) of the image series under ``folder`` (searched recursively)
    that holds the most of the SOP instances ``uids`` (UIDs as `repair_uids` makes them
    whole); [] when none does. What opening a DICOM SEG uses to find its series."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomSeriesWarning)  # junk beside a SEG is no news
        headers = [(f, ds) for f, ds in read_headers(folder) if _is_image(ds)]
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for file, ds in headers:
        groups[series_key(ds)].append((file, ds))
    best: list[Path] = []
    best_hits = 0
    for key, items in sorted(groups.items()):
        try:
            items, _ = _geometry(items, key)
        except ValueError:
            continue  # not one volume: not a series a SEG can lie on
        repaired = repair_uids([ds for _, ds in items]).headers
        hits = sum(str(ds.SOPInstanceUID) in uids for ds in repaired)
        if hits > best_hits:
            best, best_hits = [f for f, _ in items], hits
    return best


def check_seg_source(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Before any work: can a DICOM SEG reference the series at ``path``? Reads headers only.

    Raises a one-line ``ValueError`` when it cannot (`scan_io.dicom_ids.check_seg_sources`);
    returns the names of the UIDs the SEG will reference generated ones for (empty when the
    files carry them all).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomSeriesWarning)  # reading the series warns
        items, _, _, _ = _select(Path(path))
    repaired = repair_uids([ds for _, ds in items])
    check_seg_sources(repaired.headers, [f for f, _ in items])
    return repaired.generated


def generated_uids_note(source: str | os.PathLike[str], generated: Sequence[str]) -> str:
    """One line telling the user that a SEG references generated UIDs (docs/dicom.md)."""
    return (f"{source} has no {', '.join(generated)} (an anonymised export): the DICOM SEG "
            "references generated UIDs, the same on every run (docs/dicom.md, 'UIDs'); a PACS "
            "files it apart from the images")


def series_headers(files: Sequence[str | os.PathLike[str]]) -> tuple[list[Dataset], np.ndarray]:
    """Headers (no pixel data) of the given files of one series, in slice order, and the RAS
    affine of voxel (column, row, slice): what a SEG writer needs, without the pixels."""
    items = [(Path(f), pydicom.dcmread(f, stop_before_pixels=True)) for f in files]
    keys = {series_key(ds) for _, ds in items}
    if len(keys) != 1:
        raise ValueError(f"the files belong to {len(keys)} series; expected one")
    items, affine_lps = _geometry(items, f"series {items[0][1].get('SeriesInstanceUID', '')}")
    headers = repair_uids([ds for _, ds in items]).headers
    return headers, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps


def load_dicom_series(path: str | os.PathLike[str]) -> DicomSeries:
    """Read the series at ``path`` (a folder, or one file of the series; see module doc)."""
    path = Path(path)
    items, others, affine_lps, label = _select(path)
    first = items[0][1]
    shape = (int(first.Columns), int(first.Rows), len(items))
    check_volume_size(shape, np.float32, label)

    slices, slopes, intercepts = [], [], []
    for file, _ in items:
        pixels, ds = _pixels(file, label)
        slices.append(pixels)
        slopes.append(float(ds.get("RescaleSlope", 1) or 1))
        intercepts.append(float(ds.get("RescaleIntercept", 0) or 0))
    data = _to_values(slices, slopes, intercepts)
    repaired = repair_uids([ds for _, ds in items])
    first = repaired.headers[0]

    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps  # LPS -> RAS
    spacing = tuple(float(np.linalg.norm(affine[:3, a])) for a in range(3))
    volume = NiftiVolume(data=data, affine=affine, header=_header(affine, shape, data.dtype),
                         spacing=spacing, path=path)  # type: ignore[arg-type]
    ids = DicomIdentifiers(
        study_instance_uid=str(first.get("StudyInstanceUID", "")),
        series_instance_uid=str(first.get("SeriesInstanceUID", "")),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        sop_class_uid=str(first.get("SOPClassUID", "")),
        sop_instance_uids=tuple(str(ds.get("SOPInstanceUID", "")) for ds in repaired.headers),
        files=tuple(str(f) for f, _ in items),
        modality=str(first.get("Modality", "")),
        series_description=str(first.get("SeriesDescription", "")),
        series_number=int(first.SeriesNumber) if first.get("SeriesNumber") is not None
        else None,
        patient_id=str(first.get("PatientID", "")),
        other_series=others,
        generated_uids=repaired.generated,
    )
    return DicomSeries(volume=volume, ids=ids, headers=repaired.headers)
