"""``l2gnet evaluate``: per-class Dice and HD95 of a checkpoint on labelled volumes."""

from __future__ import annotations

import argparse
import sys

from . import batch_size_arg


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="score a checkpoint on labelled volumes (Dice, HD95)",
        description="Segment each volume of DATA (h5 volumes such as ACDC val_volumes or "
        "Synapse test_vol_h5, a NIfTI imagesTr+labelsTr folder, a DICOM SEG file or a folder "
        "of them, each beside the series it labels, or phantom:SEEDS) and print a per-class "
        "table; --out writes every number as JSON. A SEG's segments are matched to the "
        "model's classes by name or SNOMED code.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--protocol", choices=["transunet", "clinical"], default="transunet",
                   help="transunet: the papers' numbers (voxel units); clinical: mm, empty "
                   "cases reported")
    p.add_argument("--out", help="JSON report path (never replaced without --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-postprocess", action="store_true",
                   help="score the raw slice-by-slice output (skip the checkpoint's largest-"
                   "component post-processing)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", default="auto", type=batch_size_arg,
                   help="slices per batch, or auto (from free GPU memory)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from ..data.normalization import IntensityNormalization
    from ..data.specs import load_cases
    from ..evaluation.scoring import evaluate, format_table, write_report
    from ..inference.model_handle import open_model
    from ..inference.predict import resolve_device
    from .outputs import check_outputs

    resolve_device(args.device)
    if args.out:  # before the work: an existing report, a checkpoint, or an unwritable folder
        inputs = [args.checkpoint] + ([args.data] if Path(args.data).exists() else [])
        check_outputs([args.out], inputs, overwrite=args.overwrite)
    meta = open_model(args.checkpoint).meta  # evaluate() reuses this handle's header
    norm = IntensityNormalization.from_metadata(meta.normalization)
    cases = load_cases(args.data, norm, class_names=meta.class_names)
    with tqdm(total=len(cases), unit="volume", file=sys.stderr) as bar:
        report = evaluate(args.checkpoint, cases, protocol=args.protocol, device=args.device,
                          batch_size=args.batch_size, postprocess=not args.no_postprocess,
                          on_case=lambda name, rows: bar.update(1))
    report["checkpoint"] = str(args.checkpoint)
    report["data"] = args.data
    print(format_table(report))
    if args.out:
        written = write_report(report, args.out, overwrite=args.overwrite)
        print(f"wrote {written}", file=sys.stderr)
    return 0
