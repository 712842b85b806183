"""Make docs/screenshots/measure.png: a real ACDC cine segmented frame by frame and measured.

Writes a two-frame cine (end-systole, end-diastole of a validation patient the model never
saw in training; 1.5625 x 1.5625 x 10 mm) as a 4-D NIfTI in a temporary folder, opens it
with the plugin's reader (a time slider appears), segments every frame with the shipped
cardiac model through the Segment panel, and docks Measure on the result: the LV and RV
volume curve with ED and ES marked, the cardiac indices and the volume table. Prints one
JSON line with the indices. From the repository root:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python \
        docs/screenshots/make_measure_screenshot.py [--patient patient002]

The ACDC images are read from the shared data folder and never stored in the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import h5py
import napari
import nibabel as nib
import numpy as np

import napari_l2gnet.widgets  # noqa: F401  (guards triton before any GL context)
from napari_l2gnet.models import ACDC_MRI_CHECKPOINT
from napari_l2gnet.testing import dock, open_scan, process_events_until
from scan_io.nifti import affine_from_scale

REPO = Path(__file__).resolve().parents[2]
VAL = REPO / ".." / "shared" / "data" / "acdc" / "val_volumes"
OUT = Path(__file__).resolve().parent / "measure.png"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patient", default="patient002")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    frames = []
    for frame in ("frame02", "frame01"):  # ES first: the panel must find ED itself
        with h5py.File(VAL / f"{args.patient}_{frame}.h5") as f:
            frames.append((f["image"][:] * 1000).astype(np.int16))  # MRI-like units
    cine = np.stack(frames)  # (t, slices, rows, columns)
    folder = Path(tempfile.mkdtemp())
    path = folder / f"{args.patient}_cine.nii.gz"
    img = nib.Nifti1Image(np.ascontiguousarray(cine.transpose(3, 2, 1, 0)),
                          affine_from_scale((10.0, 1.5625, 1.5625)))
    img.header.set_xyzt_units("mm", "msec")
    nib.save(img, str(path))

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1550, 980)
    image = open_scan(viewer, path)
    segment_dock, segment = viewer.window.add_plugin_dock_widget("napari-l2gnet", "Segment")
    segment.set_checkpoint(ACDC_MRI_CHECKPOINT)
    segment.device_combo.setCurrentText("cpu")
    segment.explain_check.setChecked(False)
    segment.run()
    process_events_until(lambda: segment.worker is None, seconds=600)
    labels = segment.last_layer
    if labels is None:
        print("segmentation failed:", segment.status.text(), file=sys.stderr)
        return 1
    segment_dock.hide()  # done with it: Measure gets the panel's full height
    panel = dock(viewer, "Measure")
    panel.labels_combo.setCurrentText(labels.name)
    panel.ed_combo.setCurrentText(labels.name)
    heart = np.flatnonzero((np.asarray(labels.data)[0] > 0).any(axis=(1, 2)))
    viewer.dims.set_current_step(1, int(heart[len(heart) // 2]))  # mid-ventricular slice
    viewer.dims.set_current_step(0, panel.ed_frame.value())  # show end-diastole
    viewer.layers.selection.active = labels
    del image
    viewer.reset_view()
    process_events_until(seconds=1.5)
    viewer.window.screenshot(str(args.out), canvas_only=False)
    print(json.dumps({"patient": args.patient, "ed_frame": panel.ed_frame.value(),
                      "es_frame": panel.es_frame.value(), **panel.indices.to_dict(),
                      "out": str(args.out)}))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
