"""``evaluate``: segment each volume and score it with ``training.evaluation.metrics``
(the papers' protocol).

TransUNet's test protocol predicts with cubic resize in and nearest resize back
(``resize_back="nearest"``); the clinical protocol resizes the logits back (smoother) and uses
the voxel spacing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scan_io.atomic import atomic_write_path
from scan_io.labels import check_labels
from src_model.checkpoint_meta import class_names_or_default

from ..data import Case
from ..inference.predict import InferenceSettings, SliceInferer, load_for_inference
from .metrics import score_case, summarize


def evaluate(
    model_or_checkpoint,
    cases: Sequence[Case],
    *,
    protocol: str = "transunet",
    device: str = "auto",
    batch_size: int | str = "auto",
    on_case: Callable[[str, list[dict]], None] | None = None,
    metadata: Mapping[str, Any] | None = None,
    postprocess: bool = True,
) -> dict[str, Any]:
    """Score every case; returns ``{"summary": ..., "cases": {name: rows}, "class_names"}``.

    ``metadata``: a loaded model's checkpoint metadata (input size, class names), when
    ``model_or_checkpoint`` is a model rather than a path. ``postprocess``: apply the
    checkpoint's post-processing (as ``predict_volume`` does by default).
    """
    model, meta = load_for_inference(model_or_checkpoint, metadata)
    names = list(class_names_or_default(meta, model.num_classes))
    # The volumes are already normalised by their reader; slices go through as they are.
    inferer = SliceInferer(model, {**meta, "normalization": {"kind": "none"}},
                           InferenceSettings(device=device, batch_size=batch_size,
                                             resize_back="nearest" if protocol == "transunet"
                                             else "logits",
                                             postprocess=postprocess))
    results: dict[str, list[dict]] = {}
    for case in cases:
        check_labels(case.label, case.name, model.num_classes)
        pred = inferer(case.image, spacing=case.spacing)
        rows = score_case(pred.labels, case.label, model.num_classes, protocol=protocol,
                          spacing=case.spacing)
        results[case.name] = rows
        if on_case is not None:
            on_case(case.name, rows)
    return {"protocol": protocol, "class_names": names, "cases": results,
            "summary": summarize(list(results.values()), names)}


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def format_table(report: dict[str, Any]) -> str:
    """A per-class table: mean Dice and HD95 over volumes, then one row per volume (Dice)."""
    names = report["class_names"][1:]
    summary = report["summary"]
    width = max(12, *(len(n) for n in names))
    lines = [f"{'class':<{width}}  {'Dice':>7}  {'HD95':>8}"]
    for name in names:
        row = summary["per_class"][name]
        lines.append(f"{name:<{width}}  {_fmt(row['dice'], 4):>7}  {_fmt(row['hd95'], 2):>8}")
    lines.append(f"{'mean':<{width}}  {_fmt(summary['mean']['dice'], 4):>7}  "
                 f"{_fmt(summary['mean']['hd95'], 2):>8}")
    lines.append("")
    lines.append("per volume (Dice): " + ", ".join(names))
    for case, rows in report["cases"].items():
        lines.append(f"  {case}: " + " ".join(_fmt(r["dice"], 3) for r in rows))
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: str | Path, *, overwrite: bool = True) -> Path:
    """Write the report as JSON, atomically (an interrupted write leaves no partial file)."""
    path = Path(path)
    text = json.dumps(report, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write_path(path, suffix=".json", overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return path
