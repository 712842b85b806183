"""``l2gnet measure``: volumes per class, or cardiac function (EDV, ESV, SV, EF, Myo mass).

Three forms (docs/measure.md):

* ``l2gnet measure SCAN (--checkpoint C | --labels L) [--out v.json] [--csv v.csv]``: per
  class voxel count, volume in mL (from the affine's voxel size) and border contact.
* ``l2gnet measure --ed ED --es ES --checkpoint C`` or ``--ed-labels L1 --es-labels L2
  --class-names background,RV,Myo,LV``: LV and RV EDV/ESV/SV/EF and the myocardial mass at
  ED; ``--out`` gets exactly ``{"LV": {...}, "RV": {...}, "Myo": {"mass_g"}}``.
* ``l2gnet measure CINE.nii.gz --checkpoint C`` (or ``--labels`` a 4-D label file): every
  frame segmented, ED/ES = the frames of largest/smallest LV volume, the same indices;
  ``--csv`` gets the per-frame volumes.

Every check (inputs, grids, class names, outputs) runs before any segmentation; a problem
is one line and exit status 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import batch_size_arg


def add_parser(sub) -> None:
    p = sub.add_parser(
        "measure", help="volumes per class, or cardiac function (EDV, ESV, SV, EF, mass)",
        description="Measure a segmentation: per-class volumes of SCAN (segmented with "
        "--checkpoint, or given as --labels), the cardiac indices of an ED and an ES frame "
        "(--ed/--es, or --ed-labels/--es-labels), or of a 4-D cine NIfTI (x, y, z, t). "
        "Results are printed; --out writes JSON, --csv a table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("scan", nargs="?", help="a 3-D scan (NIfTI or DICOM series) or a 4-D cine "
                   "NIfTI (x, y, z, t)")
    p.add_argument("--checkpoint", help="model that segments the scan(s)")
    p.add_argument("--labels", help="a label map (3-D, or 4-D cine) instead of a model")
    p.add_argument("--ed", help="end-diastolic scan (with --es and --checkpoint)")
    p.add_argument("--es", help="end-systolic scan, same grid as --ed")
    p.add_argument("--ed-labels", help="end-diastolic label map (with --es-labels)")
    p.add_argument("--es-labels", help="end-systolic label map, same grid as --ed-labels")
    p.add_argument("--class-names", help="names of the label values, background first, comma "
                   "separated (e.g. background,RV,Myo,LV); default: the checkpoint's")
    p.add_argument("--out", help="JSON report (never replaced without --overwrite)")
    p.add_argument("--csv", help="the same as a CSV table")
    p.add_argument("--overwrite", action="store_true", help="replace existing --out/--csv")
    p.add_argument("--no-postprocess", action="store_true",
                   help="keep every connected component (skip the checkpoint's largest-"
                   "component post-processing)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", default="auto", type=batch_size_arg,
                   help="slices per batch, or auto (from free GPU memory)")
    p.set_defaults(run=run)


# ------------------------------------------------------------------------------ inputs


def _mode(args: argparse.Namespace) -> str:
    """"pair" (ED + ES), "cine" (4-D) or "volumes"; ValueError for a mix that means nothing."""
    from scan_io.nifti import is_nifti_path

    pair_scans, pair_labels = args.ed or args.es, args.ed_labels or args.es_labels
    if pair_scans or pair_labels:
        if args.scan or args.labels:
            raise ValueError("give either SCAN/--labels (volumes, or a 4-D cine) or an ED/ES "
                             "pair (--ed/--es or --ed-labels/--es-labels), not both")
        if pair_scans and pair_labels:
            raise ValueError("give --ed/--es scans (segmented with --checkpoint) or "
                             "--ed-labels/--es-labels, not both")
        if pair_scans and not (args.ed and args.es):
            raise ValueError("--ed and --es go together: give both frames")
        if pair_labels and not (args.ed_labels and args.es_labels):
            raise ValueError("--ed-labels and --es-labels go together: give both frames")
        if pair_scans and not args.checkpoint:
            raise ValueError("--ed/--es scans need --checkpoint to segment them (or give "
                             "--ed-labels/--es-labels)")
        return "pair"
    source = args.labels or args.scan
    if source is None:
        raise ValueError("nothing to measure: give a SCAN with --checkpoint, --labels, or an "
                         "ED/ES pair (--ed/--es or --ed-labels/--es-labels)")
    if args.labels and args.checkpoint:
        raise ValueError("give --checkpoint (segment SCAN) or --labels (measure a label map), "
                         "not both")
    if not args.labels and not args.checkpoint:
        raise ValueError(f"{args.scan}: give --checkpoint to segment it, or --labels with its "
                         "label map")
    if not Path(source).exists():
        raise FileNotFoundError(f"{source} does not exist")
    if is_nifti_path(source):
        from scan_io.cine import nifti_frame_count

        if nifti_frame_count(source) > 1:
            return "cine"
    return "volumes"


def _class_names(args: argparse.Namespace, meta, needed: int | None = None) -> list[str]:
    """--class-names, else the checkpoint's, else those a label file written by this package
    carries in its header, else "label c"."""
    if args.class_names:
        names = [n.strip() for n in args.class_names.split(",")]
        if needed is not None and len(names) < needed:
            raise ValueError(f"--class-names names {len(names)} labels but the labels go up to "
                             f"{needed - 1}: name every label value, background first")
        return names
    if meta is not None:
        return list(meta.class_names)
    stored = _file_class_names(args.labels or args.ed_labels)
    if stored:
        return stored
    return ["background"] + [f"label {c}" for c in range(1, needed or 1)]


def _file_class_names(path: str | None) -> list[str] | None:
    from scan_io.nifti import is_nifti_path, read_class_names

    if not path or not is_nifti_path(path) or not Path(path).is_file():
        return None
    try:
        return read_class_names(path)
    except (OSError, ValueError):
        return None


def _same_grid(a, b, what: str) -> None:
    """Two scans/label maps on one grid: same display shape and affine, else ValueError."""
    if tuple(a.data.shape) != tuple(b.data.shape) or not np.allclose(
            a.affine, b.affine, atol=1e-3):
        raise ValueError(f"{what} are on different grids (shapes {tuple(a.data.shape)} and "
                         f"{tuple(b.data.shape)}, or different affines): give two frames of "
                         "the same series")


def _outputs(args: argparse.Namespace, inputs: list) -> None:
    from .outputs import check_outputs

    targets = [t for t in (args.out, args.csv) if t]
    if targets:
        check_outputs(targets, [i for i in inputs if i], overwrite=args.overwrite)


def _inferer(args: argparse.Namespace):
    from ..inference.model_handle import open_model
    from ..inference.predict import InferenceSettings, SliceInferer, resolve_device

    resolve_device(args.device)
    handle = open_model(args.checkpoint)  # the header read above is not repeated
    model, meta = handle.model(), handle.meta
    settings = InferenceSettings(axis=0, device=args.device, batch_size=args.batch_size,
                                 postprocess=not args.no_postprocess)
    return SliceInferer(model, meta, settings), meta


def _segment(inferer, volume: np.ndarray, desc: str, spacing) -> np.ndarray:
    """Labels of one 3-D volume (display layout); ``spacing`` (mm) as ``l2gnet predict``
    passes it, for a model that resamples to its own pixel size."""
    from tqdm import tqdm

    with tqdm(total=volume.shape[0], unit="slice", desc=desc, file=sys.stderr) as bar:
        pred = inferer(volume, progress=lambda done, total: bar.update(done - bar.n),
                       spacing=spacing)
    return pred.labels


def _voxel_ml(nifti, what: str, need: bool) -> tuple[float | None, str | None]:
    from ..evaluation.measure import scan_voxel_ml

    ml, note = scan_voxel_ml(nifti.affine, nifti.header)
    if ml is None and need:
        raise ValueError(f"{what}: {note.split(';')[0]}; cardiac volumes need it in mm (set "
                         "the voxel size in the file's header)")
    return ml, note


def _refuse_no_voxel_size(*paths: str | None) -> None:
    """Cardiac forms: refuse a NIfTI without a voxel size from its header alone, before the
    file is read (and before its other warnings)."""
    import nibabel as nib

    from scan_io.nifti import is_nifti_path

    for path in paths:
        if path and is_nifti_path(path) and Path(path).is_file():
            try:
                img = nib.load(path)
            except Exception:  # noqa: BLE001 - the reader says what is wrong with it
                continue
            _voxel_ml(img, path, need=True)


# ------------------------------------------------------------------------------ the forms


def _volumes(args: argparse.Namespace) -> tuple[dict, str, str]:
    from scan_io.volume import load_scan

    from ..evaluation.measure import class_volumes

    _outputs(args, [args.scan, args.labels, args.checkpoint])
    if args.labels:
        labels_scan = load_scan(args.labels, labels=True)
        if args.scan:
            _same_grid(load_scan(args.scan), labels_scan, f"{args.scan} and --labels "
                       f"{args.labels}")
        labels, grid, meta, source = labels_scan.data, labels_scan, None, args.labels
    else:
        inferer, meta = _inferer(args)
        scan = load_scan(args.scan)
        labels = _segment(inferer, scan.data, Path(args.scan).name, scan.spacing)
        grid, source = scan, args.scan
    names = _class_names(args, meta, int(labels.max()) + 1 if labels.size else 1)
    ml, note = _voxel_ml(grid.nifti, str(source), need=False)
    table = class_volumes(labels, names, voxel_ml=ml, note=note)
    report = {"scan": str(source), **table.to_dict()}
    return report, table.to_csv(), table.to_text()


def _pair(args: argparse.Namespace) -> tuple[dict, str, str]:
    from scan_io.volume import load_scan

    from ..evaluation.measure import cardiac_indices, find_cardiac_classes

    meta = None
    if args.checkpoint:
        from ..inference.model_handle import open_model

        meta = open_model(args.checkpoint).meta
    if args.ed_labels and not args.class_names and not _file_class_names(args.ed_labels):
        raise ValueError("--ed-labels/--es-labels need --class-names (e.g. "
                         "background,RV,Myo,LV) to find the LV, RV and Myo")
    classes = find_cardiac_classes(_class_names(args, meta if not args.ed_labels else None))
    _outputs(args, [args.ed, args.es, args.ed_labels, args.es_labels, args.checkpoint])
    _refuse_no_voxel_size(args.ed_labels or args.ed, args.es_labels or args.es)
    if args.ed_labels:
        ed, es = load_scan(args.ed_labels, labels=True), load_scan(args.es_labels, labels=True)
        _same_grid(ed, es, "--ed-labels and --es-labels")
        ml, _ = _voxel_ml(ed.nifti, args.ed_labels, need=True)
        ed_labels, es_labels = ed.data, es.data
    else:
        ed, es = load_scan(args.ed), load_scan(args.es)
        _same_grid(ed, es, "--ed and --es")
        ml, _ = _voxel_ml(ed.nifti, args.ed, need=True)
        inferer, _ = _inferer(args)
        ed_labels = _segment(inferer, ed.data, "ED", ed.spacing)
        es_labels = _segment(inferer, es.data, "ES", es.spacing)
    indices = cardiac_indices(ed_labels, es_labels, classes, ml)
    return indices.to_dict(), indices.to_csv(), _with_basal(
        indices.to_text(), ed_labels, es_labels, classes)


def _with_basal(text: str, ed_labels: np.ndarray, es_labels: np.ndarray, classes) -> str:
    """The printed indices, then the basal slices to check (``basal_slices``)."""
    from ..evaluation.measure import basal_slices

    basal = basal_slices(ed_labels, es_labels, classes)
    return text if basal is None else f"{text}\n{basal.message()}"


def _cine(args: argparse.Namespace) -> tuple[dict, str, str]:
    import csv
    import io

    from scan_io.cine import load_cine

    from ..evaluation.measure import (
        cardiac_indices,
        find_cardiac_classes,
        frame_volumes,
        pick_ed_es,
    )

    meta = None
    if args.checkpoint:
        from ..inference.model_handle import open_model

        meta = open_model(args.checkpoint).meta
    elif not args.class_names and not _file_class_names(args.labels):
        raise ValueError("a 4-D --labels file needs --class-names (e.g. background,RV,Myo,LV) "
                         "to find the LV, RV and Myo")
    classes = find_cardiac_classes(_class_names(args, meta))
    source = args.labels or args.scan
    _outputs(args, [args.scan, args.labels, args.checkpoint])
    _refuse_no_voxel_size(source)
    if args.labels:
        cine = load_cine(args.labels, labels=True)
        if args.scan:
            image = load_cine(args.scan)
            if image.frames.shape != cine.frames.shape or not np.allclose(
                    image.affine, cine.affine, atol=1e-3):
                raise ValueError(f"{args.scan} and --labels {args.labels} are on different "
                                 "grids: give the label series made on this cine")
        ml, _ = _voxel_ml(cine.nifti, str(source), need=True)
        frames = cine.frames
    else:
        cine = load_cine(args.scan)
        ml, _ = _voxel_ml(cine.nifti, str(source), need=True)  # refused before segmenting
        inferer, _ = _inferer(args)
        frames = np.stack([_segment(inferer, f, f"frame {t + 1}/{cine.num_frames}",
                                    cine.spacing) for t, f in enumerate(cine.frames)])
    lv = frame_volumes(frames, classes.lv, ml)
    rv = frame_volumes(frames, classes.rv, ml)
    myo = frame_volumes(frames, classes.myo, ml)
    ed, es = pick_ed_es(lv)
    indices = cardiac_indices(frames[ed], frames[es], classes, ml)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["frame", "LV_ml", "RV_ml", "Myo_ml", "phase"])
    for t in range(len(lv)):
        phase = "ED" if t == ed else "ES" if t == es else ""
        writer.writerow([t, f"{lv[t]:.4f}", f"{rv[t]:.4f}", f"{myo[t]:.4f}", phase])
    text = _with_basal(f"{len(lv)} frames; ED = frame {ed} (largest LV volume), ES = frame "
                       f"{es} (smallest); frames counted from 0\n{indices.to_text()}",
                       frames[ed], frames[es], classes)
    return indices.to_dict(), out.getvalue(), text


def run(args: argparse.Namespace) -> int:
    from ..evaluation.measure import write_json, write_text

    mode = _mode(args)
    report, table, text = {"pair": _pair, "cine": _cine, "volumes": _volumes}[mode](args)
    print(text)
    if mode == "volumes" and report.get("note"):
        print(f"l2gnet measure: note: {report['note']}", file=sys.stderr)
    if args.out:
        write_json(report, args.out, overwrite=args.overwrite)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.csv:
        write_text(table, args.csv, overwrite=args.overwrite)
        print(f"wrote {args.csv}", file=sys.stderr)
    if not args.out:
        print(json.dumps(report))
    return 0
