"""The contrast a scan opens with: a soft-tissue window for CT, percentile limits for MRI.

A raw CT shown min..max (about -1100..1200 HU) looks washed out; radiologists read the abdomen
with a soft-tissue window, width 400 and level 40 HU (-160..240). MRI has no absolute units,
so its limits come from the volume itself (1st..99th percentile). Which one applies is
decided from the intensities (``scan_io.hounsfield``, the rule the fit check uses too): a CT
in Hounsfield units has air at about -1000, so a volume whose lowest half-percent lies at or
below -500 is treated as CT; anything else as MRI (or another relative-intensity scan). The
choice and its reason go into the layer metadata (``metadata["display"]``) so the user can
see why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .hounsfield import sample_looks_like_ct, sample_voxels

__all__ = ["DisplayWindow", "choose_display_window", "CT_SOFT_TISSUE", "MRI_PERCENTILES"]

CT_SOFT_TISSUE = (400.0, 40.0)  # width, level (HU)
MRI_PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class DisplayWindow:
    """Contrast limits and why: ``kind`` is "ct_soft_tissue" or "percentile"."""

    kind: str
    low: float
    high: float
    reason: str

    @property
    def contrast_limits(self) -> tuple[float, float]:
        return (self.low, self.high)

    def to_metadata(self) -> dict[str, Any]:
        """Plain dict for ``layer.metadata["display"]``."""
        return asdict(self)


def choose_display_window(data: np.ndarray) -> DisplayWindow:
    """Soft-tissue window (W400/L40) for a CT, 1st..99th percentile limits otherwise."""
    sample = sample_voxels(data)
    is_ct, reason = sample_looks_like_ct(sample)
    if is_ct:
        width, level = CT_SOFT_TISSUE
        return DisplayWindow("ct_soft_tissue", level - width / 2, level + width / 2,
                             f"CT soft-tissue window W{width:g}/L{level:g}: {reason}")
    if sample.size == 0:
        return DisplayWindow("percentile", 0.0, 1.0, reason)
    low, high = (float(v) for v in np.percentile(sample, MRI_PERCENTILES))
    if high <= low:  # a constant (or nearly) volume
        low, high = float(sample.min()), float(sample.max())
        if high <= low:
            high = low + 1.0
    p0, p1 = MRI_PERCENTILES
    return DisplayWindow("percentile", low, high,
                         f"percentile limits {p0:g}%..{p1:g}%: {reason}")
