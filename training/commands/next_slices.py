"""``l2gnet next-slices SCAN --checkpoint C [--corrected 10-15 | --labels L]``: which slices to
correct next, as the Fine-tune panel's *Where to correct next* list names them
(``training.finetuning.next_slices``): slices spread over the scan when nothing is corrected,
the middle of the labelled slices beyond the corrected (and taught) ones otherwise, then the
most uncertain. Slices are counted along the first axis of the scan as the napari plugin
shows it (axial slices), from 0. Nothing is written.
"""

from __future__ import annotations

import argparse
import json

from . import batch_size_arg


def add_parser(sub) -> None:
    p = sub.add_parser(
        "next-slices", help="the slices to correct next (the Fine-tune panel's list)",
        description="Segment SCAN with CHECKPOINT and list the slices to correct next: with "
        "nothing corrected, slices spread evenly over the labelled ones; with corrections "
        "(--corrected, or the labelled slices of --labels) or a checkpoint taught on this "
        "scan, the middle of the labelled slices below and above them; then the slices the "
        "model is least sure of. Slices are axial, counted from 0 as the napari plugin "
        "shows them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("scan", help="a 3-D scan (NIfTI file, or DICOM series folder or file)")
    p.add_argument("--checkpoint", required=True, help=".safetensors checkpoint")
    given = p.add_mutually_exclusive_group()
    given.add_argument("--corrected", default="", help="slices already corrected, e.g. "
                       "10-15,20")
    given.add_argument("--labels", help="a label map on the scan's grid: its slices with any "
                       "label count as corrected (as l2gnet finetune --data reads them)")
    p.add_argument("--count", type=int, default=10, help="how many slices to list")
    p.add_argument("--json", action="store_true", help="one JSON object per slice")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", default="auto", type=batch_size_arg,
                   help="slices per batch, or auto")
    p.set_defaults(run=run)


def parse_slices(text: str) -> list[int]:
    """``"10-15,20"`` -> ``[10, 11, 12, 13, 14, 15, 20]``; a one-line ``ValueError`` else."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"--corrected {text!r}: give slice numbers and ranges, e.g. "
                             "10-15,20") from None
        if first < 0 or last < first:
            raise ValueError(f"--corrected {text!r}: {part!r} is not a range of slices "
                             "counted from 0 (e.g. 10-15)")
        out.update(range(first, last + 1))
    return sorted(out)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from scan_io.volume import load_scan
    from src_model import read_metadata

    from ..finetuning.coverage import slice_ranges
    from ..finetuning.next_slices import slices_to_correct

    if args.count < 1:
        raise ValueError(f"--count {args.count}: list at least 1 slice")
    read_metadata(args.checkpoint)  # a bad checkpoint is named before the scan is read
    scan = load_scan(args.scan)
    if np.ndim(scan.data) != 3:
        raise ValueError(f"{args.scan} is {np.ndim(scan.data)}-D: next-slices takes a 3-D "
                         "scan (one frame of a cine)")
    n = scan.data.shape[0]
    if args.labels:
        labels = load_scan(args.labels, labels=True).data
        if labels.shape != scan.data.shape:
            raise ValueError(f"--labels {args.labels} is {labels.shape}, the scan "
                             f"{scan.data.shape}: give the label map drawn on this scan")
        corrected = [int(z) for z in np.flatnonzero(labels.reshape(n, -1).any(1))]
    else:
        corrected = parse_slices(args.corrected)
        outside = [z for z in corrected if z >= n]
        if outside:
            raise ValueError(f"--corrected: slice {outside[0]} is outside the scan's slices "
                             f"0-{n - 1}")
    listed = slices_to_correct(scan.data, args.checkpoint, corrected=corrected,
                               spacing=scan.spacing, count=args.count, device=args.device,
                               batch_size=args.batch_size)
    if args.json:
        for entry in listed:
            print(json.dumps({"slice": entry.index, "reason": entry.reason,
                              "span": list(entry.span),
                              "uncertainty": round(entry.uncertainty, 4)}))
        return 0
    said = f"corrected: {slice_ranges(corrected)}" if corrected else "nothing corrected"
    if not listed:
        print(f"{args.scan}: {n} slices, {said}; no other slice to list")
        return 0
    print(f"{args.scan}: {n} slices, {said}; correct next:")
    for entry in listed:
        print(f"  {entry.text()}")
    return 0
