"""Teach a trained model a class it does not have: the checks and records around the growth.

The network surgery is ``src_model.class_growth``; this module is what ``l2gnet finetune``,
``l2gnet train --from`` and the Fine-tune panel share around it (docs/new-classes.md):

- ``NewClassRequest``: the class names asked for, checked against the model's (its names
  first, unchanged and in order, then the new ones) and against the labels (every label
  value needs a name; every new name must be painted somewhere);
- ``painted_counts``: per new class, how many voxels, slices and scans were painted, and a
  warning for a class painted on too few voxels to be learned;
- ``grow_checkpoint``: the grown model and its metadata (names, colours, the card's
  ``added_classes`` record), from a checkpoint file.

No torch at import (the panel imports it on the main thread).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from src_model.checkpoint_meta import AddedClass

MIN_PAINTED_VOXELS = 20
"""A new class painted on fewer voxels is warned about: too few to learn from."""


@dataclass(frozen=True)
class PaintedClass:
    """How much of one new class the user painted."""

    index: int
    name: str
    voxels: int
    slices: int
    scans: int

    def warning(self) -> str | None:
        """A one-line warning when there is too little to learn from, else None."""
        if self.voxels >= MIN_PAINTED_VOXELS:
            return None
        return (f"new class '{self.name}' (label {self.index}) is painted on only "
                f"{self.voxels} voxel(s): too few to learn; paint the whole structure on a few "
                f"slices (at least {MIN_PAINTED_VOXELS} voxels)")


def model_class_names(meta: Mapping[str, Any]) -> list[str]:
    """A checkpoint's class names (its defaults when it has none)."""
    from src_model.checkpoint_meta import class_names_or_default

    n = int((meta.get("model") or {}).get("num_classes") or len(meta.get("class_names") or []))
    return list(class_names_or_default(meta, n))


def unnamed_label_error(top: int, names: Sequence[str], where: str) -> ValueError:
    """The one line for a label value that no class name covers."""
    from src_model.class_growth import MAX_NEW_CLASSES

    listed = ",".join(names)
    if top - len(names) + 1 > MAX_NEW_CLASSES:
        return ValueError(
            f"Labels in {where} go up to {top}, {top - len(names) + 1} values beyond the "
            f"{len(names)} classes ({listed}): more than {MAX_NEW_CLASSES} new classes at "
            "once is refused; check that the labels hold class indices, not intensities")
    return ValueError(
        f"Label {top} in {where} has no class name (the classes are 0..{len(names) - 1}: "
        f"{listed}): to teach it as a new class, name it, e.g. --class-names {listed}"
        f"{',NAME' * (top - len(names) + 1)}; otherwise fix those voxels")


@dataclass(frozen=True)
class NewClassRequest:
    """The class names a run was asked for, split into the model's and the new ones."""

    model_names: tuple[str, ...]
    new_names: tuple[str, ...]

    @classmethod
    def from_names(cls, model_names: Sequence[str],
                   names: Sequence[str] | None) -> NewClassRequest:
        """``names`` None keeps the model's classes; otherwise checked by
        ``src_model.class_growth.new_class_names`` (one-line ``ClassGrowthError``)."""
        from src_model.class_growth import new_class_names

        model_names = tuple(str(n) for n in model_names)
        if names is None:
            return cls(model_names, ())
        return cls(model_names, tuple(new_class_names(model_names, names)))

    @property
    def names(self) -> list[str]:
        return [*self.model_names, *self.new_names]

    @property
    def growing(self) -> bool:
        return bool(self.new_names)

    @property
    def new_indices(self) -> list[int]:
        return list(range(len(self.model_names), len(self.names)))

    def check_labels(self, top: int, where: str) -> None:
        """Refuse a label value beyond the names, asking for a name (one line)."""
        if top >= len(self.names):
            raise unnamed_label_error(top, self.names, where)

    def check_painted(self, painted: Sequence[PaintedClass], where: str) -> list[str]:
        """Refuse a new class that is named but painted nowhere; warnings for too little."""
        for p in painted:
            if p.voxels == 0:
                raise ValueError(
                    f"New class '{p.name}' (label {p.index}) is not painted anywhere in "
                    f"{where}: paint it with label {p.index}, or leave its name out")
        return [w for p in painted if (w := p.warning())]


def painted_counts(labels: Iterable[tuple[str, np.ndarray]], indices: Sequence[int],
                   names: Sequence[str]) -> list[PaintedClass]:
    """Per class in ``indices``: voxels, slices and scans painted with it.

    ``labels`` yields ``(scan, array)``: a 2-D slice or a 3-D stack of slices (first axis)
    of the scan named ``scan``; the same scan may come several times.
    """
    voxels = dict.fromkeys(indices, 0)
    slices = dict.fromkeys(indices, 0)
    scans: dict[int, set[str]] = {i: set() for i in indices}
    for scan, lab in labels:
        lab = np.asarray(lab)
        stack = lab[None] if lab.ndim == 2 else lab
        for i in indices:
            hit = stack == i
            per_slice = hit.reshape(hit.shape[0], -1).sum(axis=1)
            if per_slice.any():
                voxels[i] += int(per_slice.sum())
                slices[i] += int((per_slice > 0).sum())
                scans[i].add(scan)
    return [PaintedClass(i, names[i], voxels[i], slices[i], len(scans[i])) for i in indices]


def added_records(painted: Sequence[PaintedClass], *, taught_on: str,
                  derived_from: str | None) -> list[AddedClass]:
    """The card's ``added_classes`` entries for the painted new classes, dated now (UTC)."""
    from src_model.checkpoint_meta import AddedClass

    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    return [AddedClass(name=p.name, index=p.index, taught_on=taught_on,
                       derived_from=derived_from, date=now, scans=p.scans, slices=p.slices,
                       voxels=p.voxels) for p in painted]


def grow_checkpoint(
    checkpoint: str | Path, added: Sequence[AddedClass], *,
    colors: Sequence[Sequence[float]] | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``checkpoint``'s model grown by the ``added`` classes, and its metadata (a dict).

    The model is in eval mode on the CPU, as ``load_checkpoint`` returns it; at step 0 it
    predicts exactly what the checkpoint does (``src_model.class_growth``).
    """
    from src_model import load_checkpoint
    from src_model.class_growth import grow_classes, grown_metadata

    model, meta = load_checkpoint(checkpoint)  # a fresh copy: grown and trained, never shared
    grown = grow_classes(model, len(added))
    return grown, grown_metadata(meta, added, colors=colors)
