"""The local annotation store: every scan a user corrected and accepted, kept for the next
fine-tune, so a site's model improves patient after patient (no torch).

Layout (nnU-Net's, so the folder is also a training set for other tools)::

    STORE/imagesTr/case_0001_0000.nii.gz   the scan, on its own grid (affine and header kept)
    STORE/labelsTr/case_0001.nii.gz        the labels as the user left them
    STORE/corrections/case_0001.json       which slices were corrected (along which display
                                           axis), the source path, the date, class names

A case exists once its JSON is written (last, atomically); removing deletes the JSON first.
So a crash mid-way never leaves a half case that is trained on. Slice indices and the axis
are in the display layout the plugin shows (``scan_io.volume.load_scan``), which is also how
the files read back.

Where: ``$L2GNET_ANNOTATION_STORE`` when set, else ``annotations`` in the user's data folder
(``~/.local/share/napari-l2gnet/annotations`` on Linux; platformdirs elsewhere), beside the
fine-tuned checkpoints.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scan_io.atomic import atomic_write_path
from scan_io.nifti import (
    DisplayOrientation,
    affine_from_scale,
    display_orientation,
    from_display,
    header_from_bytes,
    save_nifti,
)

ENV = "L2GNET_ANNOTATION_STORE"
IMAGES, LABELS, CORRECTIONS = "imagesTr", "labelsTr", "corrections"
_CASE = re.compile(r"^case_(\d{4,})")


def default_store_dir() -> Path:
    """``$L2GNET_ANNOTATION_STORE``, else ``<user data folder>/napari-l2gnet/annotations``."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_path

    return user_data_path("napari-l2gnet", appauthor=False) / "annotations"


def is_annotation_store(path: str | os.PathLike) -> bool:
    """A folder laid out as a store (it has ``corrections/`` and ``imagesTr/``)."""
    path = Path(path)
    return (path / CORRECTIONS).is_dir() and (path / IMAGES).is_dir()


@dataclass(frozen=True)
class ScanGrid:
    """Where a display-layout array lies in the world: what the files are written with."""

    affine: np.ndarray  # voxel (i, j, k) -> RAS mm
    orientation: DisplayOrientation  # display = to_display(voxels, orientation)
    header: Any = None  # a nibabel header to keep (None: a plain one)

    @classmethod
    def from_layer_metadata(cls, nifti: dict[str, Any]) -> ScanGrid:
        """From the plugin reader's ``layer.metadata["nifti"]`` (affine, header, axes)."""
        return cls(np.asarray(nifti["affine"], dtype=np.float64),
                   DisplayOrientation.from_metadata(nifti),
                   header_from_bytes(nifti["header"]) if nifti.get("header") else None)

    @classmethod
    def from_spacing(cls, spacing: Sequence[float]) -> ScanGrid:
        """An axis-aligned grid for an array without a scan file (display = array order)."""
        affine = affine_from_scale([float(s) for s in spacing][-3:])
        return cls(affine, display_orientation(affine))


@dataclass
class StoredCase:
    """One corrected scan in the store (its JSON)."""

    case_id: str  # "case_0001"
    corrected_slices: list[int]
    slice_axis: int  # display axis the corrected slices are along
    class_names: list[str]
    source: str | None = None  # the scan's path when it was corrected
    date: str = ""  # ISO 8601, UTC
    shape: list[int] = field(default_factory=list)  # display shape
    root: Path = field(default=Path("."), compare=False)

    @property
    def image_path(self) -> Path:
        return self.root / IMAGES / f"{self.case_id}_0000.nii.gz"

    @property
    def labels_path(self) -> Path:
        return self.root / LABELS / f"{self.case_id}.nii.gz"

    @property
    def json_path(self) -> Path:
        return self.root / CORRECTIONS / f"{self.case_id}.json"

    @property
    def source_name(self) -> str:
        if not self.source:
            return "(no file)"
        name = Path(self.source).name
        return name.removesuffix(".gz").removesuffix(".nii") or self.source

    def describe(self) -> str:
        """``case_0002 · example_ct_sm · 6 slices · 2026-12-07``."""
        n = len(self.corrected_slices)
        return (f"{self.case_id} · {self.source_name} · {n} slice{'s' * (n != 1)} · "
                f"{self.date[:10]}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("root")
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path) -> StoredCase:
        try:
            return cls(case_id=str(data["case_id"]),
                       corrected_slices=sorted(int(i) for i in data["corrected_slices"]),
                       slice_axis=int(data.get("slice_axis", 0)),
                       class_names=[str(n) for n in data.get("class_names") or []],
                       source=data.get("source"), date=str(data.get("date", "")),
                       shape=[int(n) for n in data.get("shape") or []], root=root)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a case record ({err})") from err


