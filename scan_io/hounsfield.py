"""Whether a volume's intensities are CT Hounsfield units: one rule for the whole product.

A CT in Hounsfield units has air around the body at about -1000 HU, so its lowest half-percent
of voxels lies at or below -500; MRI and other relative-intensity scans are (nearly)
non-negative. Padding outside the field of view goes down to about -3024 HU, never lower.
The display window (``scan_io.display``) and the fit check against a model
(``training.inference.fit_check``) both ask this question; they use this one answer so a scan
cannot be shown as CT and checked as MRI. Metal can push a CT far above +3071 HU (extended
scales), so no upper bound is imposed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AIR_HU", "looks_like_ct", "sample_looks_like_ct", "sample_voxels"]

AIR_HU = -500.0  # the 0.5th percentile of a CT lies at or below this (air around the body)
AIR_PERCENTILE = 0.5
LOWEST_HU = -3100.0  # below this the values are not Hounsfield units (padding is >= -3024)
SAMPLE_VOXELS = 2_000_000  # voxels looked at (a strided subset of larger volumes)


def sample_voxels(data: np.ndarray, size: int = SAMPLE_VOXELS) -> np.ndarray:
    """About ``size`` finite voxels on a regular grid, as float64 (no copy of the volume)."""
    data = np.asarray(data)
    step = max(1, int(np.ceil((data.size / size) ** (1 / max(data.ndim, 1)))))
    sample = data[(slice(None, None, step),) * data.ndim].reshape(-1).astype(np.float64)
    return sample[np.isfinite(sample)]


def looks_like_ct(data: np.ndarray) -> tuple[bool, str]:
    """(is CT in Hounsfield units, a one-line reason) from the intensities alone."""
    return sample_looks_like_ct(sample_voxels(data))


def sample_looks_like_ct(sample: np.ndarray) -> tuple[bool, str]:
    """``looks_like_ct`` on voxels already drawn by ``sample_voxels``."""
    if sample.size == 0:
        return False, "no finite voxels"
    air, lo, hi = np.percentile(sample, AIR_PERCENTILE), sample.min(), sample.max()
    if air <= AIR_HU and lo >= LOWEST_HU:
        return True, (f"intensities {lo:g}..{hi:g} with air at {air:g} look like CT "
                      "Hounsfield units")
    return False, (f"intensities {lo:g}..{hi:g} ({AIR_PERCENTILE:g}th percentile {air:g}) "
                   "are not Hounsfield units: treated as MRI")
