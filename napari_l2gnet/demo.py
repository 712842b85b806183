"""``make demo``: the whole loop on the shipped sample, offline.

Opens napari with the generated abdominal CT, docks the Segment, Explain and Fine-tune
widgets, segments the scan with the shipped L2GNet checkpoint (through the Segment widget,
as a user would), and shows the transport-plan overlays. With ``--headless`` (what ``make
demo`` passes when there is no display; it runs under Xvfb) it also saves a screenshot and
the segmentation, prints Dice per organ against the phantom's truth, and exits.

    python -m napari_l2gnet.demo [--headless] [--out-dir .] [--checkpoint C]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import napari_l2gnet.widgets  # noqa: F401  (guards triton before any GL context; see there)
from napari_l2gnet._layer_record import read_record
from napari_l2gnet.testing import process_events_until
from napari_l2gnet.widgets.segment import run_sentence  # the panel's own status sentence


def dice_report(pred: np.ndarray, truth: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Dice per organ (the papers' protocol) and their mean."""
    from training.evaluation.metrics import score_case

    rows = score_case(pred, truth, len(class_names), protocol="transunet")
    out = {class_names[r["class"]]: float(r["dice"]) for r in rows}
    out["mean"] = float(np.mean(list(out.values())))
    return out


def organ_bucket(buckets_r: np.ndarray, labels_on_grid: np.ndarray, t: int) -> int:
    """The bucket that most organ (not background) tokens send most of their mass to.

    ``buckets_r`` (S, h, w): each token's first-choice bucket of one reference (the
    explanation's ``buckets``), ``labels_on_grid`` (S, h, w), ``t`` buckets.
    """
    on_organs = labels_on_grid.reshape(-1) > 0
    if not on_organs.any():
        return 0
    return int(np.bincount(buckets_r.reshape(-1)[on_organs], minlength=t).argmax())


def clearest_reference(buckets: np.ndarray, labels_on_grid: np.ndarray, t: int) -> int:
    """The reference whose organ bucket (``organ_bucket``) holds the largest share of organ
    tokens among the tokens it is first choice for: the reference to show first.

    ``buckets`` (S, q, h, w) first-choice buckets, ``labels_on_grid`` (S, h, w).
    """
    on_organs = labels_on_grid.reshape(-1) > 0
    purity = []
    for r in range(buckets.shape[1]):
        mine = buckets[:, r].reshape(-1) == organ_bucket(buckets[:, r], labels_on_grid, t)
        purity.append(on_organs[mine].mean() if mine.any() else 0.0)
    return int(np.argmax(purity))


def show_clearest_organ_bucket(explain, layer) -> tuple[int, int] | None:
    """Point ``explain`` (an ``ExplainWidget``) at the bucket that gathers the organs, in the
    reference where that bucket is the most organ-pure, and show its layers over ``layer``'s
    scan: ``(reference, bucket)``, or ``None`` when the segmentation kept no plans."""
    from .widgets.explain import labels_at_cells

    explain.seg_combo.refresh()
    exp = read_record(layer).explanation
    if exp is None or exp.plans is None:
        return None
    grid = labels_at_cells(np.asarray(layer.data), 0, exp.plans.shape[2:4], exp.grid_scale)
    t = exp.plans.shape[-1]
    r = clearest_reference(exp.buckets, grid, t)
    j = organ_bucket(exp.buckets[:, r], grid, t)
    explain.ref_spin.setValue(r)
    explain.bucket_spin.setValue(j)
    explain.show_layers()
    return r, j


