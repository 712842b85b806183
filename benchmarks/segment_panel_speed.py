"""The Segment panel against ``l2gnet predict`` on the same scan and checkpoint, in one run.

Times, side by side and alternating, on one machine and in one process:

* ``predict``: ``l2gnet predict SCAN --checkpoint C --out OUT`` run in-process through
  ``training.cli.main`` (read the scan, segment it, write the labels; the model comes from the
  shared cached handle after the warm-up, as a long-lived process would have it);
* ``panel``: the Segment panel docked through the manifest in a real napari viewer (Xvfb),
  the scan opened with the plugin's reader, from ``run()`` (the click) until the worker has
  finished and the Labels layer is in the viewer, the Qt event loop turning all the while.

Both run on the CPU with the same batch size and the panel's default options (plans for
Explain ticked, post-processing as the model chose). The first round of each is a warm-up
(model built, caches filled) and is not counted. One JSON line per round, then a summary with
the median ratio ``panel_s / predict_s``; quote the ratio, not the seconds, on a shared machine.

    xvfb-run -a python benchmarks/segment_panel_speed.py                 # example_ct_sm
    xvfb-run -a python benchmarks/segment_panel_speed.py --slices 112    # tiled to 112 slices
    xvfb-run -a python benchmarks/segment_panel_speed.py --checkpoint \\
        napari_l2gnet/resources/acdc_cine_mri_l2gnet.safetensors

``--slices N`` tiles the scan along its slice axis to N slices (a longer synthetic volume on
the same grid) to show how both scale with the slice count.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import napari_l2gnet.widgets  # noqa: E402,F401  (guards triton before any GL context)

DEFAULT_SCAN = ROOT / ".." / "shared" / "data" / "ct_abdomen" / "example_ct_sm.nii.gz"
DEFAULT_CHECKPOINT = ROOT / "napari_l2gnet" / "resources" / "demo_l2gnet.safetensors"


def tiled_scan(scan: Path, slices: int, folder: Path) -> Path:
    """``scan`` tiled (mirrored back and forth) along its slice axis to ``slices`` slices,
    written as a NIfTI with the same voxel size: a longer volume of the same anatomy."""
    from napari_l2gnet.testing import write_scan
    from scan_io.volume import load_scan

    loaded = load_scan(scan)
    data = np.asarray(loaded.data)
    period = np.concatenate([data, data[::-1]])
    reps = -(-slices // len(period))
    longer = np.concatenate([period] * reps)[:slices]
    return write_scan(folder / f"tiled_{slices}.nii.gz", longer, spacing=loaded.spacing)


def time_predict(scan: Path, checkpoint: Path, out: Path, batch: str) -> float:
    """Seconds for ``l2gnet predict`` in-process (read, segment, write)."""
    from training.cli import main

    if out.exists():
        out.unlink()
    quiet = io.StringIO()  # its progress bar and the path it prints
    start = time.perf_counter()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        code = main(["predict", str(scan), "--checkpoint", str(checkpoint), "--out",
                     str(out), "--device", "cpu", "--batch-size", batch])
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"l2gnet predict failed with status {code}")
    return seconds


class Panel:
    """A viewer with the scan open and the Segment panel docked, as a user has them."""

    def __init__(self, scan: Path, checkpoint: Path, batch: int, explain: bool) -> None:
        import napari
        from qtpy.QtWidgets import QApplication

        from napari_l2gnet.testing import dock_segment, open_scan

        self.viewer = napari.Viewer(show=True)
        self.viewer.window._qt_window.resize(1600, 1000)
        self.app = QApplication.instance()
        self.image = open_scan(self.viewer, scan)
        self.widget = dock_segment(self.viewer, checkpoint)
        self.widget.batch_spin.setValue(batch)
        self.widget.explain_check.setChecked(explain)
        self.app.processEvents()

    def time_segment(self, timeout: float = 900.0) -> tuple[float, int]:
        """Seconds from the click to the finished worker with the Labels layer added, and
        the number of progress updates the worker sent."""
        from qtpy.QtCore import QEventLoop, QTimer

        widget, viewer = self.widget, self.viewer
        for layer in [lyr for lyr in viewer.layers if lyr.name != self.image.name]:
            viewer.layers.remove(layer)  # every round adds its layer afresh
        self.app.processEvents()
        widget.last_layer = None
        updates: list = []
        start = time.perf_counter()
        widget.run()
        worker = widget.worker
        if worker is None:
            raise SystemExit(f"the panel did not start: {widget.status.text()}")
        worker.yielded.connect(updates.append)
        # napari's own event loop would be running: wait in a Qt event loop (idle between
        # events, as the application's is) until the worker's finished signal, after which
        # the panel has added the layer (returned comes first)
        loop = QEventLoop()
        worker.finished.connect(loop.quit)
        QTimer.singleShot(int(timeout * 1000), loop.quit)
        if widget.worker is not None:
            loop.exec_()
        seconds = time.perf_counter() - start
        if widget.worker is not None:
            raise SystemExit("the panel did not finish in time")
        if widget.last_layer is None:
            raise SystemExit(f"the panel added no layer: {widget.status.text()}")
        return seconds, len(updates)

    def close(self) -> None:
        self.viewer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=Path, default=DEFAULT_SCAN)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--slices", type=int, default=0,
                        help="tile the scan to this many slices (0: as it is)")
    parser.add_argument("--repeats", type=int, default=3, help="counted rounds of each")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="slices per batch for both (4 is 'auto' on the CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-explain", action="store_true",
                        help="untick the panel's 'keep ... for Explain' box (its default: on)")
    args = parser.parse_args()
    if not args.scan.is_file():
        print(f"no scan at {args.scan}: pass --scan (the project's data is in ../shared/data)",
              file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scan = tiled_scan(args.scan, args.slices, folder) if args.slices else args.scan
        panel = Panel(scan, args.checkpoint, args.batch_size, explain=not args.no_explain)
        n_slices = int(np.asarray(panel.image.data).shape[panel.widget.axis_spin.value()])
        common = {"scan": args.scan.name, "slices": n_slices, "checkpoint": args.checkpoint.name,
                  "batch_size": args.batch_size, "threads": args.threads,
                  "explain": not args.no_explain,
                  "machine": platform.node()}
        ratios = []
        try:
            for rnd in range(args.repeats + 1):  # round 0: warm-up, not counted
                out = folder / "predicted.nii.gz"
                # alternate which goes first, so neither always meets a colder cache
                if rnd % 2:
                    panel_s, updates = panel.time_segment()
                    predict_s = time_predict(scan, args.checkpoint, out, str(args.batch_size))
                else:
                    predict_s = time_predict(scan, args.checkpoint, out, str(args.batch_size))
                    panel_s, updates = panel.time_segment()
                row = {**common, "round": rnd, "warm_up": rnd == 0,
                       "predict_s": round(predict_s, 3), "panel_s": round(panel_s, 3),
                       "ratio": round(panel_s / predict_s, 3), "progress_updates": updates}
                print(json.dumps(row), flush=True)
                if rnd:
                    ratios.append(panel_s / predict_s)
        finally:
            panel.close()
    print(json.dumps({**common, "summary": True, "rounds": len(ratios),
                      "median_ratio": round(statistics.median(ratios), 3),
                      "min_ratio": round(min(ratios), 3), "max_ratio": round(max(ratios), 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
