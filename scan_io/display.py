"""The contrast a scan opens with: a soft-tissue window for CT, percentile limits for MRI.

A raw CT shown min..max (about -1100..1200 HU) looks washed out; radiologists read the abdomen
with a soft-tissue window, width 400 and level 40 HU (-160..240). MRI has no absolute units,
so its limits come from the volume itself (1st..99th percentile). Which one applies is
decided from the intensities: a CT in Hounsfield units has air at about -1000, so a volume
whose lowest percentile lies at or below -500 and whose range fits the HU scale is treated as
CT; anything else as MRI (or another relative-intensity scan). The choice and its reason go
into the layer metadata (``metadata["display"]``) so the user can see why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["DisplayWindow", "choose_display_window", "CT_SOFT_TISSUE", "MRI_PERCENTILES"]

CT_SOFT_TISSUE = (400.0, 40.0)  # width, level (HU)
MRI_PERCENTILES = (1.0, 99.0)
_AIR_HU = -500.0  # the 0.5th percentile of a CT lies below this (air around the body)
_HU_MAX = 4100.0  # above this (metal aside, rare) the values are not HU
_SAMPLE = 2_000_000  # voxels looked at (a strided subset of larger volumes)


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


def _sample(data: np.ndarray) -> np.ndarray:
    """About `_SAMPLE` voxels on a regular grid (no copy of the whole volume first)."""
    data = np.asarray(data)
    step = max(1, int(np.ceil((data.size / _SAMPLE) ** (1 / max(data.ndim, 1)))))
    sample = data[(slice(None, None, step),) * data.ndim].reshape(-1)
    if np.issubdtype(sample.dtype, np.floating):
        sample = sample[np.isfinite(sample)]
    return sample


def looks_like_ct(data: np.ndarray) -> tuple[bool, str]:
    """(is CT, reason) from the intensities alone (see the module docstring)."""
    sample = _sample(data)
    if sample.size == 0:
        return False, "no finite voxels"
    p_low, lo, hi = np.percentile(sample, 0.5), sample.min(), sample.max()
    if p_low <= _AIR_HU and lo >= -3100 and hi <= _HU_MAX:
        return True, (f"intensities {float(lo):g}..{float(hi):g} with air at "
                      f"{float(p_low):g} look like CT Hounsfield units")
    return False, (f"intensities {float(lo):g}..{float(hi):g} (0.5th percentile "
                   f"{float(p_low):g}) are not Hounsfield units: treated as MRI")


def choose_display_window(data: np.ndarray) -> DisplayWindow:
    """Soft-tissue window (W400/L40) for a CT, 1st..99th percentile limits otherwise."""
    is_ct, reason = looks_like_ct(data)
    if is_ct:
        width, level = CT_SOFT_TISSUE
        return DisplayWindow("ct_soft_tissue", level - width / 2, level + width / 2,
                             f"CT soft-tissue window W{width:g}/L{level:g}: {reason}")
    sample = _sample(data)
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
