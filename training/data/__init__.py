"""Datasets: readers for each on-disk layout, in-memory cases, slice sampling and augmentation.

Every reader returns ``Case`` volumes (for validation and evaluation) or ``Slice`` pairs (for
training), with intensities already normalised to [0, 1]; ``SliceDataset`` augments and resizes.
"""

from .cases import Case, Slice, cases_to_slices, slices_from_arrays
from .dataset import SliceDataset
from .readers import (
    read_acdc_slices,
    read_h5_volumes,
    read_nifti_pairs,
    read_npz_slices,
    read_phantom_cases,
)

__all__ = [
    "Case",
    "Slice",
    "SliceDataset",
    "cases_to_slices",
    "read_acdc_slices",
    "read_h5_volumes",
    "read_nifti_pairs",
    "read_npz_slices",
    "read_phantom_cases",
    "slices_from_arrays",
]
