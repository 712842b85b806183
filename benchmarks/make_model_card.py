"""Write a model card (and what scans the model expects) into a checkpoint's metadata.

The weights are copied unchanged; only the JSON metadata entry changes, and the result goes
to a new file (or over ``--out`` with ``--overwrite``), written atomically. Used for the
shipped models (docs/models.md, "Shipped models"):

    python benchmarks/make_model_card.py runs/acdc_mri/best.safetensors --preset acdc-mri \
        --eval runs/acdc_mri/eval.json --eval-command "l2gnet evaluate ..." \
        --out napari_l2gnet/resources/acdc_cine_mri_l2gnet.safetensors

The card's fields are those of ``src_model.checkpoint_meta.ModelCard`` (``display_name``,
``modality``, ``intended_use``, ``training_data``, ``training_command``,
``validation_dice``) under the top-level ``card`` key; the scan expectations read by
``training.inference.fit_check`` go under ``expected_scan``; ``evaluation`` records the command and
protocol that produced ``validation_dice``. Prints one JSON line describing what it wrote.

``--normalization percentile:0:100`` (the ACDC preset's) is per-volume min-max scaling:
exactly what the ACDC files were prepared with (every volume spans [0, 1]), so it leaves
every score on them unchanged, and it lets the model take a raw MRI (arbitrary units).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scan_io.atomic import atomic_write_path  # noqa: E402
from src_model import read_checkpoint_meta  # noqa: E402
from src_model.checkpoint_meta import CheckpointError, CheckpointMeta  # noqa: E402
from training.inference.fit_check import ScanExpectation  # noqa: E402

_META_KEY = "l2gnet"

PRESETS: dict[str, dict[str, Any]] = {
    "acdc-mri": {
        "card": {
            "display_name": "ACDC cine MRI (RV, Myo, LV)",
            "modality": "MRI (cardiac cine, short axis)",
            "intended_use": (
                "Trained on ACDC cine MRI (real patients): segments the right ventricle, "
                "myocardium and left ventricle on short-axis cine MRI slices. Research use, "
                "not for diagnosis."),
            "training_data": (
                "ACDC (MICCAI 2017, Bernard et al. 2018): 1312 labelled short-axis slices of "
                "70 training patients (end-diastole and end-systole); validated on 20 volumes "
                "of 10 other patients. The images are not shipped."),
        },
        "expected_scan": ScanExpectation(
            modality="MRI",
            # ACDC acquisitions: slices 5-8 mm thick, 5-10 mm apart; in-plane pixels of
            # about 0.7-1.9 mm (the h5 files store no spacing: published acquisition range).
            in_plane_spacing_mm=(0.7, 1.92),
            slice_spacing_mm=(5.0, 10.0),
            in_plane_px=(208, 512),  # larger side of the 1312 training slices
            slice_count=(6, 18),  # slices per training volume
        ),
        "normalization": {"kind": "percentile", "low": 0.0, "high": 100.0},
    },
    "demo-phantom": {
        "card": {
            "display_name": "Phantom demo (8 abdominal organs)",
            "modality": "CT (generated phantoms)",
            "intended_use": (
                "Phantom-only demo: trained on generated abdominal CT phantoms, to try the "
                "plugin on its sample scan. It does not work on real scans."),
            "training_data": "generated CT phantoms phantom:100-111 (validation phantom:200)",
        },
        "expected_scan": ScanExpectation(
            modality="CT", in_plane_spacing_mm=(2.2, 2.2), slice_spacing_mm=(3.0, 3.0),
            in_plane_px=(160, 160), slice_count=(40, 40)),
        "normalization": None,
    },
}


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors as numpy arrays, metadata dict) without building the model.

    The metadata is read and validated by the loader's own ``read_checkpoint_meta``, so a
    foreign or damaged file is refused here rather than carded and shipped.
    """
    meta = read_checkpoint_meta(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupted: {exc}") from exc
    return tensors, meta.to_dict()


def dice_from_eval(report: dict[str, Any]) -> dict[str, float]:
    """``{"RV": ..., "mean": ...}`` from an ``l2gnet evaluate --out`` report."""
    summary = report["summary"]
    dice = {name: round(float(row["dice"]), 4) for name, row in summary["per_class"].items()
            if row.get("dice") is not None}
    dice["mean"] = round(float(summary["mean"]["dice"]), 4)
    return dice


def build_card(meta: dict[str, Any], preset: dict[str, Any], report: dict[str, Any] | None,
               eval_command: str | None, training_command: str | None = None) -> dict[str, Any]:
    """The new metadata: ``meta`` with card, expected scan and evaluation filled in."""
    out = dict(meta)
    card = dict(out.get("card") or {})
    card.update(preset["card"])
    training = out.get("training") or {}
    if training_command or training.get("command"):
        # a model trained in stages records every stage (the checkpoint knows only its last)
        card["training_command"] = training_command or training["command"]
    if report is not None:
        card["validation_dice"] = dice_from_eval(report)
        out["evaluation"] = {
            "command": eval_command,
            "protocol": report.get("protocol"),
            "data": report.get("data"),
            "num_cases": report["summary"].get("num_cases"),
            "mean_hd95": report["summary"]["mean"].get("hd95"),
        }
    out["card"] = card
    out["expected_scan"] = preset["expected_scan"].to_metadata()
    if preset.get("normalization"):
        out["normalization"] = dict(preset["normalization"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--eval", type=Path, help="l2gnet evaluate --out report (validation Dice)")
    p.add_argument("--eval-command", help="the evaluate command line, recorded as given")
    p.add_argument("--training-command", help="the training command(s), recorded as given "
                   "(default: the command in the checkpoint's training record)")
    args = p.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        print(f"error: {args.out} exists: pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        tensors, meta = read_checkpoint(args.checkpoint)
        report = json.loads(args.eval.read_text()) if args.eval else None
        new_meta = build_card(meta, PRESETS[args.preset], report, args.eval_command,
                              args.training_command)
        CheckpointMeta.from_dict(new_meta, source=f"card for {args.out}")  # what loaders read
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with atomic_write_path(args.out) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(new_meta)})
    print(json.dumps({"out": str(args.out), "bytes": args.out.stat().st_size,
                      "card": new_meta["card"], "expected_scan": new_meta["expected_scan"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
