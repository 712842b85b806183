"""Dice and HD95 per class per volume, implemented once on numpy/scipy.

Two protocols (see docs/design.md, "Evaluation protocols"):

``"transunet"``
    TransUNet's test script (``calculate_metric_percase``), quirks included: per class, with
    ``p = pred == c`` and ``g = truth == c``; if both are non-empty, Dice and HD95 as medpy
    computes them, in voxel units (``spacing`` is ignored); prediction present and truth empty
    scores ``(1, 0)``; prediction empty scores ``(0, 0)`` (whatever the truth).

``"clinical"``
    HD95 in mm from ``spacing`` (voxel units when ``spacing`` is None). Empty cases are
    reported, not scored: ``hd95`` is ``None`` and the dict's ``empty`` says which side was empty
    (``"prediction"``, ``"truth"`` or ``"both"``; ``None`` when both are present). ``dice`` is
    ``None`` too, except for a missed organ (prediction empty, truth present): its Dice is a
    well-defined 0, and leaving it out would flatter the mean.

Every dict carries ``class`` (the label value), ``dice``, ``hd95`` and ``empty`` (always ``None``
under ``"transunet"``, where empty cases are scored rather than reported).

HD95 follows ``medpy.metric.binary.hd95``: borders are ``mask ^ binary_erosion(mask)`` with the
connectivity-1 structure (``generate_binary_structure(ndim, 1)``), the distances from each
border voxel to the other mask's border come from ``distance_transform_edt``, and the 95th
percentile is taken over the distances of both directions pooled together. The volumes are
cropped to the joint bounding box first, which changes nothing in the result (everything
outside it is background in both masks) and makes large scans much faster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

PROTOCOLS = ("transunet", "clinical")

__all__ = ["PROTOCOLS", "dice", "hd95", "score_case", "summarize", "surface_distances"]


def _as_bool(mask: Any) -> np.ndarray:
    return np.atleast_1d(np.asarray(mask).astype(bool))


def _check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"shape mismatch: {names[0]} has shape {tuple(a.shape)} but {names[1]} has shape "
            f"{tuple(b.shape)}"
        )


def _normalize_spacing(spacing: float | Sequence[float] | None, ndim: int) -> np.ndarray | None:
    if spacing is None:
        return None
    sp = np.asarray(spacing, dtype=np.float64).ravel()
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.size != ndim:
        raise ValueError(f"spacing has {sp.size} values but the masks have {ndim} dimensions")
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be finite and positive, got {sp.tolist()}")
    return sp


def dice(pred_mask: Any, truth_mask: Any) -> float:
    """Dice coefficient ``2|P & T| / (|P| + |T|)`` of two binary masks (0.0 if both are empty,
    as ``medpy.metric.binary.dc``)."""
    p, t = _as_bool(pred_mask), _as_bool(truth_mask)
    _check_same_shape(p, t, ("pred_mask", "truth_mask"))
    denom = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
    if denom == 0:
        return 0.0
    return 2.0 * int(np.count_nonzero(p & t)) / float(denom)


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """The smallest box holding every True voxel of a non-empty ``mask``, grown by ``margin``
    voxels on each side (clipped at 0; slicing clips the far end)."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != axis)
        present = np.flatnonzero(mask.any(axis=other) if other else mask)
        if present.size == 0:
            raise ValueError("bounding_box of an empty mask")
        box.append(slice(max(int(present[0]) - margin, 0), int(present[-1]) + margin + 1))
    return tuple(box)


