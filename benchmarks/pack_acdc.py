"""Pack ACDC small enough to travel to a GPU machine, and unpack it there.

The device tool carries at most 64 MiB with the checkout; ../shared/data/acdc is 108 MB of
float32 HDF5. ``pack`` stores the training slices already resized to the training input
(cubic for images, nearest for labels; the augmentation then runs on 224 x 224 instead of
before the resize) and the validation volumes at their own size, all as 8-bit images, in one
compressed ``.npz`` (48 MiB), or, named ``*.npz.xz``, an xz stream with a byte-delta filter
(38.5 MiB, what fits beside the checkout in the device tool's 64 MiB; packing takes minutes).
``unpack`` writes the ACDC HDF5 layout the readers take:
images in [0, 1] (8-bit steps of 1/255, well below MRI noise), labels unchanged.

    python benchmarks/pack_acdc.py pack ../shared/data/acdc .devdata/acdc.npz.xz   # here
    PYTHONPATH=. python3 benchmarks/pack_acdc.py unpack .devdata/acdc.npz.xz /tmp/acdc  # there
"""

from __future__ import annotations

import argparse
import io
import lzma
from pathlib import Path

import h5py
import numpy as np

from training.data.readers import read_acdc_slices, read_h5_volumes
from training.data.transforms import resize_pair

_XZ_FILTERS = [{"id": lzma.FILTER_DELTA, "dist": 1}, {"id": lzma.FILTER_LZMA2, "preset": 6}]


def _to_u8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def pack(acdc: Path, dest: Path, size: int) -> None:
    slices = read_acdc_slices(acdc / "train_slices")
    volumes = read_h5_volumes(acdc / "val_volumes")
    if not slices:
        raise SystemExit(f"{acdc}/train_slices has no .h5 slices")
    resized = [resize_pair(s.image, s.label, (size, size)) for s in slices]  # as training does
    arrays: dict[str, np.ndarray] = {
        "train_names": np.array([s.source for s in slices]),
        "train_images": np.stack([_to_u8(image) for image, _ in resized]),
        "train_labels": np.stack([label for _, label in resized]),
        "val_names": np.array([c.name for c in volumes]),
    }
    for i, case in enumerate(volumes):
        arrays[f"val_image_{i}"] = _to_u8(case.image)
        arrays[f"val_label_{i}"] = case.label
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.name.endswith(".xz"):  # delta filter: neighbouring 8-bit pixels differ little
        with lzma.open(dest, "wb", format=lzma.FORMAT_XZ, filters=_XZ_FILTERS) as f:
            np.savez(f, **arrays)
    else:
        np.savez_compressed(dest, **arrays)
    print(f"{dest}: {len(slices)} slices at {size}x{size}, {len(volumes)} volumes, "
          f"{dest.stat().st_size / 2**20:.1f} MiB")


def unpack(src: Path, out: Path) -> None:
    if src.name.endswith(".xz"):
        with lzma.open(src) as f:
            data = np.load(io.BytesIO(f.read()))
    else:
        data = np.load(src)
    (out / "train_slices").mkdir(parents=True, exist_ok=True)
    (out / "val_volumes").mkdir(parents=True, exist_ok=True)
    for name, image, label in zip(data["train_names"], data["train_images"],
                                  data["train_labels"], strict=True):
        with h5py.File(out / "train_slices" / f"{name}.h5", "w") as f:
            f["image"], f["label"] = image.astype(np.float32) / 255, label
    for i, name in enumerate(data["val_names"]):
        with h5py.File(out / "val_volumes" / f"{name}.h5", "w") as f:
            f["image"] = data[f"val_image_{i}"].astype(np.float32) / 255
            f["label"] = data[f"val_label_{i}"]
    print(f"{out}: {len(data['train_names'])} slices, {len(data['val_names'])} volumes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="ACDC folder -> one .npz")
    p.add_argument("acdc", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--size", type=int, default=224, help="training input size (square)")
    u = sub.add_parser("unpack", help=".npz -> ACDC HDF5 folders")
    u.add_argument("src", type=Path)
    u.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.acdc, args.dest, args.size)
    else:
        unpack(args.src, args.out)


if __name__ == "__main__":
    main()
