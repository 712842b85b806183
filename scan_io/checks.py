"""Checks every scan passes before anyone looks at it: its size, and its non-finite voxels.

* **Size.** A header can claim any shape (a corrupt or crafted file says 30000^3 voxels);
  `check_volume_size` refuses, before anything is allocated, a volume that would need more
  memory than this machine has, or, for an uncompressed file, more bytes than the file holds.
* **Non-finite voxels.** One NaN empties its slice after normalisation and, with percentile
  normalisation, the whole volume. `replace_non_finite` replaces NaN and -inf with the
  lowest finite value of the volume (background: air in CT, no signal in MRI) and +inf with
  the highest, and always says so with a `NonFiniteVoxelsWarning`. A volume without a single
  finite voxel is refused.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "LooksLikeLabelsWarning",
    "NoOrientationWarning",
    "NonFiniteVoxelsWarning",
    "SpacingMismatchWarning",
    "check_volume_size",
    "label_map_reason",
    "memory_bytes",
    "replace_non_finite",
]


class NonFiniteVoxelsWarning(UserWarning):
    """A scan had NaN or infinite voxels; they were replaced (the message says with what)."""


class NoOrientationWarning(UserWarning):
    """A NIfTI header gives no orientation (qform_code = sform_code = 0): the layout shown is
    an assumption (nibabel's fallback affine), which the message says."""


class LooksLikeLabelsWarning(UserWarning):
    """An input given as a scan looks like a label map (e.g. an earlier segmentation)."""


class SpacingMismatchWarning(UserWarning):
    """A NIfTI sform's voxel size disagrees with the header's pixdim; the sform's is used."""


def memory_bytes() -> int:
    """Physical memory of this machine in bytes (a large default where unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"


def check_volume_size(
    shape: Sequence[int],
    dtype: npt.DTypeLike,
    source: object,
    *,
    file_bytes: int | None = None,
    limit_bytes: int | None = None,
) -> None:
    """Refuse a shape that cannot be read here, before allocating it.

    ``file_bytes``: how many data bytes an uncompressed file holds (None: unknown, e.g. gzip).
    ``limit_bytes``: the memory bound (default: this machine's physical memory).
    """
    dims = [int(n) for n in shape]
    if any(n < 0 for n in dims):
        raise ValueError(f"{source}: the header gives a negative size {tuple(dims)}; "
                         "the file is corrupt")
    voxels = int(np.prod(dims, dtype=object)) if dims else 0
    need = voxels * np.dtype(dtype).itemsize
    shape_text = "x".join(str(n) for n in dims)
    limit = memory_bytes() if limit_bytes is None else int(limit_bytes)
    if need > limit:
        raise ValueError(
            f"{source}: the header claims {shape_text} voxels ({_human(need)} as "
            f"{np.dtype(dtype)}), more than this machine's {_human(limit)} of memory; the "
            "header is corrupt, or crop/downsample the scan before opening it"
        )
    if file_bytes is not None and need > file_bytes:
        raise ValueError(
            f"{source}: the header claims {shape_text} voxels ({_human(need)}) but the file "
            f"holds only {_human(file_bytes)} of voxel data; the file is truncated or corrupt"
        )


def replace_non_finite(data: np.ndarray, source: object) -> np.ndarray:
    """``data`` with NaN/-inf set to its lowest finite value and +inf to its highest.

    Integer data are returned as they are. Any replacement is reported with a
    `NonFiniteVoxelsWarning` naming ``source``, the counts and the values used. A copy is made
    only when something is replaced.
    """
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.floating) or data.size == 0:
        return data
    finite = np.isfinite(data)
    if finite.all():
        return data
    if not finite.any():
        raise ValueError(f"{source}: no voxel has a finite value (all NaN or infinite); "
                         "the scan is empty or corrupt")
    low, high = data[finite].min(), data[finite].max()
    nan, pos, neg = np.isnan(data), np.isposinf(data), np.isneginf(data)
    out = data.copy()
    out[nan | neg] = low
    out[pos] = high
    parts = []
    if nan.any():
        parts.append(f"{int(nan.sum())} NaN")
    if neg.any():
        parts.append(f"{int(neg.sum())} -inf")
    if pos.any():
        parts.append(f"{int(pos.sum())} +inf")
    replaced = []
    if nan.any() or neg.any():
        replaced.append(f"the lowest finite value {float(low):g}")
    if pos.any():
        replaced.append(f"+inf with the highest {float(high):g}")
    warnings.warn(
        f"{source}: {', '.join(parts)} voxel(s) of {data.size} replaced with "
        f"{' and '.join(replaced)} (NaN/-inf -> lowest, +inf -> highest)",
        NonFiniteVoxelsWarning,
        stacklevel=2,
    )
    return out


def label_map_reason(data: np.ndarray, max_values: int = 16) -> str | None:
    """Why ``data`` looks like a label map rather than a scan, or None.

    A label map here: whole numbers from 0 to 255 with at most ``max_values`` distinct values
    (a CT has thousands of values and negative Hounsfield units; an 8-bit MRI or photo has far
    more than 16 grey levels). Linear in the voxel count (a histogram, no sort).
    """
    data = np.asarray(data)
    if data.size == 0 or not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        return None
    if data.dtype == bool:
        return "a true/false mask"
    lo, hi = data.min(), data.max()
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 255:
        return None
    if np.issubdtype(data.dtype, np.floating) and not np.array_equal(data, np.round(data)):
        return None
    counts = np.bincount(data.astype(np.uint8, copy=False).ravel(), minlength=256)
    distinct = int((counts > 0).sum())
    if distinct > max_values:
        return None
    return f"only the whole numbers {int(lo)}..{int(hi)}, {distinct} distinct values"
