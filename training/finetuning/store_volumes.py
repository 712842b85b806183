"""The annotation store's cases as fine-tuning volumes, and corrected scans saved into it.

``scan_io.annotation_store`` keeps every accepted correction (image, labels, which slices);
the next fine-tune, in the panel or ``l2gnet finetune``, trains on all of them by default, so
a model improves patient after patient. A case that cannot be used is skipped with a note
(never an error that stops the run): its files are gone or unreadable, or it was drawn for
other classes than the model's. No torch at import (the panel imports this on its thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scan_io.annotation_store import AnnotationStore, StoredCase

from .finetune import CorrectedVolume, volume_from_arrays


@dataclass
class StoreVolumes:
    """What the store gives a run: the volumes, the cases they came from, notes on the rest."""

    volumes: list[CorrectedVolume] = field(default_factory=list)
    cases: list[StoredCase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def slices(self) -> int:
        return sum(len(v.corrected) for v in self.volumes)


def class_mismatch(case: StoredCase, model_names: Sequence[str]) -> str | None:
    """Why ``case``'s classes do not fit a model with ``model_names``; None when they do."""
    names = list(case.class_names)
    if names and len(names) != len(model_names):
        return (f"{case.case_id} skipped: drawn for {len(names)} classes "
                f"({', '.join(names[1:4])}{' …' if len(names) > 4 else ''}) but the model has "
                f"{len(model_names)}")
    if names and names != list(model_names):
        differ = [f"{a}/{b}" for a, b in zip(names, model_names, strict=True) if a != b]
        return (f"{case.case_id} skipped: its classes are not the model's "
                f"({', '.join(differ[:3])})")
    return None


Current = tuple[str | None, int, Sequence[int]]  # (source file, slice axis, slices)


def same_source(a: str | None, b: str | None) -> bool:
    """Two scans' source paths name the same file (as written, or once resolved)."""
    if not a or not b:
        return False
    if a == b:
        return True
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError):  # a symlink loop: not the same as anything
        return False


def store_volumes(store: AnnotationStore, class_names: Sequence[str], normalization,
                  exclude: Sequence[str] = (), current: Current | None = None,
                  currents: Sequence[Current] = ()) -> StoreVolumes:
    """Every usable case of ``store`` as a ``CorrectedVolume`` for a run that trains a model
    with ``class_names`` (a case drawn for other classes is skipped), normalised as its
    checkpoint says (``normalization``); the others as notes. ``exclude``: case ids to skip.

    ``current`` (one) or ``currents`` (several): ``(source, axis, slices)`` of a scan being
    corrected now: a stored case of the same file keeps only its other corrected slices (the
    ones corrected again now are taken from now, never twice)."""
    names = list(class_names)
    now = [*currents, *([current] if current is not None else [])]
    out = StoreVolumes()
    cases, out.notes = store.read()
    for case in cases:
        if case.case_id in exclude:
            continue
        slices = case.corrected_slices
        again = {int(i) for source, axis, corrected in now
                 if same_source(case.source, source) and case.slice_axis == axis
                 for i in corrected}
        if again:
            slices = [i for i in slices if i not in again]
            if not slices:
                out.notes.append(f"{case.case_id} left out: the same scan's slices are "
                                 "corrected now")
                continue
        why = class_mismatch(case, names)
        if why is None:
            try:
                image, labels, spacing = store.load(case)
                volume = volume_from_arrays(image, labels, slices,
                                            axis=case.slice_axis, normalization=normalization,
                                            num_classes=len(names), name=case.case_id,
                                            spacing=spacing)
            except (OSError, ValueError) as err:
                why = str(err)
                if not why.startswith(case.case_id):
                    why = f"{case.case_id} skipped: {why}"
        if why is not None:
            out.notes.append(why)
            continue
        out.volumes.append(volume)
        out.cases.append(case)
    return out


def nifti_folder_files(root, name: str) -> tuple[Path | None, Path | None]:
    """The image and labels files of case ``name`` in an imagesTr/labelsTr folder ``root``
    (resolved; None where absent)."""
    root = Path(root).expanduser().resolve()
    image = next((root / "imagesTr" / f"{name}{suffix}"
                  for suffix in ("_0000.nii.gz", "_0000.nii", ".nii.gz", ".nii")
                  if (root / "imagesTr" / f"{name}{suffix}").is_file()), None)
    labels = next((root / "labelsTr" / f"{name}{suffix}" for suffix in (".nii.gz", ".nii")
                   if (root / "labelsTr" / f"{name}{suffix}").is_file()), None)
    return image, labels


def save_nifti_folder_cases(store: AnnotationStore, root, volumes: Sequence[CorrectedVolume],
                            class_names: Sequence[str]) -> list[StoredCase]:
    """Save the corrected volumes read from an imagesTr/labelsTr folder ``root`` into the
    store, from their files (so the scan's own grid and intensities are kept); the source
    recorded is the image file's resolved path, which is how the next run knows the scan."""
    from scan_io.annotation_store import ScanGrid
    from scan_io.volume import load_scan

    saved = []
    for v in volumes:
        image_path, labels_path = nifti_folder_files(root, v.name)
        if image_path is None or labels_path is None:
            continue
        scan = load_scan(image_path)
        labels = load_scan(labels_path, labels=True).data
        grid = ScanGrid(scan.affine, scan.orientation, scan.nifti.header)
        saved.append(store.add(scan.data, labels, v.corrected, axis=0,
                               class_names=class_names, grid=grid, source=str(image_path)))
    return saved
