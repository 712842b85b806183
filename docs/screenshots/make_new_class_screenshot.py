"""Make docs/screenshots/new_class.png: the Fine-tune panel offering to add a painted label.

An ACDC validation volume (../shared/data/acdc/val_volumes) with a bright disc inserted away
from the heart (``benchmarks/new_class.py``), segmented by the shipped cardiac model in the
Segment panel; the disc painted with label 4 on three slices through the Labels layer; the
Fine-tune panel (docked as the Plugins menu does) shows its New classes box, with the name
"disc" typed, before Start. No training: it takes seconds. From the repository root:

    xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python \\
        docs/screenshots/make_new_class_screenshot.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import napari
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from new_class import CHECKPOINT, disc_site, insert_disc, load_patients  # noqa: E402

from napari_l2gnet._session import session_for  # noqa: E402
from napari_l2gnet.testing import dock, process_events_until  # noqa: E402

OUT = Path(__file__).resolve().parent / "new_class.png"


def main() -> int:
    os.environ["L2GNET_ANNOTATION_STORE"] = tempfile.mkdtemp(prefix="l2gnet-shot-store-")
    rng = np.random.default_rng(0)
    frames = load_patients()["patient028"]
    name, image, _ = frames[0]
    image, disc = insert_disc(image, disc_site(frames, rng), rng)

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 1080)
    session_for(viewer).set_checkpoint(CHECKPOINT)
    viewer.add_image(image, name=name, colormap="gray")
    segment = dock(viewer, "Segment")
    segment.set_checkpoint(str(CHECKPOINT))
    segment.device_combo.setCurrentText("cpu")
    segment.run()
    process_events_until(lambda: segment.worker is None, seconds=300)
    labels = segment.last_layer
    if labels is None:
        print("segmentation failed:", segment.status.text(), file=sys.stderr)
        return 1
    panel = dock(viewer, "Fine-tune")
    for z in (3, 4, 5):  # the user paints the disc with label 4, which the model lacks
        pts = np.argwhere(disc[z])
        labels.data_setitem((np.full(len(pts), z), pts[:, 0], pts[:, 1]), 4)
    process_events_until()
    panel.update_count()
    panel.new_classes.set_name(4, "disc")
    viewer.dims.set_point(0, 4)
    process_events_until()
    panel.scroll.ensureWidgetVisible(panel.new_classes)
    process_events_until()
    viewer.screenshot(str(OUT), canvas_only=False)
    from PIL import Image  # 128 colours: a quarter of the bytes, no visible difference

    Image.open(OUT).convert("RGB").quantize(colors=128).save(OUT, optimize=True)
    print(f"wrote {OUT}; {panel.new_classes.note.text()}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
