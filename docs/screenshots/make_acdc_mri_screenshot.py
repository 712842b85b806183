"""Make docs/screenshots/acdc_mri.png: the shipped cardiac MRI model on a real ACDC volume.

Opens an ACDC validation volume (a patient the model never saw in training) from
``../shared/data/acdc/val_volumes`` in napari, docks Segment through the plugin's manifest
(as *Plugins > L2GNet segmentation* does), picks the shipped
"ACDC cine MRI" model in its chooser, segments through the widget as a user would, and
saves the whole window: the model's labels filled, the expert's reference as outlines.
Prints one JSON line with this volume's Dice per class. From the repository root:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python \
        docs/screenshots/make_acdc_mri_screenshot.py [--case patient002_frame01]

With ``--explain`` it also docks Explain, picks the reference whose heart bucket is the
purest and that bucket (``napari_l2gnet.demo``'s rule, as ``make demo`` does) and shows its
plan over the scan, the bucket table beside it (``docs/screenshots/acdc_explain.png``).

The ACDC image is read from the shared data folder and never stored in the repository; the
screenshot shows one slice of it, as the papers' figures do.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import napari
import numpy as np

import napari_l2gnet.widgets  # noqa: F401  (guards triton before any GL context)
from napari_l2gnet._layer_record import read_record
from napari_l2gnet.demo import show_clearest_organ_bucket
from napari_l2gnet.models import ACDC_MRI_CHECKPOINT
from napari_l2gnet.testing import dock, process_events_until
from training.evaluation.metrics import score_case

REPO = Path(__file__).resolve().parents[2]
VAL = REPO / ".." / "shared" / "data" / "acdc" / "val_volumes"
OUT = Path(__file__).resolve().parent / "acdc_mri.png"
OUT_EXPLAIN = Path(__file__).resolve().parent / "acdc_explain.png"


def show_heart_bucket(viewer, pred) -> dict:
    """Dock Explain on ``pred`` and show the plan of its clearest heart bucket."""
    explain = dock(viewer, "Explain")
    r, j = show_clearest_organ_bucket(explain, pred)
    return {"reference": r, "bucket": j}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="patient002_frame01")
    p.add_argument("--checkpoint", type=Path, default=ACDC_MRI_CHECKPOINT)
    p.add_argument("--out", type=Path, default=None,
                   help=f"default: {OUT.name}, or {OUT_EXPLAIN.name} with --explain")
    p.add_argument("--explain", action="store_true",
                   help="also show the plan of the heart's clearest bucket (Explain panel)")
    args = p.parse_args(argv)
    out = args.out or (OUT_EXPLAIN if args.explain else OUT)
    with h5py.File(VAL / f"{args.case}.h5") as f:
        image, truth = f["image"][:], f["label"][:]

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    layer = viewer.add_image(image, name=f"ACDC {args.case}", colormap="gray")
    widget = dock(viewer, "Segment")
    index = widget.model_combo.findData(str(args.checkpoint))
    if index >= 0:  # the shipped model, chosen in the list as a user would
        widget.model_combo.setCurrentIndex(index)
        widget.model_combo.activated.emit(index)
    else:
        widget.set_checkpoint(args.checkpoint)
    widget.device_combo.setCurrentText("cpu")
    widget.run()
    process_events_until(lambda: widget.worker is None, seconds=600)
    pred = widget.last_layer
    if pred is None:
        print("segmentation failed:", widget.status.text(), file=sys.stderr)
        return 1
    shown = show_heart_bucket(viewer, pred) if args.explain else {}
    ref = viewer.add_labels(truth, name="expert reference (outline)", opacity=0.9)
    ref.contour = 1
    viewer.layers.selection.active = layer
    labelled = np.flatnonzero((truth > 0).any(axis=(1, 2)))
    middle = int(labelled[len(labelled) // 2])  # mid-ventricular
    viewer.dims.set_point(0, middle)
    viewer.reset_view()
    process_events_until(seconds=1.0)

    names = read_record(pred).class_names
    rows = score_case(pred.data, truth, len(names), protocol="transunet")
    dice = {names[r["class"]]: round(float(r["dice"]), 3) for r in rows}
    dice["mean"] = round(float(np.mean(list(dice.values()))), 3)
    viewer.window.screenshot(str(out), canvas_only=False)
    print(json.dumps({"case": args.case, "slice": middle, "dice": dice, **shown,
                      "status": widget.status.text(), "out": str(out)}))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
