"""Make docs/screenshots/finetune_where_to_correct_next.png: the Fine-tune panel's *Where to
correct next* list after corrections on six adjacent slices of a real CT.

What a user meets: the real abdominal CT of ``../shared/data/ct_abdomen`` opened with the
plugin's reader, segmented with the shipped demo model through the Segment panel, slices
10-15 "corrected" (the middle-third choice of docs/results-teaching.md) by copying the
reference labels into the result layer with paint events, the Fine-tune panel docked as the
Plugins menu does, *Rank slices to correct next* pressed and the list's first entry clicked:
the middle of the labelled slices below and above the corrections come first, then the most
uncertain slices (``training.finetuning.next_slices``). From the repository root:

    OMP_NUM_THREADS=2 nice xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python \
        docs/screenshots/make_where_next_screenshot.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import napari
import numpy as np

from napari_l2gnet.testing import dock, open_scan, process_events_until
from scan_io.volume import load_scan

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "ct_abdomen"
SCAN = DATA / "example_ct_sm.nii.gz"
REFERENCE = DATA / "example_seg_synapse8.nii.gz"
DEMO = ROOT / "napari_l2gnet" / "resources" / "demo_l2gnet.safetensors"
CORRECTED = range(10, 16)  # the middle-third choice of docs/results-teaching.md
OUT = Path(__file__).resolve().parent / "finetune_where_to_correct_next.png"


def main() -> int:
    if not SCAN.is_file():
        print(f"{SCAN} is missing: this script needs ../shared/data", file=sys.stderr)
        return 2
    os.environ["L2GNET_ANNOTATION_STORE"] = tempfile.mkdtemp(prefix="l2gnet-shot-")
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    image = open_scan(viewer, SCAN)
    segment = dock(viewer, "Segment")
    segment.device_combo.setCurrentText("cpu")
    segment.set_checkpoint(DEMO)
    segment.run_button.click()
    if not process_events_until(lambda: segment.worker is None, 600) or segment.last_layer is None:
        print("segment failed:", segment.status.text(), file=sys.stderr)
        return 1
    labels = viewer.layers[segment.last_layer.name]
    viewer.window.remove_dock_widget(segment.parent() if segment.parent() else segment)
    reference = load_scan(REFERENCE, labels=True).data
    for z in CORRECTED:  # the user's corrections, through paint events
        wrong = np.argwhere(np.asarray(labels.data)[z] != reference[z])
        for value in np.unique(reference[z][tuple(wrong.T)]):
            pts = wrong[reference[z][tuple(wrong.T)] == value]
            labels.data_setitem((np.full(len(pts), z), pts[:, 0], pts[:, 1]), int(value))

    widget = dock(viewer, "Fine-tune")
    widget.image_combo.setCurrentText(image.name)
    widget.labels_combo.setCurrentText(labels.name)
    widget.ranking_section.set_expanded(True)
    widget.ranking.button.click()
    if not process_events_until(lambda: bool(widget.ranking.ranked), 600):
        print("ranking failed:", widget.status.text(), file=sys.stderr)
        return 1
    for entry in widget.ranking.ranked:
        print(entry.text())
    widget.ranking.list.setCurrentRow(0)
    widget.ranking.jump_to(widget.ranking.list.item(0))
    widget.scroll.ensureWidgetVisible(widget.ranking.list)
    process_events_until(seconds=1.0)
    viewer.screenshot(str(OUT), canvas_only=False)
    from PIL import Image  # 128 colours: a quarter of the bytes, no visible difference

    Image.open(OUT).convert("RGB").quantize(colors=128).save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