def _crop_to_union(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to the bounding box of their union (exact for borders and distances)."""
    box = bounding_box(p | t)
    return p[box], t[box]


def _border(mask: np.ndarray) -> np.ndarray:
    footprint = generate_binary_structure(mask.ndim, 1)
    return mask ^ binary_erosion(mask, structure=footprint, iterations=1)


def surface_distances(
    pred_mask: Any, truth_mask: Any, spacing: float | Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each border voxel of ``pred_mask`` to the border of ``truth_mask``, and
    the other way round (medpy's ``__surface_distances`` both ways). Both masks must be
    non-empty (ValueError otherwise)."""
    p, t = _as_bool(pred_mask), _as_bool(truth_mask)
    _check_same_shape(p, t, ("pred_mask", "truth_mask"))
    if not p.any():
        raise ValueError("pred_mask contains no foreground voxel: surface distance is undefined")
    if not t.any():
        raise ValueError("truth_mask contains no foreground voxel: surface distance is undefined")
    sampling = _normalize_spacing(spacing, p.ndim)
    p, t = _crop_to_union(p, t)
    p_border, t_border = _border(p), _border(t)
    pred_to_truth = distance_transform_edt(~t_border, sampling=sampling)[p_border]
    truth_to_pred = distance_transform_edt(~p_border, sampling=sampling)[t_border]
    return np.asarray(pred_to_truth, np.float64), np.asarray(truth_to_pred, np.float64)


def hd95(pred_mask: Any, truth_mask: Any, spacing: float | Sequence[float] | None = None) -> float:
    """95th percentile of the pooled surface distances of both directions (medpy's ``hd95``),
    in units of ``spacing`` (voxels when None). Both masks must be non-empty (ValueError)."""
    a, b = surface_distances(pred_mask, truth_mask, spacing)
    return float(np.percentile(np.hstack((a, b)), 95))


def _validate_labels(pred: Any, truth: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    pred_a, truth_a = np.asarray(pred), np.asarray(truth)
    _check_same_shape(pred_a, truth_a, ("pred", "truth"))
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    for name, arr in (("pred", pred_a), ("truth", truth_a)):
        if arr.dtype.kind not in "iub":
            raise ValueError(f"{name} must be an integer label array, got dtype {arr.dtype}")
        if arr.size == 0:
            raise ValueError(f"{name} is empty (shape {tuple(arr.shape)})")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0:
            raise ValueError(f"{name} contains negative label {lo}")
        if hi >= num_classes:
            raise ValueError(
                f"{name} contains label {hi} but num_classes is {num_classes} "
                f"(labels must be < {num_classes})"
            )
    return pred_a, truth_a


def score_case(
    pred: Any,
    truth: Any,
    num_classes: int,
    protocol: str = "transunet",
    spacing: float | Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """Score one volume (2-D or 3-D label arrays): one dict per foreground class
    ``1 .. num_classes-1`` in order, with ``class``, ``dice``, ``hd95`` and ``empty``.

    See the module docstring for the two protocols. ``spacing`` is ignored by ``"transunet"``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; accepted: {', '.join(PROTOCOLS)}")
    pred_a, truth_a = _validate_labels(pred, truth, num_classes)
    sampling = _normalize_spacing(spacing, pred_a.ndim) if protocol == "clinical" else None
    results: list[dict[str, Any]] = []
    for c in range(1, int(num_classes)):
        p, t = pred_a == c, truth_a == c
        has_p, has_t = bool(p.any()), bool(t.any())
        empty: str | None = None
        if protocol == "transunet":
            if has_p and has_t:
                d, h = dice(p, t), hd95(p, t)
            elif has_p:
                d, h = 1.0, 0.0
            else:
                d, h = 0.0, 0.0
        else:
            if has_p and has_t:
                d, h = dice(p, t), hd95(p, t, sampling)
            else:
                # A missed organ has a well-defined Dice of 0; HD95 is undefined either way.
                d = 0.0 if has_t else None
                h = None
                empty = "both" if not (has_p or has_t) else ("prediction" if has_t else "truth")
        results.append({"class": c, "dice": d, "hd95": h, "empty": empty})
    return results


def _mean(values: list[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(kept) / len(kept) if kept else None


def summarize(
    cases: Sequence[Sequence[dict[str, Any]]], class_names: Sequence[str]
) -> dict[str, Any]:
    """Average ``score_case`` results over volumes per class, then over classes.

    ``class_names`` names the foreground classes in order; a list that also starts with the
    background (one name more than the classes scored) is accepted and its first name dropped.
    ``None`` (or NaN) values are ignored; a class with no scored volume gets ``None`` and is left
    out of the mean over classes. Returns ``{"per_class": {name: {"dice", "hd95", "n",
    "empty"}}, "mean": {"dice", "hd95"}, "num_cases": int}`` where ``n`` counts the scored
    volumes and ``empty`` counts the unscored (empty) ones by kind.
    """
    cases = [list(c) for c in cases]
    n_fg = len(cases[0]) if cases else len(class_names)
    for i, case in enumerate(cases):
        if len(case) != n_fg:
            raise ValueError(f"case {i} has {len(case)} classes but case 0 has {n_fg}")
    names = list(class_names)
    if len(names) == n_fg + 1:
        names = names[1:]
    if len(names) != n_fg:
        raise ValueError(f"{len(class_names)} class names given for {n_fg} scored classes")
    per_class: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        dices = [case[k].get("dice") for case in cases]
        hds = [case[k].get("hd95") for case in cases]
        empties: dict[str, int] = {}
        for case in cases:
            kind = case[k].get("empty")
            if kind is not None:
                empties[kind] = empties.get(kind, 0) + 1
        per_class[name] = {
            "dice": _mean(dices),
            "hd95": _mean(hds),
            "n": sum(1 for v in dices if v is not None and not math.isnan(float(v))),
            "empty": empties,
        }
    mean = {
        "dice": _mean([v["dice"] for v in per_class.values()]),
        "hd95": _mean([v["hd95"] for v in per_class.values()]),
    }
    return {"per_class": per_class, "mean": mean, "num_cases": len(cases)}
