"""Make docs/screenshots/finetune.png: the Fine-tune widget docked after a short run.

A generated abdominal phantom, a "model output" that misses part of the liver and spleen (a
tiny, untrained L2GNet checkpoint stands in for the model), the user's corrections on three
slices, 30 epochs (one step each) of fine-tuning on the CPU (~30 s), then a screenshot of the
whole window with the panel scrolled to its result (per-class Dice on the corrected slices,
unlearned classes in red). The panel is docked as the Plugins menu does; the annotation store
is a temporary folder. From the repository root:

    xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python \
        docs/screenshots/make_finetune_screenshot.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_l2gnet._layer_record import META_KEY, LayerRecord
from napari_l2gnet._session import session_for
from napari_l2gnet.testing import dock
from src_model import build_model, save_checkpoint
from src_model.testing import tiny_config
from training.data.phantom import make_phantom

OUT = Path(__file__).resolve().parent / "finetune.png"


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="l2gnet-shot-"))
    os.environ["L2GNET_ANNOTATION_STORE"] = str(tmp / "store")  # not the user's own
    ph = make_phantom(seed=0, shape=(16, 96, 96))
    names = list(ph.class_names)
    model = build_model("l2gnet", len(names), **tiny_config("l2gnet"))
    ckpt = save_checkpoint(tmp / "demo_tiny.safetensors", model, {
        "class_names": names, "class_colors": [list(c) for c in ph.class_colors],
        "input_size": [96, 96], "normalization": {"kind": "ct_window", "low": -125.0,
                                                  "high": 275.0}})

    # what "the model" drew: the truth with the liver (5) and spleen (7) partly missed
    model_labels = ph.labels.copy()
    cut = np.zeros_like(model_labels, bool)
    cut[:, :, : 96 // 3] = True
    model_labels[(model_labels == 5) & cut] = 0
    model_labels[(model_labels == 7) & ~cut] = 0

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 1080)
    session_for(viewer).set_checkpoint(ckpt)
    viewer.add_image(ph.image, name="phantom CT", scale=ph.spacing, colormap="gray",
                     contrast_limits=(-160, 240))
    labels = viewer.add_labels(
        model_labels.copy(), name="phantom CT [demo_tiny]", scale=ph.spacing, opacity=0.5,
        metadata={META_KEY: LayerRecord(
            role="segmentation", source_image="phantom CT", checkpoint=str(ckpt), axis=0,
            class_names=names, model_labels=model_labels.copy()).to_metadata()})
    widget = dock(viewer, "Fine-tune")

    # the user's corrections: restore the truth on three slices, through paint events
    for z in (6, 8, 10):
        missing = np.argwhere(ph.labels[z] != model_labels[z])
        for value in (5, 7):
            pts = missing[ph.labels[z][tuple(missing.T)] == value]
            labels.data_setitem((np.full(len(pts), z), pts[:, 0], pts[:, 1]), value)
    viewer.dims.set_point(0, 8 * ph.spacing[0])
    widget.epochs_spin.setValue(30)
    widget.batch_spin.setValue(3)
    widget.lr_spin.setValue(3e-3)
    widget.refresh_changes()
    if not widget.start():
        print("start failed:", widget.status.text(), file=sys.stderr)
        return 1
    deadline = time.monotonic() + 300
    while widget.is_running() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    if widget.is_running() or widget.last_error:
        print("run failed:", widget.status.text(), widget.last_error, file=sys.stderr)
        return 1
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    try:  # close the "Done" toast so that it does not cover the scan (private napari API)
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        for _ in range(10):
            QApplication.processEvents()
            time.sleep(0.05)
    except Exception:  # noqa: BLE001 - the screenshot is still useful with the toast
        pass
    widget.scroll.ensureWidgetVisible(widget.result_label)  # Accept is below, always in view
    for _ in range(10):
        QApplication.processEvents()
        time.sleep(0.05)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False)
    from PIL import Image  # 128 colours: a quarter of the bytes, no visible difference

    Image.open(OUT).convert("RGB").quantize(colors=128).save(OUT, optimize=True)
    print(f"wrote {OUT}; status: {widget.status.text()}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
