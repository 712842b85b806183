"""The one check for label maps: non-negative whole numbers below the class count.

Every reader of label files (NIfTI folders, h5 and npz slices), the plugin's hand-over for
fine-tuning and the label writers call `check_labels`; a label map never wraps through a
narrow integer type (264 -> 8, 256 -> 0, -1 -> 255) or gets truncated (7.6 -> 7) on the way.
The message names the offending value and where it came from.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_labels", "label_storage_dtype"]


def label_storage_dtype(high: int) -> np.dtype:
    """The smallest unsigned type that holds labels 0..high (uint8, uint16 or uint32)."""
    for cand in (np.uint8, np.uint16, np.uint32):
        if high <= np.iinfo(cand).max:
            return np.dtype(cand)
    raise ValueError(f"label {high} is too large for a label map (at most {2**32 - 1})")


def check_labels(labels: np.ndarray, source: object, num_classes: int | None = None
                 ) -> np.ndarray:
    """``labels`` as the smallest unsigned integer type, or a one-line ValueError.

    Refused: non-numeric data, NaN/inf, fractional values (7.6), negative values (-1) and,
    when ``num_classes`` is given, values >= ``num_classes``. ``source`` names the file or
    layer in the message.
    """
    arr = np.asarray(labels)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{source}: labels must be whole numbers, got data of type {arr.dtype}")
    if arr.size == 0:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(f"{source}: label value {arr[bad][0]} is not a class index; "
                             "labels must be non-negative whole numbers")
        frac = arr != np.round(arr)
        if frac.any():
            raise ValueError(
                f"{source}: label value {float(arr[frac][0]):g} is not a whole number; labels "
                "must be non-negative whole numbers (class indices), not interpolated values"
            )
    low, high = arr.min(), arr.max()
    if low < 0:
        raise ValueError(f"{source}: label value {low:g} is negative; labels must be "
                         "non-negative whole numbers (0 = background)")
    if num_classes is not None and high >= num_classes:
        raise ValueError(
            f"{source}: label value {high:g} does not fit a model with {num_classes} classes "
            f"(0..{num_classes - 1}); relabel it or use a model with more classes"
        )
    dtype = label_storage_dtype(int(high))
    return arr if arr.dtype == dtype else arr.astype(dtype)
