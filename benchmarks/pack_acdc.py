"""Pack ACDC small enough to travel to a GPU machine, and unpack it there.

The device tool carries at most 64 MiB with the checkout; ../shared/data/acdc is 108 MB of
float32 HDF5. ``pack`` stores the training slices already resized to the training input
(cubic for images, nearest for labels; the augmentation then runs on 224 x 224 instead of
before the resize) and the validation volumes at their own size, all as 8-bit images, in one
compressed ``.npz`` (about 50 MB). ``unpack`` writes the ACDC HDF5 layout the readers take:
images in [0, 1] (8-bit steps of 1/255, well below MRI noise), labels unchanged.

    python benchmarks/pack_acdc.py pack ../shared/data/acdc .devdata/acdc.npz     # here
    python3 benchmarks/pack_acdc.py unpack .devdata/acdc.npz /tmp/acdc             # there
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage


def _to_u8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _resize(image: np.ndarray, size: int, order: int) -> np.ndarray:
    zoom = (size / image.shape[0], size / image.shape[1])
    return ndimage.zoom(image, zoom, order=order)


def pack(acdc: Path, dest: Path, size: int) -> None:
    arrays: dict[str, np.ndarray] = {}
    slices = sorted((acdc / "train_slices").glob("*.h5"))
    if not slices:
        raise SystemExit(f"{acdc}/train_slices has no .h5 slices")
    images, labels = [], []
    for path in slices:
        with h5py.File(path, "r") as f:
            images.append(_to_u8(_resize(np.asarray(f["image"], np.float32), size, 3)))
            labels.append(_resize(np.asarray(f["label"], np.uint8), size, 0))
    arrays["train_names"] = np.array([p.stem for p in slices])
    arrays["train_images"], arrays["train_labels"] = np.stack(images), np.stack(labels)
    volumes = sorted((acdc / "val_volumes").glob("*.h5"))
    arrays["val_names"] = np.array([p.stem for p in volumes])
    for i, path in enumerate(volumes):
        with h5py.File(path, "r") as f:
            arrays[f"val_image_{i}"] = _to_u8(np.asarray(f["image"], np.float32))
            arrays[f"val_label_{i}"] = np.asarray(f["label"], np.uint8)
    dest.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dest, **arrays)
    print(f"{dest}: {len(slices)} slices at {size}x{size}, {len(volumes)} volumes, "
          f"{dest.stat().st_size / 2**20:.1f} MiB")


def unpack(src: Path, out: Path) -> None:
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
