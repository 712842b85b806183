"""Intensity normalisation, stored in the checkpoint so inference applies what training did.

CT: clip to a Hounsfield window and scale to [0, 1] (TransUNet: [-125, 275] HU). MRI: clip to
per-volume percentiles and scale. ``none``: the data is already in [0, 1] (ACDC/Synapse h5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from scan_io.checks import replace_non_finite

KINDS = ("ct_window", "percentile", "none")


@dataclass(frozen=True)
class IntensityNormalization:
    """``kind`` is one of ``KINDS``; ``low``/``high`` are HU (ct_window) or percentiles."""

    kind: str = "ct_window"
    low: float = -125.0
    high: float = 275.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"normalization kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind != "none" and not self.low < self.high:
            raise ValueError(f"normalization needs low < high, got {self.low} and {self.high}")

    def to_metadata(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_metadata(cls, meta: dict[str, Any] | None) -> IntensityNormalization:
        """Read the checkpoint's ``normalization`` entry (absent: the data is in [0, 1])."""
        if not meta:
            return cls(kind="none")
        known = {k: meta[k] for k in ("kind", "low", "high") if k in meta}
        return cls(**known)


CT_WINDOW = IntensityNormalization("ct_window", -125.0, 275.0)
MRI_PERCENTILE = IntensityNormalization("percentile", 0.5, 99.5)
NO_NORMALIZATION = IntensityNormalization("none", 0.0, 1.0)


def normalize(volume: np.ndarray, norm: IntensityNormalization) -> np.ndarray:
    """Map raw intensities to float32 in [0, 1] as ``norm`` says (the whole volume at once).

    Non-finite voxels are replaced first, with a warning (`scan_io.checks.replace_non_finite`):
    one NaN would otherwise empty its slice, or with percentiles the whole volume.
    """
    data = replace_non_finite(np.asarray(volume, dtype=np.float32), "volume to normalise")
    if norm.kind == "none":
        return np.clip(data, 0.0, 1.0) if data.size else data
    if norm.kind == "ct_window":
        low, high = norm.low, norm.high
    else:
        low, high = (float(x) for x in np.percentile(data, [norm.low, norm.high]))
        if high <= low:  # a constant volume: nothing to scale
            return np.zeros_like(data)
    return np.clip((data - low) / (high - low), 0.0, 1.0)
