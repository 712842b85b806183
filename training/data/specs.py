"""Data specs on the command line: a folder (layout detected) or ``phantom:SEEDS``.

Examples: ``../shared/data/acdc/train_slices`` (2-D h5 slices), ``.../val_volumes`` (3-D h5),
``train_npz/`` (Synapse), a folder with ``imagesTr``/``labelsTr`` (NIfTI), ``phantom:100-111``,
a DICOM SEG file (or a folder of SEGs) beside the series it labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .cases import Case, Slice, cases_to_slices
from .normalization import IntensityNormalization
from .readers import (
    _read_h5,
    read_acdc_slices,
    read_h5_volumes,
    read_nifti_pairs,
    read_npz_slices,
    read_phantom_cases,
    read_seg_cases,
)


def parse_seeds(text: str) -> list[int]:
    """``"100-111"``, ``"3,5,9"`` or a mix -> sorted unique seeds."""
    seeds: set[int] = set()
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = part.split("-")
                seeds.update(range(int(lo), int(hi) + 1))
            elif part.strip():
                seeds.add(int(part))
    except ValueError as err:
        raise ValueError(f"Bad seed list {text!r}: use e.g. 100-111 or 1,2,3") from err
    if not seeds:
        raise ValueError(f"Bad seed list {text!r}: no seeds")
    return sorted(seeds)


def _layout(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"Data path {path} does not exist")
    from scan_io.dicom_seg_read import is_seg_file, seg_files_in

    if path.is_file():
        if is_seg_file(path):
            return "seg"
        raise ValueError(f"{path} is a file: give a data folder, a DICOM SEG file, or "
                         "phantom:SEEDS")
    if (path / "imagesTr").is_dir():
        return "nifti"
    if next(path.glob("*.npz"), None) is not None:
        return "npz"
    first = next(path.glob("*.h5"), None)
    if first is not None:
        image, _ = _read_h5(first)
        return "h5_slices" if image.ndim == 2 else "h5_volumes"
    if seg_files_in(path):
        return "seg"
    raise ValueError(
        f"Cannot tell the layout of {path}: expected *.h5 files (ACDC / Synapse test volumes), "
        "*.npz slices (Synapse train_npz), imagesTr/ + labelsTr/ (NIfTI), DICOM SEG files "
        "beside their series, or phantom:SEEDS"
    )


def load_cases(spec: str, normalization: IntensityNormalization, *,
               class_names: Sequence[str] | None = None, **phantom_kwargs) -> list[Case]:
    """Volumes for validation/evaluation. ``class_names`` (the model's) map the segments of
    DICOM SEG labels to class numbers; other layouts store class numbers already."""
    if spec.startswith("phantom:"):
        return read_phantom_cases(parse_seeds(spec[8:]), normalization, **phantom_kwargs)
    path = Path(spec)
    layout = _layout(path)
    if layout == "seg":
        return read_seg_cases(path, normalization, class_names)
    if layout == "h5_volumes":
        return read_h5_volumes(path)
    if layout == "nifti":
        return read_nifti_pairs(path, normalization)
    raise ValueError(f"{path} holds 2-D slices ({layout}); evaluation needs 3-D volumes")


def load_slices(spec: str, normalization: IntensityNormalization,
                **phantom_kwargs) -> list[Slice]:
    """2-D training slices (volumes are cut into their labelled slices)."""
    if spec.startswith("phantom:"):
        return cases_to_slices(load_cases(spec, normalization, **phantom_kwargs), True)
    path = Path(spec)
    layout = _layout(path)
    if layout == "h5_slices":
        return read_acdc_slices(path)
    if layout == "npz":
        return read_npz_slices(path)
    return cases_to_slices(load_cases(spec, normalization), only_labelled=True)


def max_label(slices: list[Slice]) -> int:
    if not slices:
        raise ValueError("No labelled training slices: every label image is empty")
    return int(max(int(np.max(s.label)) for s in slices))
