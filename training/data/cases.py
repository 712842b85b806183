"""In-memory volumes and slices, and turning the plugin's arrays into training slices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from scan_io.labels import check_labels

from .normalization import IntensityNormalization, normalize


@dataclass
class Case:
    """One volume: ``image`` float32 in [0, 1] and ``label`` integer, both (S, H, W).

    The label map is checked on construction (`scan_io.labels.check_labels`: non-negative
    whole numbers) and stored as the smallest unsigned type that holds it.
    """

    name: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float] | None = None  # mm, (S, H, W) order; None: unknown

    def __post_init__(self) -> None:
        if self.image.shape != self.label.shape:
            raise ValueError(
                f"{self.name}: image shape {self.image.shape} and label shape "
                f"{self.label.shape} differ; they must be on the same grid"
            )
        if self.image.ndim != 3:
            raise ValueError(f"{self.name}: expected a 3-D volume, got shape {self.image.shape}")
        self.label = check_labels(self.label, self.name)


@dataclass
class Slice:
    """One 2-D training pair: ``image`` float32 in [0, 1] and ``label`` (unsigned integers,
    as `scan_io.labels.check_labels` stores them), both (H, W)."""

    image: np.ndarray
    label: np.ndarray
    source: str = ""
    spacing: tuple[float, float] | None = None  # in-plane mm (H, W); None: unknown
    # the slices before and after it in its volume (the slice itself at the volume's ends),
    # for models that see slice context (docs/design.md, "Slice context"); None: unknown
    neighbours: tuple[np.ndarray, np.ndarray] | None = None


def neighbour_slices(volume: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Slices ``index - 1`` and ``index + 1`` of a (S, H, W) volume, the slice itself where
    one is outside it (views, no copies)."""
    last = volume.shape[0] - 1
    return volume[max(0, index - 1)], volume[min(last, index + 1)]


def with_context(slices: np.ndarray, start: int, stop: int) -> np.ndarray:
    """(stop - start, 3, H, W): slices ``start..stop`` of a (S, H, W) stack, each between its
    neighbours (``neighbour_slices``): the input of a model with slice context."""
    index = np.arange(start, stop)
    last = slices.shape[0] - 1
    return np.stack([slices[np.maximum(index - 1, 0)], slices[index],
                     slices[np.minimum(index + 1, last)]], axis=1)


def cases_to_slices(cases: Iterable[Case], only_labelled: bool = False) -> list[Slice]:
    """Every slice of every case (or only those with some foreground)."""
    out = []
    for case in cases:
        for i in range(case.image.shape[0]):
            if only_labelled and not case.label[i].any():
                continue
            plane = None if case.spacing is None else (float(case.spacing[1]),
                                                       float(case.spacing[2]))
            out.append(Slice(case.image[i], case.label[i], f"{case.name}:{i}", plane,
                             neighbour_slices(case.image, i)))
    return out


def slices_from_arrays(
    volume: np.ndarray,
    labels: np.ndarray,
    annotated: Sequence[int] | None,
    *,
    axis: int = 0,
    normalization: IntensityNormalization,
    num_classes: int | None = None,
) -> list[Slice]:
    """What the napari plugin hands over: a raw volume, its labels, the annotated slice indices.

    ``annotated=None`` takes every slice with some foreground. Intensities are normalised with
    the checkpoint's ``normalization`` so fine-tuning sees what inference will.
    """
    volume, labels = np.asarray(volume), np.asarray(labels)
    if volume.shape != labels.shape:
        raise ValueError(
            f"Image shape {volume.shape} and labels shape {labels.shape} differ: pick the labels "
            "layer that was drawn on this image"
        )
    labels = check_labels(labels, "the labels layer", num_classes)
    image = np.moveaxis(normalize(volume, normalization), axis, 0)
    lab = np.moveaxis(labels, axis, 0)
    if annotated is None:
        annotated = [i for i in range(lab.shape[0]) if lab[i].any()]
    bad = [i for i in annotated if not 0 <= i < lab.shape[0]]
    if bad:
        raise ValueError(f"Annotated slice indices {bad} are outside 0..{lab.shape[0] - 1}")
    return [Slice(image[i], lab[i], f"slice {i}", neighbours=neighbour_slices(image, i))
            for i in sorted(annotated)]
