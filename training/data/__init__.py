"""Datasets: readers for each on-disk layout, in-memory cases, slice sampling and augmentation.

Every reader returns ``Case`` volumes (for validation and evaluation) or ``Slice`` pairs (for
training), with intensities already normalised to [0, 1]; ``SliceDataset`` augments and resizes.
What every model sees the same way at training and inference lives here too: the intensity
``normalization`` stored in a checkpoint, the ``physical_scale`` (resampling to a pixel size),
and the generated CT ``phantom`` (the sample scan and the demo's training data).

Re-exported lazily (``lazy_loader``), so ``training.data.phantom`` and
``training.data.normalization`` import without torch. Imports nothing else from ``training``.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submod_attrs={
        "cases": ["Case", "Slice", "cases_to_slices", "slices_from_arrays"],
        "dataset": ["SliceDataset"],
        "readers": ["read_acdc_slices", "read_h5_volumes", "read_nifti_pairs",
                    "read_npz_slices", "read_phantom_cases"],
        "normalization": ["IntensityNormalization", "normalize"],
        "phantom": ["Phantom", "make_phantom"],
    },
)