class AnnotationStore:
    """The store at ``root`` (created on the first ``add``)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_store_dir()

    def __repr__(self) -> str:
        return f"AnnotationStore({str(self.root)!r})"

    # ------------------------------------------------------------------ reading
    def cases(self) -> list[StoredCase]:
        """The cases whose record reads, oldest first (see ``read`` for the others' notes)."""
        return self.read()[0]

    def read(self) -> tuple[list[StoredCase], list[str]]:
        """``(cases, notes)``: every readable record, and a note per unreadable one."""
        folder = self.root / CORRECTIONS
        if not folder.is_dir():
            return [], []
        cases, notes = [], []
        for path in sorted(folder.glob("case_*.json")):
            try:
                case = StoredCase.from_json(json.loads(path.read_text()), self.root)
                if case.case_id != path.stem:
                    raise ValueError(f"it names {case.case_id}")
            except (OSError, ValueError) as err:
                notes.append(f"{path.name} skipped: unreadable record ({err})")
                continue
            cases.append(case)
        return cases, notes

    def __len__(self) -> int:
        return len(self.cases())

    def problem(self, case: StoredCase) -> str | None:
        """Why ``case`` cannot be trained on (its image or labels file gone), else None."""
        for what, path in (("image", case.image_path), ("labels", case.labels_path)):
            if not path.is_file():
                return f"{case.case_id} skipped: its {what} file {path} is gone"
        return None

    def load(self, case: StoredCase) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
        """``(image, labels, spacing)`` in display layout; ``OSError``/``ValueError`` saying
        which file is gone or unreadable."""
        from scan_io.volume import load_scan

        problem = self.problem(case)
        if problem:
            raise FileNotFoundError(problem)
        try:
            image = load_scan(case.image_path)
            labels = load_scan(case.labels_path, labels=True)
        except (OSError, ValueError) as err:
            raise ValueError(f"{case.case_id} skipped: unreadable ({err})") from err
        if image.data.shape != labels.data.shape:
            raise ValueError(f"{case.case_id} skipped: image {image.data.shape} and labels "
                             f"{labels.data.shape} differ in shape")
        return image.data, labels.data, tuple(image.spacing)

    # ------------------------------------------------------------------ writing
    def add(self, image: np.ndarray, labels: np.ndarray, corrected: Sequence[int], *,
            axis: int, class_names: Sequence[str], grid: ScanGrid | None = None,
            spacing: Sequence[float] | None = None, source: str | None = None,
            merge: bool = True) -> StoredCase:
        """Save a corrected scan (display-layout ``image`` and ``labels``) as a new case.

        ``grid``: the scan's (``ScanGrid.from_layer_metadata``), so the files keep its affine;
        without one, an axis-aligned grid from ``spacing`` (mm; 1 when unknown). A 2-D image
        is stored as one slice. Each file is written atomically; the record comes last.

        ``merge``: earlier cases of the same ``source`` file (same shape and slice axis) are
        folded into this one: their corrected slices that are not corrected again here keep
        their labels, the slices corrected here take the new ones, and the earlier cases are
        removed once the new one is written. So a scan corrected twice is one case, never
        two copies trained on twice.
        """
        image, labels = np.asarray(image), np.asarray(labels)
        if image.ndim == 2 and labels.ndim == 2:
            image, labels, axis = image[None], labels[None], 0
        if image.ndim != 3 or image.shape != labels.shape:
            raise ValueError(f"image {image.shape} and labels {labels.shape} must be 2-D or 3-D "
                             "arrays of the same shape")
        if not 0 <= axis < 3:
            raise ValueError(f"slice axis must be 0, 1 or 2, got {axis}")
        corrected = sorted({int(i) for i in corrected})
        if not corrected or not all(0 <= i < image.shape[axis] for i in corrected):
            raise ValueError(f"corrected slices {corrected} must be non-empty and within "
                             f"0..{image.shape[axis] - 1}")
        if grid is None:
            grid = ScanGrid.from_spacing(spacing if spacing is not None else (1.0, 1.0, 1.0))
        folded: list[StoredCase] = []
        if merge and source:
            labels, corrected, folded = self._fold_earlier(labels, corrected, int(axis),
                                                           str(source))
        for folder in (IMAGES, LABELS, CORRECTIONS):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        while True:
            case = StoredCase(self._next_id(), corrected, int(axis), list(class_names),
                              source=str(source) if source else None,
                              date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                              shape=[int(n) for n in image.shape], root=self.root)
            self._write_volume(case.image_path, image, grid, labels=False)
            self._write_volume(case.labels_path, labels, grid, labels=True)
            try:
                with atomic_write_path(case.json_path, overwrite=False) as tmp:
                    tmp.write_text(json.dumps(case.to_json(), indent=1))
            except FileExistsError:  # another process took this id meanwhile: next one
                continue
            for earlier in folded:
                self.remove(earlier.case_id)
            return case

    def _fold_earlier(self, labels: np.ndarray, corrected: list[int], axis: int,
                      source: str) -> tuple[np.ndarray, list[int], list[StoredCase]]:
        """``labels`` and ``corrected`` with the earlier cases of ``source`` folded in."""
        folded = []
        for case in self.cases():
            if (case.source != source or case.slice_axis != axis
                    or list(case.shape) != list(labels.shape)):
                continue
            try:
                _, earlier, _ = self.load(case)
            except (OSError, ValueError):
                continue  # unreadable: left as it is (listed as unusable), not deleted
            keep = [i for i in case.corrected_slices if i not in corrected]
            if keep:
                labels = labels.copy()
                where = [slice(None)] * 3
                where[axis] = keep
                labels[tuple(where)] = earlier[tuple(where)]
            corrected = sorted({*corrected, *keep})
            folded.append(case)
        return labels, corrected, folded

    def remove(self, case_id: str) -> None:
        """Delete a case: its record first (it is no longer trained on), then its files."""
        case = next((c for c in self.cases() if c.case_id == case_id), None)
        if case is None:
            raise KeyError(f"no case {case_id!r} in the annotation store {self.root}")
        case.json_path.unlink()
        for path in (case.labels_path, case.image_path):
            path.unlink(missing_ok=True)

    def _next_id(self) -> str:
        used = [0]
        for folder in (IMAGES, LABELS, CORRECTIONS):
            for path in (self.root / folder).glob("case_*"):
                match = _CASE.match(path.name)
                if match:
                    used.append(int(match.group(1)))
        return f"case_{max(used) + 1:04d}"

    @staticmethod
    def _write_volume(path: Path, display: np.ndarray, grid: ScanGrid, *, labels: bool) -> None:
        voxels = from_display(display, grid.orientation)
        save_nifti(path, voxels, affine=grid.affine, header=grid.header, labels=labels,
                   overwrite=True)  # a leftover of an interrupted add has no record