def reserve_outputs(out_dir: Path) -> tuple[Path, Path]:
    """Claim fresh names for the screenshot and the labels: ``demo.png`` and
    ``demo_labels.nii.gz``, or ``demo-N.png`` / ``demo_labels-N.nii.gz`` with the first N for
    which neither exists. Each is created empty and exclusively (``open(..., "x")``), so a
    file this run did not write is never replaced, even one that appears while it runs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        tag = f"-{n}" if n else ""
        png, labels = out_dir / f"demo{tag}.png", out_dir / f"demo_labels{tag}.nii.gz"
        if png.exists() or labels.exists():
            continue
        try:
            png.open("x").close()
        except FileExistsError:
            continue
        try:
            labels.open("x").close()
        except FileExistsError:
            png.unlink()
            continue
        return png, labels
    raise FileExistsError(f"{out_dir} already holds demo.png .. demo-999.png: choose another "
                          "--out-dir")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_l2gnet.demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--headless", action="store_true",
                        help="save demo.png and demo_labels.nii.gz (demo-N.png and "
                        "demo_labels-N.nii.gz when those exist: nothing is replaced), print "
                        "Dice, exit")
    parser.add_argument("--out-dir", default=".", help="where headless outputs go")
    parser.add_argument("--checkpoint", help="default: the shipped demo checkpoint")
    args = parser.parse_args(argv)

    from ._session import default_checkpoint

    checkpoint = args.checkpoint or default_checkpoint()
    if checkpoint is None or not Path(checkpoint).is_file():
        print("The demo checkpoint napari_l2gnet/resources/demo_l2gnet.safetensors is missing; "
              "reinstall the package or pass --checkpoint", file=sys.stderr)
        return 2

    outputs = None
    if args.headless:  # names claimed first: nothing the user has is ever replaced
        try:
            outputs = reserve_outputs(Path(args.out_dir))
        except OSError as err:
            print(f"demo: cannot write in {args.out_dir}: {err}", file=sys.stderr)
            return 2
        try:
            return _run(args, checkpoint, outputs)
        finally:  # a claimed name the run could not fill is not left behind empty
            for path in outputs:
                if path.is_file() and path.stat().st_size == 0:
                    path.unlink()
    return _run(args, checkpoint, outputs)


def _run(args: argparse.Namespace, checkpoint: str | Path,
         outputs: tuple[Path, Path] | None) -> int:
    """The demo itself; ``outputs`` (screenshot, labels) are claimed when headless."""
    import napari

    from ._sample import sample_abdomen_ct
    from ._writer import write_labels

    t0 = time.perf_counter()
    viewer = napari.Viewer(title="napari-l2gnet demo", show=True)
    viewer.window._qt_window.resize(1600, 1000)
    layers = {}
    for data, kwargs, kind in sample_abdomen_ct():
        layers[kind] = getattr(viewer, f"add_{kind}")(data, **kwargs)
    image, truth = layers["image"], layers["labels"]

    # docked as the Plugins menu does (napari hands the panels its public proxies)
    _, segment = viewer.window.add_plugin_dock_widget("napari-l2gnet", "Segment")
    explain_dock, explain = viewer.window.add_plugin_dock_widget("napari-l2gnet", "Explain")
    _, finetune = viewer.window.add_plugin_dock_widget("napari-l2gnet", "Fine-tune",
                                                       tabify=True)

    segment.set_checkpoint(checkpoint)
    t_segment = time.perf_counter()
    segment.run()
    if not process_events_until(lambda: segment.worker is None, seconds=240):
        raise TimeoutError("the demo's segmentation did not finish in time")
    segment_seconds = time.perf_counter() - t_segment
    seg_layer = segment.last_layer
    if seg_layer is None:
        print(f"Segmentation failed: {segment.status.text()}", file=sys.stderr)
        return 1

    finetune.labels_combo.setCurrentText(seg_layer.name)  # ready for corrections
    if show_clearest_organ_bucket(explain, seg_layer) is not None:
        explain_dock.raise_()
    mid = image.data.shape[0] * 0.6
    viewer.dims.set_point(0, mid * image.scale[0])
    viewer.layers.selection.active = seg_layer
    record = read_record(seg_layer)
    report = dice_report(np.asarray(seg_layer.data), np.asarray(truth.data),
                         record.class_names)
    print("Dice against the phantom's truth (TransUNet protocol):")
    for name, value in report.items():
        print(f"  {name:<14} {value:.4f}")
    print(run_sentence(seg_layer.data.shape[record.axis], segment.last_device or "cpu",
                       segment_seconds))

    if outputs is None:
        napari.run()
        return 0
    png, labels_path = outputs  # claimed by this run (reserve_outputs): ours to fill
    process_events_until(seconds=0.2)  # the docks settle: a wrapped line takes a few passes
    viewer.screenshot(str(png), canvas_only=False)
    write_labels(str(labels_path), np.asarray(seg_layer.data),
                 {"metadata": seg_layer.metadata, "scale": seg_layer.scale,
                  "translate": seg_layer.translate, "name": seg_layer.name})
    print(f"wrote {png} and {labels_path} in {time.perf_counter() - t0:.1f} s")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
