"""Measurements from label maps: per-class volumes and cardiac function (numpy only, no torch).

What a radiologist reads off a segmentation:

* **Volumes.** Per class: the voxel count, the volume in mL (voxel count x the voxel volume,
  ``|det|`` of the affine's 3x3 part, i.e. the voxel size from the affine, oblique grids
  included) and whether the structure touches the scan's border (then it may be cut off and
  its volume a lower bound). Without a known voxel size the volumes are ``None`` and ``note``
  says why; voxel counts are always given.
* **Cardiac indices** (cine MRI, short axis). For the left and right ventricle: end-diastolic
  and end-systolic volume (EDV, ESV), stroke volume SV = EDV - ESV and ejection fraction
  EF = SV / EDV x 100; the myocardial mass at end-diastole, myocardial volume x 1.05 g/mL
  (the density every cardiac MRI analysis package uses). The structures are found by class
  name (``find_cardiac_classes``: "LV", "RV", "Myo" and their spelled-out names).
* **Cine.** One volume per frame; ED and ES are the frames of largest and smallest LV volume
  (``pick_ed_es``), as cardiac MRI software picks them when the user does not.
* **Slices to check** (``basal_slices``). At the valve plane one slice holds ventricle or
  atrium, the experts' call; on the ACDC validation patients most of the RV EF error sits in
  the two most basal slices of each frame (docs/measure.md). So the reader is pointed to
  them at ED and ES, as cardiac MRI packages ask the user to confirm the basal slice.

The JSON of the cardiac indices has exactly the keys
``{"LV": {"EDV_ml", "ESV_ml", "SV_ml", "EF_percent"}, "RV": {same}, "Myo": {"mass_g"}}``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MYOCARDIAL_DENSITY_G_PER_ML = 1.05
"""Myocardial tissue density used for LV mass (SCMR post-processing guidelines)."""

CARDIAC_NAMES: dict[str, tuple[str, ...]] = {
    "LV": ("lv", "left ventricle", "left_ventricle", "leftventricle", "lv cavity",
           "lv blood pool", "lv_blood_pool", "lv_cavity", "left ventricular cavity"),
    "RV": ("rv", "right ventricle", "right_ventricle", "rightventricle", "rv cavity",
           "rv blood pool", "rv_blood_pool", "rv_cavity", "right ventricular cavity"),
    "Myo": ("myo", "myocardium", "lv myocardium", "lv_myocardium", "lv_myo", "myocard",
            "left ventricular myocardium", "heart_myocardium"),
}
"""Class names (compared case-insensitively) that mean each cardiac structure."""

__all__ = [
    "MYOCARDIAL_DENSITY_G_PER_ML", "ClassVolume", "VolumeTable", "VentricleFunction",
    "CardiacIndices", "CardiacClasses", "voxel_volume_ml", "class_volumes",
    "find_cardiac_classes", "scan_voxel_ml", "labels_on_border", "cardiac_indices",
    "pick_ed_es", "frame_volumes", "BasalSlices", "basal_slices",
    "write_json", "write_text",
]


def voxel_volume_ml(affine: np.ndarray | None = None,
                    spacing: Sequence[float] | None = None) -> float | None:
    """Volume of one voxel in mL from an affine (mm, ``|det|`` of its 3x3 part) or spacing.

    ``None`` when neither is given or the result is not a positive finite number.
    """
    if affine is not None:
        mm3 = abs(float(np.linalg.det(np.asarray(affine, np.float64)[:3, :3])))
    elif spacing is not None:
        mm3 = float(np.prod(np.asarray(spacing, np.float64)[-3:]))
    else:
        return None
    return mm3 / 1000.0 if math.isfinite(mm3) and mm3 > 0 else None


_SPACE_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001}


def scan_voxel_ml(affine: np.ndarray, header=None) -> tuple[float | None, str | None]:
    """One voxel's volume in mL from a scan's affine, and a note when it cannot be known.

    ``header`` (a nibabel NIfTI header) gives the spatial unit (metres and microns are
    converted) and says whether the file places its voxels in space at all: with both the
    qform and sform codes 0 and no spatial unit, its voxel size is not known (NIfTI "method
    1", an array saved without geometry), so volumes are left out.
    """
    factor = 1.0
    if header is not None:
        unit = header.get_xyzt_units()[0]
        factor = _SPACE_TO_MM.get(unit, 1.0)
        if unit == "unknown" and not int(header["qform_code"]) and not int(header["sform_code"]):
            return None, ("no voxel size: the file places no voxels in space (qform and sform "
                          "codes 0, no unit); voxel counts only, no mL")
    ml = voxel_volume_ml(np.diag([factor, factor, factor, 1.0]) @ np.asarray(affine, float))
    if ml is None:
        return None, "no voxel size: the affine has a zero or invalid voxel size; voxel " \
                     "counts only, no mL"
    return ml, None


def labels_on_border(labels: np.ndarray) -> set[int]:
    """The label values found on any face of the array (reads the faces only: cheap enough to
    run after every paint stroke on a large CT)."""
    found: set[int] = set()
    for axis in range(labels.ndim):
        if labels.shape[axis]:
            for index in (0, -1):
                found.update(int(v) for v in np.unique(np.take(labels, index, axis)))
    return found


@dataclass(frozen=True)
class ClassVolume:
    """One class of a label map: ``label`` value, ``name``, ``voxels``, ``volume_ml`` (None
    when the voxel size is unknown) and ``touches_border`` (then the volume may be cut off)."""

    label: int
    name: str
    voxels: int
    volume_ml: float | None
    touches_border: bool

    def to_dict(self) -> dict:
        return {"label": self.label, "name": self.name, "voxels": self.voxels,
                "volume_ml": self.volume_ml, "touches_border": self.touches_border}


@dataclass(frozen=True)
class VolumeTable:
    """Per-class volumes of one label map, with the voxel volume used and a note if any."""

    classes: tuple[ClassVolume, ...]
    voxel_ml: float | None
    note: str | None = None

    def by_name(self, name: str) -> ClassVolume:
        for row in self.classes:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"voxel_volume_ml": self.voxel_ml, "note": self.note,
                "classes": {row.name: {k: v for k, v in row.to_dict().items() if k != "name"}
                            for row in self.classes}}

    def to_csv(self) -> str:
        """``label,name,voxels,volume_ml,touches_border`` (volume empty when unknown)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["label", "name", "voxels", "volume_ml", "touches_border"])
        for row in self.classes:
            writer.writerow([row.label, row.name, row.voxels,
                             "" if row.volume_ml is None else f"{row.volume_ml:.4f}",
                             "yes" if row.touches_border else "no"])
        return out.getvalue()

    def to_text(self) -> str:
        """A table to read or paste into a report (tab-separated, one class a line)."""
        lines = ["class\tvoxels\tvolume (mL)\ttouches border"]
        for row in self.classes:
            ml = "-" if row.volume_ml is None else f"{row.volume_ml:.1f}"
            lines.append(f"{row.name}\t{row.voxels}\t{ml}\t{'yes' if row.touches_border else ''}")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def class_volumes(labels: np.ndarray, class_names: Sequence[str] | None = None, *,
                  voxel_ml: float | None = None, note: str | None = None,
                  include_background: bool = False) -> VolumeTable:
    """Voxel count, volume and border contact of every class of ``labels`` (any array order).

    ``class_names[c]`` names label ``c`` (every label of the names is listed, present or not;
    labels beyond them are listed as ``"label c"``). ``voxel_ml``: one voxel's volume
    (``voxel_volume_ml``); ``None`` leaves the volumes out and ``note`` should say why.
    """
    labels = np.asarray(labels)
    if labels.size and labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be whole numbers, got dtype {labels.dtype}")
    counts = np.bincount(labels.ravel().astype(np.int64)) if labels.size else np.zeros(0, int)
    names = list(class_names or [])
    n = max(len(names), len(counts))
    border = labels_on_border(labels) if labels.size else set()
    rows = []
    for c in range(0 if include_background else 1, n):
        name = names[c] if c < len(names) else f"label {c}"
        voxels = int(counts[c]) if c < len(counts) else 0
        rows.append(ClassVolume(
            label=c, name=name, voxels=voxels,
            volume_ml=None if voxel_ml is None else voxels * voxel_ml,
            touches_border=c in border))
    return VolumeTable(tuple(rows), voxel_ml, note)


