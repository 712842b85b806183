"""Sample data: the generated abdominal CT phantom (seed 0) and its 8-organ truth.

Generated on demand (about a second), so nothing large ships; the layers carry the same
NIfTI metadata the reader gives, so saving a segmentation of the sample lands on its grid.
"""

from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np

from scan_io.display import choose_display_window
from scan_io.nifti import NiftiVolume
from training.data.phantom import make_phantom

from ._colormaps import label_colormap
from ._reader import nifti_metadata

SAMPLE_SEED = 0


def _volume(data: np.ndarray, affine: np.ndarray, spacing) -> NiftiVolume:
    header = nib.Nifti1Image(data, affine).header
    header.set_xyzt_units("mm")
    return NiftiVolume(data=data, affine=affine, header=header, spacing=tuple(spacing))


def sample_abdomen_ct(seed: int = SAMPLE_SEED) -> list[tuple[Any, dict[str, Any], str]]:
    """The CT phantom as an Image layer (HU, CT window) and its truth as a Labels layer."""
    ph = make_phantom(seed)
    nifti_spacing = tuple(reversed(ph.spacing))  # (i, j, k) order
    image_vol = _volume(ph.to_nifti_order(ph.image), ph.affine, nifti_spacing)
    truth_vol = _volume(ph.to_nifti_order(ph.labels), ph.affine, nifti_spacing)
    window = choose_display_window(ph.image)
    return [
        (ph.image, {"name": "abdomen_ct", "scale": ph.spacing, "colormap": "gray",
                    "contrast_limits": window.contrast_limits,
                    "metadata": {"nifti": nifti_metadata(image_vol, "image"),
                                 "display": window.to_metadata(),
                                 "class_names": list(ph.class_names)}}, "image"),
        (ph.labels, {"name": "abdomen_ct truth", "scale": ph.spacing, "opacity": 0.5,
                     "visible": False,
                     "colormap": label_colormap(ph.class_colors, len(ph.class_names)),
                     "metadata": {"nifti": nifti_metadata(truth_vol, "labels"),
                                  "class_names": list(ph.class_names)}}, "labels"),
    ]

