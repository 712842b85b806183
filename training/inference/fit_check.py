"""Does this scan fit this checkpoint? Warnings before segmenting, and a sanity pass after.

A model trained on CT in Hounsfield units gives nonsense on an MRI (and the other way round),
and a model trained on thick short-axis stacks of ~1.5 mm pixels is off its training
distribution on 0.5 mm slices. Nothing stops the user from trying: these checks only *say*
so (docs/design.md, "The napari plugin"). They are cheap (a strided sample of
the voxels), need no torch, and never raise on odd input: a check that cannot tell is silent.

What a checkpoint expects comes from its metadata: the model card's ``modality`` (else the
normalisation: ``ct_window`` means CT), and an optional ``expected_scan`` entry written by
``benchmarks/make_model_card.py`` with the training data's ranges of voxel size, in-plane
size and slice count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scan_io.hounsfield import sample_looks_like_ct, sample_voxels

CT = "CT"
MRI = "MRI"
NORMALISED = "normalised"  # intensities already in [0, 1]: the modality cannot be told
UNKNOWN = "unknown"

SPURIOUS_VOXELS = 50
"""A class with fewer voxels than this in a whole result is listed as likely spurious (a
3-D organ at 3 mm voxels would hold about 1.4 mL: far below any structure the shipped models
segment). Single-slice results use a tenth of it."""

_MODALITY_OF_NORMALIZATION = {"ct_window": CT, "percentile": MRI}


Range = tuple[float, float]


@dataclass(frozen=True)
class ScanExpectation:
    """What the checkpoint was trained on; ``None`` where the metadata does not say.

    Spacings in mm; ``in_plane_px`` is the range of the slices' larger side in pixels;
    ``slice_count`` the range of slices per training volume.
    """

    modality: str | None = None
    in_plane_spacing_mm: Range | None = None
    slice_spacing_mm: Range | None = None
    in_plane_px: Range | None = None
    slice_count: Range | None = None

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any] | None) -> ScanExpectation:
        """Read the card's modality and ``expected_scan`` (a dict or a ``CheckpointMeta``)."""
        meta = meta or {}
        card = _mapping(meta.get("card"))
        expected = _mapping(meta.get("expected_scan"))
        norm = _mapping(meta.get("normalization"))
        modality = card.get("modality") or expected.get("modality") or \
            _MODALITY_OF_NORMALIZATION.get(str(norm.get("kind")))
        return cls(
            modality=_modality_name(modality),
            in_plane_spacing_mm=_range(expected.get("in_plane_spacing_mm")),
            slice_spacing_mm=_range(expected.get("slice_spacing_mm")),
            in_plane_px=_range(expected.get("in_plane_px")),
            slice_count=_range(expected.get("slice_count")),
        )

    def to_metadata(self) -> dict[str, Any]:
        """The ``expected_scan`` entry (ranges as two-element lists; unknowns left out)."""
        out: dict[str, Any] = {}
        for key in ("modality", "in_plane_spacing_mm", "slice_spacing_mm", "in_plane_px",
                    "slice_count"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class FitIssue:
    """One disagreement between scan and checkpoint: ``kind`` names the check."""

    kind: str  # "modality", "intensity", "spacing", "size", "slices"
    message: str


@dataclass(frozen=True)
class ClassCount:
    name: str
    voxels: int


@dataclass(frozen=True)
class ResultSummary:
    """Classes in a segmentation: ``found`` with plausible sizes, ``spurious`` with a handful."""

    found: tuple[ClassCount, ...]
    spurious: tuple[ClassCount, ...]

    def describe(self) -> str:
        """``Found: RV, LV. Likely spurious: spleen: 9 voxels.`` (one line for a status bar)."""
        found = ", ".join(c.name for c in self.found) or "nothing"
        text = f"Found: {found}."
        if self.spurious:
            tiny = "; ".join(f"{c.name}: {c.voxels} voxel{'s' * (c.voxels != 1)}"
                             for c in self.spurious)
            text += f" Likely spurious (only a handful of voxels): {tiny}."
        return text


# ---------------------------------------------------------------------------- the scan
def guess_modality(volume: np.ndarray) -> str:
    """``CT`` (Hounsfield units), ``MRI`` (non-negative arbitrary units), ``normalised``.

    CT: air outside the body is about -1000 HU, so a CT volume has a low percentile far below
    zero (``scan_io.hounsfield``: the display window decides with the same rule). MRI (and
    most other non-HU images) is non-negative with an arbitrary scale well above 1. A float
    volume inside [0, 1] was normalised already: its modality cannot be told.
    """
    sample = sample_voxels(volume)
    if sample_looks_like_ct(sample)[0]:  # the display window's rule (scan_io.hounsfield)
        return CT
    if sample.size == 0:
        return UNKNOWN
    low, p01, p99 = (float(v) for v in np.percentile(sample, [0, 1, 99]))
    if low >= -1e-6 and p99 <= 1.0 + 1e-6:
        return NORMALISED
    if p01 >= -100.0 and p99 > 1.0:
        return MRI
    return UNKNOWN


def check_fit(
    volume: np.ndarray,
    meta: Mapping[str, Any] | None,
    *,
    axis: int = 0,
    spacing: Sequence[float] | None = None,
) -> list[FitIssue]:
    """Where ``volume`` (slices along ``axis``) differs from what the checkpoint expects.

    ``spacing``: voxel size in mm in the volume's axis order, or ``None`` when unknown (a
    layer without a file's geometry). Returns no issues when nothing disagrees.
    """
    vol = np.asarray(volume)
    expected = ScanExpectation.from_metadata(meta)
    issues: list[FitIssue] = []
    if vol.ndim not in (2, 3) or vol.size == 0:
        return issues
    if vol.ndim == 2:
        vol, axis, spacing = vol[None], 0, (None, *spacing) if spacing else None
    axis %= 3
    seen = guess_modality(vol)
    norm_kind = str(_mapping((meta or {}).get("normalization")).get("kind", "none"))
    issues += _modality_issues(expected.modality, seen, norm_kind, vol)

    in_plane = [n for i, n in enumerate(vol.shape) if i != axis]
    n_slices = vol.shape[axis]
    if expected.in_plane_px is not None and not _within(max(in_plane), expected.in_plane_px):
        lo, hi = expected.in_plane_px
        issues.append(FitIssue(
            "size", f"Slices are {in_plane[0]} x {in_plane[1]} px; the model was trained on "
            f"slices of {lo:g}-{hi:g} px: structures may come out at an unfamiliar size."))
    if (expected.slice_count is not None and n_slices > 1
            and not _within(n_slices, expected.slice_count, slack=2.0)):
        lo, hi = expected.slice_count
        issues.append(FitIssue(
            "slices", f"{n_slices} slices along axis {axis}; the model was trained on volumes "
            f"of {lo:g}-{hi:g} slices: check the slice axis."))
    if spacing is not None and len(spacing) == 3:
        sp = [float(s) if s else 0.0 for s in spacing]
        plane = [s for i, s in enumerate(sp) if i != axis and s > 0]
        if plane and expected.in_plane_spacing_mm is not None and not _within(
                float(np.mean(plane)), expected.in_plane_spacing_mm, slack=1.5):
            lo, hi = expected.in_plane_spacing_mm
            issues.append(FitIssue(
                "spacing", f"In-plane voxel size {float(np.mean(plane)):.2g} mm; the model was "
                f"trained on {lo:g}-{hi:g} mm."))
        if sp[axis] > 0 and n_slices > 1 and expected.slice_spacing_mm is not None and not \
                _within(sp[axis], expected.slice_spacing_mm, slack=1.5):
            lo, hi = expected.slice_spacing_mm
            issues.append(FitIssue(
                "spacing", f"Slice spacing {sp[axis]:.2g} mm; the model was trained on "
                f"{lo:g}-{hi:g} mm."))
    return issues


def _modality_issues(expected: str | None, seen: str, norm_kind: str,
                     vol: np.ndarray) -> list[FitIssue]:
    if expected is None or seen == UNKNOWN:
        return []
    if expected == CT and seen == MRI:
        lo, hi = _range_text(vol)
        return [FitIssue("modality", f"This model was trained on CT; this image looks like MRI "
                         f"(intensities {lo}..{hi}, no air near -1000 HU): expect nonsense.")]
    if expected == MRI and seen == CT:
        return [FitIssue("modality", "This model was trained on MRI; this image looks like CT "
                         "(Hounsfield units, air near -1000): expect nonsense.")]
    if expected == CT and seen == NORMALISED and norm_kind == "ct_window":
        return [FitIssue("intensity", "This model expects CT in Hounsfield units; this image's "
                         "intensities lie in [0, 1] (normalised already?): it will look "
                         "uniform to the model.")]
    if seen not in (NORMALISED,) and norm_kind == "none":
        lo, hi = _range_text(vol)
        return [FitIssue("intensity", f"This model expects intensities scaled to [0, 1]; this "
                         f"image spans {lo}..{hi}: values outside are clipped.")]
    return []


# ---------------------------------------------------------------------------- the result
def summarize_result(
    labels: np.ndarray, class_names: Sequence[str], *, min_voxels: int | None = None
) -> ResultSummary:
    """Split the classes present in ``labels`` into plausible and likely spurious ones.

    A class with fewer than ``min_voxels`` voxels (default ``SPURIOUS_VOXELS``, a tenth of
    it for a single slice) is a few stray voxels, not a finding.
    """
    lab = np.asarray(labels)
    if min_voxels is None:
        single = lab.ndim == 2 or (lab.ndim == 3 and 1 in lab.shape)
        min_voxels = SPURIOUS_VOXELS // 10 if single else SPURIOUS_VOXELS
    counts = np.bincount(lab.ravel().astype(np.int64), minlength=len(class_names))
    found, spurious = [], []
    for c in range(1, len(counts)):
        if not counts[c]:
            continue
        entry = ClassCount(class_names[c] if c < len(class_names) else f"class {c}",
                           int(counts[c]))
        (found if counts[c] >= min_voxels else spurious).append(entry)
    return ResultSummary(tuple(found), tuple(spurious))


# ---------------------------------------------------------------------------- helpers
def _range_text(vol: np.ndarray) -> tuple[str, str]:
    lo, hi = np.percentile(sample_voxels(vol), [1, 99])
    return f"{lo:.3g}", f"{hi:.3g}"


def _within(value: float, rng: Range, slack: float = 1.0) -> bool:
    lo, hi = rng
    return lo / slack <= value <= hi * slack


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _modality_name(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().upper()
    if text.startswith("CT"):
        return CT
    if text.startswith("MR"):
        return MRI
    return value.strip()


def _range(value: Any) -> Range | None:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) and lo <= hi else None