# ------------------------------------------------------------------------------ cardiac


@dataclass(frozen=True)
class CardiacClasses:
    """The label values of the left and right ventricle cavities and the LV myocardium."""

    lv: int
    rv: int
    myo: int


def find_cardiac_classes(class_names: Sequence[str]) -> CardiacClasses:
    """The LV, RV and Myo labels by class name (case-insensitive; see ``CARDIAC_NAMES``).

    ValueError (one line) when one is missing: a model or labels without those structures
    cannot give cardiac indices.
    """
    lowered = [str(n).strip().lower() for n in class_names]
    found: dict[str, int] = {}
    for key, spellings in CARDIAC_NAMES.items():
        hits = [i for i, n in enumerate(lowered) if n in spellings and i > 0]
        if hits:
            found[key] = hits[0]
    missing = [k for k in CARDIAC_NAMES if k not in found]
    if missing:
        raise ValueError(
            f"cardiac indices need classes named LV, RV and Myo; the classes "
            f"({', '.join(map(str, class_names))}) have no {', '.join(missing)}: use a cardiac "
            "model, or name the label values with --class-names background,RV,Myo,LV")
    return CardiacClasses(lv=found["LV"], rv=found["RV"], myo=found["Myo"])


@dataclass(frozen=True)
class VentricleFunction:
    """EDV, ESV and SV in mL and EF in percent of one ventricle."""

    edv_ml: float
    esv_ml: float
    sv_ml: float
    ef_percent: float

    @classmethod
    def from_volumes(cls, edv_ml: float, esv_ml: float) -> VentricleFunction:
        """SV = EDV - ESV, EF = SV / EDV x 100 (NaN when EDV is 0: nothing was found)."""
        sv = edv_ml - esv_ml
        return cls(edv_ml, esv_ml, sv, 100.0 * sv / edv_ml if edv_ml > 0 else math.nan)

    def to_dict(self) -> dict[str, float | None]:
        """EF is None (JSON null) when EDV is 0: no ventricle was found at end-diastole."""
        return {"EDV_ml": self.edv_ml, "ESV_ml": self.esv_ml, "SV_ml": self.sv_ml,
                "EF_percent": None if math.isnan(self.ef_percent) else self.ef_percent}


