"""``l2gnet predict IN --checkpoint C --out OUT``: segment NIfTI scans on their own grid."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import batch_size_arg


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help="segment NIfTI scans (a file or a folder)",
        description="Segment each input scan slice by slice (axial slices, the way the napari "
        "plugin shows them) and write labels with the input's affine and header. With a "
        "folder (or several inputs), --out is a folder and outputs keep the input names.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help=".nii/.nii.gz files or folders of them")
    p.add_argument("--checkpoint", required=True, help=".safetensors checkpoint")
    p.add_argument("--out", required=True, help="output file (one input) or folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", default="auto", type=batch_size_arg,
                   help="slices per batch, or auto (from free GPU memory)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(run=run)


def _inputs(items: list[str]) -> list[Path]:
    from scan_io.nifti import is_nifti_path

    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(f for f in path.iterdir() if is_nifti_path(f))
            if not found:
                raise FileNotFoundError(f"No .nii or .nii.gz files in {path}")
            files += found
        elif not path.exists():
            raise FileNotFoundError(f"Input {path} does not exist")
        elif not is_nifti_path(path):
            raise ValueError(f"{path} is not a NIfTI file (.nii or .nii.gz)")
        else:
            files.append(path)
    return files


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from scan_io.nifti import display_orientation, from_display, load_nifti, save_nifti, to_display
    from src_model import load_checkpoint

    from ..inference import predict_volume

    files = _inputs(args.inputs)
    out = Path(args.out)
    many = len(files) > 1 or Path(args.inputs[0]).is_dir()
    if many:
        out.mkdir(parents=True, exist_ok=True)
    targets = [out / f.name if many else out for f in files]
    if len(set(targets)) != len(targets):
        dup = next(t for t in targets if targets.count(t) > 1)
        raise ValueError(f"Two inputs would both be written to {dup}: give inputs with distinct "
                         "file names, or run them separately")
    if not args.overwrite:
        existing = [str(t) for t in targets if t.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} exists; pass --overwrite to replace it")
    if any(t.resolve() == f.resolve() for t, f in zip(targets, files, strict=True)):
        raise ValueError("An output path equals its input: choose another --out")
    model, meta = load_checkpoint(args.checkpoint)
    if model.in_channels not in (1, 3):
        raise ValueError(f"{args.checkpoint} expects {model.in_channels} input channels; "
                         "only grey scans (1 channel, repeated if needed) are supported")
    for src, dst in zip(files, targets, strict=True):
        vol = load_nifti(src)
        orient = display_orientation(vol.affine)
        shown = to_display(vol.data, orient)
        with tqdm(total=shown.shape[0], unit="slice", desc=src.name, file=sys.stderr) as bar:
            pred = predict_volume(shown, model, metadata=meta, axis=0, device=args.device,
                                  batch_size=args.batch_size,
                                  progress=lambda done, total: bar.update(done - bar.n))
        save_nifti(dst, from_display(pred.labels, orient), like=vol, labels=True,
                   overwrite=args.overwrite)
        print(dst)
    return 0
