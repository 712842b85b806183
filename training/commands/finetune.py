"""``l2gnet finetune``: fine-tune a checkpoint on corrected slices, as the napari widget does.

Same function (``training.finetune.run_finetune``) and same defaults (``FinetuneSettings``)
as the Fine-tune widget. DATA is a NIfTI folder (imagesTr/ + labelsTr/) whose label files
carry labels only on the corrected slices (the other slices all 0), or any data spec
``l2gnet train`` reads (phantom:SEEDS, h5 volumes), whose labelled slices count as corrected.
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
    from ..finetune import FinetuneSettings

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
                   help="NIfTI folder (imagesTr/, labelsTr/) or a data spec (phantom:SEEDS)")
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
    p.add_argument("--device", default=d.device)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.set_defaults(run=run)


def load_volumes(spec: str, normalization):
    """``CorrectedVolume`` per volume in ``spec``: the slices with any label are corrected.

    NIfTI scans are sliced as the napari plugin shows them (axial, ``scan_io.load_scan``).
    """
    from ..data.specs import load_cases
    from ..finetune import CorrectedVolume

    out = []
    for case in load_cases(spec, normalization):
        labelled = [i for i in range(case.label.shape[0]) if case.label[i].any()]
        if labelled:
            out.append(CorrectedVolume(case.name, case.image, case.label, labelled))
    if not out:
        raise ValueError(f"No labelled slices in {spec}: label the corrected slices (the "
                         "others stay 0)")
    return out


def run(args: argparse.Namespace) -> int:
    from src_model import read_metadata

    from ..finetune import FinetuneSettings, run_finetune
    from ..normalization import IntensityNormalization
    from .progress import TrainProgress

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    if out.exists() and any(out.iterdir()) and not (args.overwrite or args.resume):
        raise FileExistsError(f"{out} exists and is not empty: choose a new --out-dir, add "
                              "--resume to continue a stopped run there, or --overwrite")
    meta = read_metadata(args.from_checkpoint)
    norm = IntensityNormalization.from_metadata(meta.get("normalization"))
    volumes = load_volumes(args.data, norm)
    names = {f.name for f in fields(FinetuneSettings)}
    settings = FinetuneSettings(**{k: v for k, v in vars(args).items()
                                   if k in names and v is not None})
    n = sum(len(v.corrected) for v in volumes)
    print(f"fine-tuning {args.from_checkpoint} on {n} corrected slices of {len(volumes)} "
          f"volume(s) -> {out}", file=sys.stderr)
    argv = getattr(args, "argv", None) or sys.argv[1:]
    extra = {"finetuned_from": str(args.from_checkpoint),
             "finetune": {"command": "l2gnet " + " ".join(argv), "data": args.data}}
    with TrainProgress() as progress, StopOnSignals() as stop:
        report = run_finetune(args.from_checkpoint, volumes, settings, out, metadata=extra,
                              callback=progress, should_stop=stop, overwrite=args.overwrite,
                              resume=args.resume)
    for record in report.history:
        print(json.dumps(record))
    print(report.describe(), file=sys.stderr)
    print(f"fine-tuned checkpoint: {report.checkpoint}", file=sys.stderr)
    if not report.stopped:
        return 0
    signum = stop.received or signal.SIGTERM
    print(f"l2gnet finetune: stopped by {signal.Signals(signum).name}; the best model so far is "
          f"kept in {report.checkpoint}; continue with --out-dir {out} --resume",
          file=sys.stderr)
    return 128 + signum
