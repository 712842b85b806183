"""One fine-tune round through the docked Fine-tune panel, as a user runs it: how long it takes
and how busy it keeps the viewer, per child thread count and plot redraw interval.

Each configuration runs in its own process: a real napari viewer (Xvfb), the real CT of
``../shared/data/ct_abdomen`` opened with the plugin's reader, segmented with the demo model
through the Segment panel, six slices corrected through paint events (the reference labels),
the Fine-tune panel docked through the manifest, Start clicked with the default settings,
until the run ends. Printed per configuration (one JSON line): wall seconds of the run, the
viewer process's own CPU seconds during it (Qt, matplotlib, polling: what the run competes
with), and the event loop's delays (a 20 ms timer: median, 99th percentile, max). The
configurations alternate (``--repeats``) so a shared machine's load spreads over all of them;
compare them within one invocation.

    xvfb-run -a python benchmarks/finetune_panel_load.py --threads 1 2 --redraw-ms 0 1000

``--redraw-ms 0`` redraws the live plot at every poll (200 ms), as the panel did before the
throttle; ``--threads`` sets the child's torch threads (the panel's default: all cores but
one, at least one).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ct_abdomen"
DEMO = ROOT / "napari_l2gnet" / "resources" / "demo_l2gnet.safetensors"
CORRECTED = (1, 6, 12, 17, 23, 28)


def one_round(threads: int | None, redraw_ms: int) -> dict:
    """The round in this process (called by the child invocation)."""
    import napari
    import numpy as np
    from qtpy.QtCore import QEventLoop, QTimer

    import napari_l2gnet.widgets._training_plot as plot_module
    import napari_l2gnet.widgets.finetune as panel_module
    from napari_l2gnet.testing import (
        dock,
        dock_segment,
        open_scan,
        paint_like,
        process_events_until,
    )
    from scan_io.volume import load_scan

    plot_module.REDRAW_MS = redraw_ms
    if threads is not None:
        prepare = panel_module.prepare

        def with_threads(form):
            job, out, extras = prepare(form)
            job.threads = threads
            return job, out, extras

        panel_module.prepare = with_threads
    os.environ["L2GNET_ANNOTATION_STORE"] = tempfile.mkdtemp(prefix="l2gnet-bench-")
    viewer = napari.Viewer(show=True)
    image = open_scan(viewer, DATA / "example_ct_sm.nii.gz")
    segment = dock_segment(viewer, DEMO)
    segment.run_button.click()
    process_events_until(lambda: segment.worker is None, 600)
    labels = viewer.layers[segment.last_layer.name]
    paint_like(labels, load_scan(DATA / "example_seg_synapse8.nii.gz", labels=True).data,
               CORRECTED)
    panel = dock(viewer, "Fine-tune")
    panel.image_combo.setCurrentText(image.name)
    panel.labels_combo.setCurrentText(labels.name)
    process_events_until()

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(tick)
    loop = QEventLoop()  # Qt's own event loop, as in the napari app (no polling from here)
    done = QTimer()
    done.setInterval(250)
    done.timeout.connect(lambda: None if panel.is_running() else loop.quit())
    cpu0, t0 = os.times(), time.perf_counter()
    panel.start_button.click()
    last[0] = time.perf_counter()
    timer.start()
    done.start()
    loop.exec()
    timer.stop()
    done.stop()
    seconds, cpu1 = time.perf_counter() - t0, os.times()
    report = panel.last_report
    g = np.asarray(gaps[1:]) * 1000
    out = {"child_threads": threads, "redraw_ms": redraw_ms, "seconds": round(seconds, 1),
           "viewer_cpu_seconds": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
                                       1),
           "event_loop_ms": {"median": round(float(np.median(g)), 1),
                             "p99": round(float(np.percentile(g, 99)), 1),
                             "max": round(float(g.max()), 1)},
           "steps": report.history[-1].get("step") if report and report.history else None,
           "corrected_dice_after": round(report.corrected_dice_after["mean"], 4)
           if report else None,
           "load_after": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}
    panel.shutdown()
    viewer.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[0],
                   help="child torch threads (0: the panel's default)")
    p.add_argument("--redraw-ms", type=int, nargs="+", default=[1000])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", help="also append the JSON lines to this file")
    p.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # the child's run
    args = p.parse_args()
    if args.one:
        threads, redraw = args.one
        print("RESULT " + json.dumps(one_round(threads or None, redraw)), flush=True)
        return 0
    if not DATA.is_dir():
        print(f"{DATA} is missing: this benchmark needs ../shared/data", file=sys.stderr)
        return 2
    configs = list(itertools.product(args.threads, args.redraw_ms)) * args.repeats
    for threads, redraw in configs:
        run = subprocess.run([sys.executable, __file__, "--one", str(threads), str(redraw)],
                             capture_output=True, text=True, cwd=ROOT)
        lines = [line[7:] for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        if run.returncode or not lines:
            print(run.stderr[-2000:], file=sys.stderr)
            return 1
        print(lines[0], flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(lines[0] + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
