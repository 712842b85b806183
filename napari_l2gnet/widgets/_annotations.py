"""What the Fine-tune widget needs to know about layers and files (no Qt): which slices the
user painted, the slice axis, where outputs go by default.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np

from scan_io.atomic import atomic_write_path

from .._layer_record import read_record

_SUFFIX = re.compile(r"_finetuned(_\d+)?$")


def layer_axis(layer) -> int:
    """The slice axis of a labels layer (``metadata["l2gnet"]["axis"]``, default 0)."""
    return read_record(layer).axis


def painted_slices(atoms, axis: int) -> set[int]:
    """Slice indices along ``axis`` touched by a Labels ``paint`` event's history atoms.

    napari >= 0.6 records mask edits (``slice_key``: a bounding box of slices, ``mask``: the
    changed voxels in it, or None when all of it changed); older napari and ``data_setitem``
    record ``(indices, old_values, new_values)`` with a numpy multi-index.
    """
    out: set[int] = set()
    for atom in atoms or ():
        key = getattr(atom, "slice_key", None)
        if key is not None:
            sl = key[axis]
            if isinstance(sl, slice):
                start = sl.start or 0
                mask = getattr(atom, "mask", None)
                if mask is not None and np.ndim(mask) == len(key):
                    other = tuple(d for d in range(mask.ndim) if d != axis)
                    hit = np.flatnonzero(np.asarray(mask).any(axis=other))
                    out.update(int(start + i) for i in hit)
                elif sl.stop is not None:
                    out.update(range(start, sl.stop))
                else:
                    out.add(int(start))
            else:
                out.add(int(sl))
            continue
        try:
            along = np.asarray(atom[0][axis])
        except (TypeError, IndexError):
            continue
        out.update(int(i) for i in np.unique(along))
    return out


def user_finetune_dir() -> Path:
    """Where fine-tuned checkpoints go by default: the user's data folder, never the package
    (``~/.local/share/napari-l2gnet/finetune`` on Linux; platformdirs elsewhere)."""
    from platformdirs import user_data_path

    return user_data_path("napari-l2gnet", appauthor=False) / "finetune"


def default_output_path(input_path: str | os.PathLike) -> Path:
    """``<stem>_finetuned.safetensors`` in ``user_finetune_dir()``, made unique
    (``_finetuned_2``, ``_finetuned_3``...; a fine-tuned input does not pile up suffixes)."""
    folder = user_finetune_dir()
    stem = _SUFFIX.sub("", Path(input_path).name.removesuffix(".safetensors"))
    path, n = folder / f"{stem}_finetuned.safetensors", 2
    while path.exists():
        path, n = folder / f"{stem}_finetuned_{n}.safetensors", n + 1
    return path


def copy_atomically(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy to a temporary name beside ``dst`` and rename: never a partial file at ``dst``."""
    dst = Path(dst)
    with atomic_write_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def annotated_slices(data: np.ndarray, axis: int, painted: set[int], model_labels=None,
                     non_empty: bool = False) -> list[int]:
    """Slice indices along ``axis`` that count as corrected: every slice with a label
    (``non_empty``), or those painted plus those that differ from the model's labels."""
    data = np.asarray(data)
    if data.ndim == 2:
        data, axis = data[None], 0
    if data.ndim != 3:
        return []
    other = tuple(d for d in range(3) if d != axis)
    if non_empty:
        return [int(i) for i in np.flatnonzero(data.any(axis=other))]
    found = set(painted)
    if model_labels is not None and np.shape(model_labels) == data.shape:  # edits outside paint
        found.update(int(i) for i in np.flatnonzero((np.asarray(model_labels) != data)
                                                    .any(axis=other)))
    return sorted(i for i in found if 0 <= i < data.shape[axis])
