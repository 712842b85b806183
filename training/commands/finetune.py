"""``l2gnet finetune``: fine-tune a checkpoint on corrected slices, as the napari widget does.

Same function (``training.finetuning.run_finetune``) and same defaults (``FinetuneSettings``)
as the Fine-tune widget. DATA is a NIfTI folder (imagesTr/ + labelsTr/) whose label files
carry labels only on the corrected slices (the other slices all 0), an annotation store
(``scan_io.annotation_store``: its records say which slices were corrected), or any data spec
``l2gnet train`` reads (phantom:SEEDS, h5 volumes, DICOM SEG files beside their series),
whose labelled slices count as corrected.

The annotation store (``--store``, default the user's, as the panel's): its cases are
trained on too, and a NIfTI DATA folder's corrected scans are saved into it after the run,
so the next fine-tune learns from them; ``--no-store`` does neither.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import fields
from pathlib import Path

from . import positive_float
from .train import StopOnSignals


def add_parser(sub) -> None:
    """The flags; their defaults are ``FinetuneSettings``'s (one source, the panel's too)."""
    from ..data.transforms import AUGMENTATIONS, FLIPS
    from ..finetuning.finetune import FinetuneSettings

    d = FinetuneSettings()
    p = sub.add_parser(
        "finetune", help="fine-tune a checkpoint on corrected slices (the widget's path)",
        description="Fine-tune CHECKPOINT on the corrected slices in DATA (slices with any "
        "label), guarding the other slices (see README, 'Fine-tuning on corrections'). Writes "
        "OUT_DIR/finetuned.safetensors (the best model, the starting one if nothing beat it) "
        "and OUT_DIR/finetune.json (Dice on the corrected slices before/after, how much the "
        "other slices changed).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--from", dest="from_checkpoint", metavar="CHECKPOINT", required=True)
    p.add_argument("--data", required=True,
                   help="NIfTI folder (imagesTr/, labelsTr/), an annotation store folder, a "
                   "DICOM SEG file (or a folder of them) beside the series it labels, or a "
                   "data spec (phantom:SEEDS)")
    p.add_argument("--store", metavar="DIR", default=None,
                   help="the annotation store whose earlier corrections are trained on too "
                   "and where DATA's corrected scans are saved (default: "
                   "$L2GNET_ANNOTATION_STORE, else the user data folder's, as the panel's)")
    p.add_argument("--no-store", action="store_true",
                   help="train on DATA only: do not include the store's cases, and do not "
                   "save DATA's scans into it")
    p.add_argument("--out-dir", required=True, help="a new folder for this run")
    p.add_argument("--overwrite", action="store_true", help="reuse an existing OUT_DIR")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT_DIR stopped by SIGTERM or Ctrl-C (from its "
                   "run_state.safetensors), with the same CHECKPOINT and DATA")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=positive_float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--keep-weight", type=float, default=d.keep_weight,
                   help="when the starting model agrees with the corrections (Dice >= 0.5), "
                   "its labels on this many uncorrected slices per corrected slice (times "
                   "that Dice) are mixed in; 0 turns it off")
    p.add_argument("--augment", choices=[a for a in AUGMENTATIONS if a not in FLIPS],
                   default=d.augment, help="augmentation of the corrected slices (never "
                   "flips: they swap left and right organs)")
    p.add_argument("--no-class-balance", dest="class_balance", action="store_false",
                   default=d.class_balance, help="turn off class-aware slice sampling and "
                   "class-weighted cross-entropy (on by default: a structure painted on a few "
                   "slices is then learned like a large one)")
    p.add_argument("--class-names", metavar="NAMES",
                   help="comma-separated: the model's class names, unchanged and in order, "
                   "then new classes to teach (label values after the model's), e.g. "
                   "background,RV,Myo,LV,lesion (see docs/new-classes.md)")
    p.add_argument("--freeze-body", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the encoder and bottleneck as they are (only the decoder and "
                   "head learn); default: when --class-names adds classes, or when the "
                   "starting model already agrees with the corrections (Dice >= 0.5)")
    p.add_argument("--window", choices=("fit", "model"), default=d.window,
                   help="'fit' (default): train and segment with the smallest window that "
                        "holds these scans at the model's pixel size, with proportionally "
                        "more samples an epoch; 'model': the starting model's input size")
    p.add_argument("--device", default=d.device)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.set_defaults(run=run)


def load_volumes(spec: str, normalization, class_names=None):
    """``CorrectedVolume`` per volume in ``spec``: the slices with any label are corrected.

    NIfTI scans are sliced as the napari plugin shows them (axial, ``scan_io.load_scan``); a
    DICOM SEG's segments are matched to the model's ``class_names``.
    """
    from ..data.specs import load_cases
    from ..finetuning.finetune import CorrectedVolume

    out = []
    for case in load_cases(spec, normalization, class_names=class_names):
        labelled = [i for i in range(case.label.shape[0]) if case.label[i].any()]
        if labelled:
            out.append(CorrectedVolume(case.name, case.image, case.label, labelled,
                                       case.spacing))
    if not out:
        raise ValueError(f"No labelled slices in {spec}: label the corrected slices (the "
                         "others stay 0)")
    return out


def _class_names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",")]


def _from_store(store, class_names, normalization, currents=()):
    """The store's usable cases; a note on stderr for each skipped one. ``currents``: the
    scans trained on from DATA (``store_volumes``): their slices are not taken twice."""
    from ..finetuning.store_volumes import store_volumes

    found = store_volumes(store, class_names, normalization, currents=currents)
    for note in found.notes:
        print(f"l2gnet finetune: note: {note}", file=sys.stderr)
    return found


def _same_folder(a, b) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _layout_is_nifti(spec: str) -> bool:
    return not spec.startswith("phantom:") and (Path(spec) / "imagesTr").is_dir()


def _data_sources(spec: str, volumes) -> list[tuple[str, int, list[int]]]:
    """``(image file, axis, corrected slices)`` of each scan of a NIfTI DATA folder: the
    store's cases of the same files are that scan saved by an earlier run (a case's identity
    is its source file), so they are not trained on a second time."""
    from ..finetuning.store_volumes import nifti_folder_files

    if not _layout_is_nifti(spec):
        return []
    out = []
    for v in volumes:
        image, _ = nifti_folder_files(spec, v.name)
        if image is not None:
            out.append((str(image), 0, list(v.corrected)))
    return out


def run(args: argparse.Namespace) -> int:
    from scan_io.annotation_store import AnnotationStore, is_annotation_store
    from src_model import read_metadata

    from ..data.normalization import IntensityNormalization
    from ..finetuning.class_outcomes import outcome_lines, outcomes_of
    from ..finetuning.finetune import FinetuneSettings, run_finetune
    from ..finetuning.store_volumes import save_nifti_folder_cases
    from ..fitting.new_classes import NewClassRequest, model_class_names, painted_counts
    from .progress import TrainProgress

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    if out.exists() and any(out.iterdir()) and not (args.overwrite or args.resume):
        raise FileExistsError(f"{out} exists and is not empty: choose a new --out-dir, add "
                              "--resume to continue a stopped run there, or --overwrite")
    meta = read_metadata(args.from_checkpoint)
    request = NewClassRequest.from_names(model_class_names(meta), _class_names(args.class_names))
    norm = IntensityNormalization.from_metadata(meta.get("normalization"))
    data_store = is_annotation_store(args.data) if not args.data.startswith("phantom:") else False
    if data_store:
        given = _from_store(AnnotationStore(args.data), request.names, norm)
        if not given.volumes:
            raise ValueError(f"No usable cases in the annotation store {args.data}")
        volumes = given.volumes
    else:
        volumes = load_volumes(args.data, norm, request.names)
    n_data = len(volumes)
    store = None if args.no_store else AnnotationStore(args.store)
    if store is not None and not (data_store and _same_folder(store.root, args.data)):
        earlier = _from_store(store, request.names, norm, _data_sources(args.data, volumes))
        if earlier.volumes:
            print(f"including {len(earlier.volumes)} earlier corrected scan(s) "
                  f"({earlier.slices} slices) from the annotation store {store.root} "
                  "(--no-store: leave them out)", file=sys.stderr)
        volumes = volumes + earlier.volumes
    for v in volumes:  # before any work: every label value needs a class name
        request.check_labels(int(v.labels.max(initial=0)), f"{args.data} ({v.name})")
    if request.growing:
        painted = painted_counts(((v.name, v.labels) for v in volumes), request.new_indices,
                                 request.names)
        for warning in request.check_painted(painted, args.data):
            print(f"l2gnet finetune: warning: {warning}", file=sys.stderr)
        print(f"adding {len(request.new_names)} new class(es): "
              + ", ".join(f"{p.name} (label {p.index}, {p.voxels} voxels on {p.slices} "
                          f"slices)" for p in painted), file=sys.stderr)
    names = {f.name for f in fields(FinetuneSettings)}
    settings = FinetuneSettings(**{k: v for k, v in vars(args).items()
                                   if k in names and v is not None})
    n = sum(len(v.corrected) for v in volumes)
    print(f"fine-tuning {args.from_checkpoint} on {n} corrected slices of {len(volumes)} "
          f"volume(s) -> {out}", file=sys.stderr)
    argv = getattr(args, "argv", None) or sys.argv[1:]
    extra = {"finetuned_from": str(args.from_checkpoint),
             "finetune": {"command": "l2gnet " + " ".join(argv), "data": args.data}}
    names = _class_names(args.class_names)
    with TrainProgress() as progress, StopOnSignals() as stop:
        report = run_finetune(args.from_checkpoint, volumes, settings, out, metadata=extra,
                              callback=progress, should_stop=stop, overwrite=args.overwrite,
                              resume=args.resume, class_names=names,
                              taught_on=f"l2gnet finetune --data {args.data}")
    for record in report.history:
        print(json.dumps(record))
    if store is not None and not data_store and _layout_is_nifti(args.data):
        saved = save_nifti_folder_cases(store, args.data, volumes[:n_data], request.names)
        print(f"saved {len(saved)} corrected scan(s) to the annotation store {store.root}: "
              + ", ".join(c.case_id for c in saved), file=sys.stderr)
    print(report.describe(), file=sys.stderr)
    outcomes = outcomes_of(report, (v.labels[v.corrected] for v in volumes), request.names)
    for line in outcome_lines(outcomes):
        print(line, file=sys.stderr)
    print(f"fine-tuned checkpoint: {report.checkpoint}", file=sys.stderr)
    if not report.stopped:
        return 0
    signum = stop.received or signal.SIGTERM
    print(f"l2gnet finetune: stopped by {signal.Signals(signum).name}; the best model so far is "
          f"kept in {report.checkpoint}; continue with --out-dir {out} --resume",
          file=sys.stderr)
    return 128 + signum