@dataclass(frozen=True)
class CardiacIndices:
    """LV and RV function and the myocardial mass at end-diastole (g)."""

    lv: VentricleFunction
    rv: VentricleFunction
    myo_mass_g: float

    def to_dict(self) -> dict[str, dict[str, float]]:
        """Exactly ``{"LV": {...}, "RV": {...}, "Myo": {"mass_g"}}``."""
        return {"LV": self.lv.to_dict(), "RV": self.rv.to_dict(),
                "Myo": {"mass_g": self.myo_mass_g}}

    def to_text(self) -> str:
        """A short table to read or paste into a report."""
        lines = ["\tEDV (mL)\tESV (mL)\tSV (mL)\tEF (%)"]
        for name, v in (("LV", self.lv), ("RV", self.rv)):
            lines.append(f"{name}\t{v.edv_ml:.1f}\t{v.esv_ml:.1f}\t{v.sv_ml:.1f}\t"
                         f"{v.ef_percent:.1f}")
        lines.append(f"Myo mass (ED)\t{self.myo_mass_g:.1f} g")
        return "\n".join(lines)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["structure", "EDV_ml", "ESV_ml", "SV_ml", "EF_percent", "mass_g"])
        for name, v in (("LV", self.lv), ("RV", self.rv)):
            writer.writerow([name, f"{v.edv_ml:.4f}", f"{v.esv_ml:.4f}", f"{v.sv_ml:.4f}",
                             f"{v.ef_percent:.4f}", ""])
        writer.writerow(["Myo", "", "", "", "", f"{self.myo_mass_g:.4f}"])
        return out.getvalue()


def _counts(labels: np.ndarray, classes: CardiacClasses) -> dict[str, int]:
    labels = np.asarray(labels)
    return {k: int(np.count_nonzero(labels == getattr(classes, k)))
            for k in ("lv", "rv", "myo")}


