"""``l2gnet sample OUT_DIR``: write the generated abdominal CT phantom and its truth as NIfTI."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sample", help="write the generated CT phantom (image + truth) as NIfTI",
        description="Write OUT_DIR/abdomen_ct.nii.gz (int16 HU) and "
        "OUT_DIR/abdomen_ct_truth.nii.gz (8 Synapse organs) for SEED.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("out_dir", help="folder to write into (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="0 is the demo's sample scan")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(run=run)


def write_sample(out_dir: str | Path, seed: int = 0, overwrite: bool = False):
    """Write the phantom for ``seed``; returns (image path, truth path)."""
    from scan_io.nifti import save_nifti

    from ..data.phantom import make_phantom
    from .outputs import check_outputs

    out = Path(out_dir)
    stem = "abdomen_ct" if seed == 0 else f"abdomen_ct_seed{seed}"
    image_path, truth_path = out / f"{stem}.nii.gz", out / f"{stem}_truth.nii.gz"
    check_outputs([image_path, truth_path], [], overwrite=overwrite)  # both, before writing
    out.mkdir(parents=True, exist_ok=True)
    ph = make_phantom(seed)
    new_image = not image_path.exists()
    save_nifti(image_path, ph.to_nifti_order(ph.image), affine=ph.affine, overwrite=overwrite)
    try:
        save_nifti(truth_path, ph.to_nifti_order(ph.labels), affine=ph.affine, labels=True,
                   overwrite=overwrite)
    except BaseException:
        if new_image:  # no image without its truth: the pair is written whole or not at all
            image_path.unlink(missing_ok=True)
        raise
    return image_path, truth_path


def run(args: argparse.Namespace) -> int:
    for path in write_sample(args.out_dir, args.seed, args.overwrite):
        print(path)
    return 0
