"""Make docs/screenshots/finetune.png: the Fine-tune panel after a run on a real CT.

What a user meets: the real abdominal CT of ``../shared/data/ct_abdomen`` (122 x 101 x 30,
3 mm) opened with the plugin's reader, segmented with the shipped demo model through the
Segment panel (the demo model was trained on phantoms and misses this scan), six slices
"corrected" (1, 6, 12, 17, 23, 28, as in docs/results-teaching.md) by copying the reference
labels beside the scan (TotalSegmentator's, standing in for a radiologist's corrections) into
the result layer with paint events, then Fine-tune with its default settings (980 steps
in 128-pixel windows; about 5 CPU minutes) and a screenshot of the whole window with the
panel scrolled to its result:
per-class Dice on the corrected slices before and after (a painted class it did not learn,
below 0.5, would be red with what to do; on this run none is), and Accept. The panels are
docked as the Plugins menu does; the annotation store is a temporary folder.
``--where-next`` makes docs/screenshots/finetune_where_to_correct_next.png instead: slices
10-15 corrected (the middle-third choice), *Rank slices to correct next* pressed and the
list's first entry clicked, no run: the count line's note and the list name the middle of the
labelled slices below and above the corrections first, then the most uncertain slices
(``training.finetuning.next_slices``). From the repository root:

    OMP_NUM_THREADS=2 nice xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python \
        docs/screenshots/make_finetune_screenshot.py [--where-next]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import napari
import numpy as np

from napari_l2gnet.testing import (
    dock,
    dock_segment,
    open_scan,
    paint_like,
    process_events_until,
)
from scan_io.volume import load_scan

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "ct_abdomen"
SCAN = DATA / "example_ct_sm.nii.gz"
REFERENCE = DATA / "example_seg_synapse8.nii.gz"  # the "*label*"/seg file beside the scan
DEMO = ROOT / "napari_l2gnet" / "resources" / "demo_l2gnet.safetensors"
CORRECTED = (1, 6, 12, 17, 23, 28)  # the slice choice of docs/results-teaching.md
MIDDLE = range(10, 16)  # the middle-third choice, for --where-next
OUT = Path(__file__).resolve().parent / "finetune.png"
OUT_WHERE_NEXT = Path(__file__).resolve().parent / "finetune_where_to_correct_next.png"


def segmented_ct(viewer):
    """Open the real CT, segment it with the demo model through the Segment panel (then
    closed); the image layer and the result labels layer, or None with a message."""
    image = open_scan(viewer, SCAN)
    segment = dock_segment(viewer, DEMO)
    segment.run_button.click()
    if not process_events_until(lambda: segment.worker is None, 600) or segment.last_layer is None:
        print("segment failed:", segment.status.text(), file=sys.stderr)
        return None
    labels = viewer.layers[segment.last_layer.name]
    viewer.window.remove_dock_widget(segment.parent() if segment.parent() else segment)
    process_events_until()
    return image, labels


def paint_reference(labels, slices) -> bool:
    """The user's corrections: the reference labels on ``slices``, through paint events."""
    reference = load_scan(REFERENCE, labels=True).data
    if reference.shape != np.asarray(labels.data).shape:
        print(f"reference {reference.shape} != result {np.shape(labels.data)}", file=sys.stderr)
        return False
    paint_like(labels, reference, slices)
    return True


def save_png(viewer, out: Path) -> None:
    """The whole window, in 128 colours (a quarter of the bytes, no visible difference)."""
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    Image.open(out).convert("RGB").quantize(colors=128).save(out, optimize=True)


def main(argv: list[str]) -> int:
    if not SCAN.is_file():
        print(f"{SCAN} is missing: this script needs ../shared/data", file=sys.stderr)
        return 2
    where_next = "--where-next" in argv
    tmp = Path(tempfile.mkdtemp(prefix="l2gnet-shot-"))
    os.environ["L2GNET_ANNOTATION_STORE"] = str(tmp / "store")  # not the user's own

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    found = segmented_ct(viewer)
    if found is None or not paint_reference(found[1], MIDDLE if where_next else CORRECTED):
        return 1
    image, labels = found
    widget = dock(viewer, "Fine-tune")
    widget.image_combo.setCurrentText(image.name)
    widget.labels_combo.setCurrentText(labels.name)
    if where_next:
        return _where_next(viewer, widget)
    widget.refresh_changes()
    process_events_until()
    viewer.dims.set_point(0, 12 * image.scale[0])
    widget.start_button.click()
    if not widget.is_running() and widget.last_report is None:
        print("start failed:", widget.status.text(), file=sys.stderr)
        return 1
    if not process_events_until(lambda: not widget.is_running(), 1800) or widget.last_error:
        print("run failed:", widget.status.text(), widget.last_error, file=sys.stderr)
        return 1
    process_events_until(seconds=1.0)
    try:  # close the "Done" toast so that it does not cover the scan (private napari API)
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        process_events_until()
    except Exception:  # noqa: BLE001 - the screenshot is still useful with the toast
        pass
    widget.scroll.ensureWidgetVisible(widget.result_label)  # Accept is below, always in view
    process_events_until()
    save_png(viewer, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB); status: {widget.status.text()}")
    viewer.close()
    return 0


def _where_next(viewer, widget) -> int:
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
    save_png(viewer, OUT_WHERE_NEXT)
    print(f"wrote {OUT_WHERE_NEXT} ({OUT_WHERE_NEXT.stat().st_size // 1024} KB)")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