def cardiac_indices(ed_labels: np.ndarray, es_labels: np.ndarray, classes: CardiacClasses,
                    voxel_ml: float) -> CardiacIndices:
    """Cardiac indices of the end-diastolic and end-systolic label maps (same grid)."""
    ed, es = np.asarray(ed_labels), np.asarray(es_labels)
    if ed.shape != es.shape:
        raise ValueError(f"the ED and ES labels are on different grids (shapes {ed.shape} and "
                         f"{es.shape}): give two frames of the same cine series")
    if voxel_ml is None or not voxel_ml > 0:
        raise ValueError("cardiac indices need the voxel size in mm; the scan has none")
    a, b = _counts(ed, classes), _counts(es, classes)
    return CardiacIndices(
        lv=VentricleFunction.from_volumes(a["lv"] * voxel_ml, b["lv"] * voxel_ml),
        rv=VentricleFunction.from_volumes(a["rv"] * voxel_ml, b["rv"] * voxel_ml),
        myo_mass_g=a["myo"] * voxel_ml * MYOCARDIAL_DENSITY_G_PER_ML)


def frame_volumes(frames: np.ndarray, label: int, voxel_ml: float = 1.0) -> np.ndarray:
    """Volume of ``label`` in each frame of a cine label series (time on axis 0)."""
    frames = np.asarray(frames)
    return np.array([np.count_nonzero(f == label) * voxel_ml for f in frames], np.float64)


def pick_ed_es(lv_volumes: Sequence[float]) -> tuple[int, int]:
    """End-diastole and end-systole frames: largest and smallest LV volume (first of ties)."""
    vols = np.asarray(lv_volumes, np.float64)
    if vols.size < 2:
        raise ValueError(f"a cine needs at least two frames to pick ED and ES, got {vols.size}")
    return int(np.argmax(vols)), int(np.argmin(vols))


BASAL_SLICES = 2
"""Basal slices per frame the reader is pointed to (``basal_slices``)."""


@dataclass(frozen=True)
class BasalSlices:
    """The most basal slices (axis 0) holding a cardiac label at ED and at ES."""

    ed: tuple[int, ...]
    es: tuple[int, ...]

    def message(self) -> str:
        """One line for the Measure panel and ``l2gnet measure``."""
        def listed(slices: tuple[int, ...]) -> str:
            return ", ".join(map(str, slices)) or "none"

        return (f"Check the basal slices before reading the RV: slices {listed(self.ed)} at "
                f"ED and {listed(self.es)} at ES (slices counted from 0); whether each holds "
                "ventricle or atrium decides most of the RV EF error (docs/measure.md).")


def basal_slices(ed_labels: np.ndarray, es_labels: np.ndarray, classes: CardiacClasses,
                 count: int = BASAL_SLICES) -> BasalSlices | None:
    """The ``count`` slices nearest the base holding LV, RV or Myo, at ED and at ES; None
    when ED has none. The base is the end of the heart's slices where the ED LV
    cross-section is larger (the LV narrows to the apex), so either stack order works."""
    ed, es = np.asarray(ed_labels), np.asarray(es_labels)
    cardiac = [classes.lv, classes.rv, classes.myo]

    def heart(labels: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(labels, cardiac).reshape(labels.shape[0], -1).any(1))

    at_ed = heart(ed)
    if not at_ed.size:
        return None
    lv_area = np.count_nonzero((ed == classes.lv).reshape(ed.shape[0], -1), axis=1)
    quarter = max(1, at_ed.size // 4)
    base_first = lv_area[at_ed[:quarter]].sum() >= lv_area[at_ed[-quarter:]].sum()

    def nearest_base(slices: np.ndarray) -> tuple[int, ...]:
        ordered = slices if base_first else slices[::-1]
        return tuple(int(z) for z in ordered[:count])

    return BasalSlices(nearest_base(at_ed), nearest_base(heart(es)))


# ------------------------------------------------------------------------------ writers


def write_json(data: dict, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``data`` as indented JSON atomically; never replaces a file without overwrite."""
    return write_text(json.dumps(data, indent=2, allow_nan=True) + "\n", path,
                      overwrite=overwrite)


def write_text(text: str, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``text`` atomically (temporary file, then rename); keep an existing file unless
    ``overwrite``."""
    from scan_io.atomic import atomic_write_path

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    with atomic_write_path(path, suffix=path.suffix or ".txt", overwrite=overwrite) as tmp:
        Path(tmp).write_text(text)
    return path
