"""Label values a model can be scored or trained on: whole numbers 0..num_classes-1.

A label of 264 stored as uint8 would become 8, -1 would become 255, 7.6 would become 7: each
a silent wrong score (docs/design.md, "Reliability"). This check runs on the values as read,
before any cast, and names the value and where it came from.
"""

from __future__ import annotations

import numpy as np


def check_label_values(label: np.ndarray, num_classes: int, source: str) -> None:
    """``ValueError`` unless every value is a whole number in ``0..num_classes - 1``."""
    arr = np.asarray(label)
    if arr.size == 0 or arr.dtype == bool:
        return
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{source} has labels of type {arr.dtype}; labels must be whole "
                         "numbers (class ids)")
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            raise ValueError(f"{source} has a non-finite label ({arr[~finite].flat[0]}); labels "
                             f"must be whole numbers 0..{num_classes - 1}")
        fractional = arr != np.round(arr)
        if fractional.any():
            raise ValueError(f"{source} has label {float(arr[fractional].flat[0]):g}, which is "
                             "not a whole number: labels are class ids, not intensities (is "
                             "this an image rather than a label map?)")
    low, high = arr.min(), arr.max()
    if low < 0:
        raise ValueError(f"{source} has label {low:g} (negative): labels must be 0.."
                         f"{num_classes - 1}")
    if high >= num_classes:
        raise ValueError(
            f"{source} has label {high:g} but the checkpoint's model has {num_classes} classes "
            f"(0..{num_classes - 1}): this checkpoint was not trained for this data")
