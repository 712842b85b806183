"""Describe checkpoints for a person choosing one: name, modality, classes, what it is for.

Everything comes from the checkpoint's own metadata (its model card, written by
``benchmarks/make_model_card.py``; the training record for older files), so a model chosen
by Browse is described the same way as a shipped one. Qt-free: the Segment widget and the
CLI both read it. Reading metadata never builds the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fit_check import ScanExpectation


@dataclass(frozen=True)
class ModelSummary:
    """What the model chooser shows for one checkpoint."""

    path: Path
    display_name: str
    modality: str | None
    class_names: tuple[str, ...]
    description: str
    validation_dice: float | None
    input_size: tuple[int, ...]
    intensities: str
    intended_use: str | None = None
    training_data: str | None = None
    training_command: str | None = None
    taught: str | None = None  # "derived from X, taught on N corrected slices of M scans (date)"
    added_classes: tuple[str, ...] = ()  # classes taught after training, one line each

    @property
    def label(self) -> str:
        """Short text for a list entry: ``ACDC cine MRI (MRI)``."""
        return f"{self.display_name} ({self.modality})" if self.modality else self.display_name

    def details(self) -> str:
        """The full description, several short lines (for a wrapped label or a tooltip)."""
        lines = [self.label, self.description]
        lines.append(f"Classes: {', '.join(self.class_names[1:]) or 'none'}")
        if self.validation_dice is not None:
            what = ("Dice on the corrected slices it was taught on" if self.taught
                    else "Validation mean Dice")
            lines.append(f"{what}: {self.validation_dice:.3f}")
        lines.append(f"Input {'x'.join(map(str, self.input_size))} · intensities: "
                     f"{self.intensities}")
        if self.training_data and self.training_data not in self.description:
            lines.append(f"{'First trained' if self.taught else 'Trained'} on: "
                         f"{self.training_data}")
        lines += [f"Added class {text}" for text in self.added_classes]
        return "\n".join(line for line in lines if line)


def summarize_checkpoint(path: str | Path, meta: Mapping[str, Any]) -> ModelSummary:
    """A ``ModelSummary`` from metadata read defensively (dict or ``CheckpointMeta``)."""
    card = _mapping(meta.get("card"))
    training = _mapping(meta.get("training"))
    model = _mapping(meta.get("model"))
    norm = _mapping(meta.get("normalization"))
    names = tuple(str(n) for n in (meta.get("class_names") or ()))
    data = _text(card.get("training_data")) or _text(training.get("data"))
    dice = _mean_dice(card.get("validation_dice")) if card.get("validation_dice") else \
        _mean_dice(training.get("val_dice"))
    modality = ScanExpectation.from_metadata(meta).modality
    display = _text(card.get("display_name")) or Path(path).stem
    description = _text(card.get("intended_use")) or _default_description(model, data)
    taught = _taught(card.get("taught"))
    if taught:  # no longer the model the rest of the card describes
        display, description = Path(path).stem, f"Taught on your corrections: {taught}."
        dice = _mean_dice(training.get("val_dice"))  # scored on the corrected slices
    return ModelSummary(
        path=Path(path),
        display_name=display,
        modality=modality,
        class_names=names,
        description=description,
        validation_dice=dice,
        input_size=tuple(int(s) for s in (meta.get("input_size") or ())),
        intensities=_intensities(norm),
        intended_use=_text(card.get("intended_use")),
        training_data=data,
        training_command=_text(card.get("training_command")) or _text(training.get("command")),
        taught=taught,
        added_classes=_added_classes(card.get("added_classes")),
    )


def describe_checkpoint(path: str | Path) -> ModelSummary:
    """Read ``path``'s metadata and summarise it; ``CheckpointError`` if it is no checkpoint."""
    from src_model import read_metadata

    return summarize_checkpoint(path, read_metadata(path))


def list_checkpoints(folder: str | Path) -> list[ModelSummary]:
    """Every readable checkpoint in ``folder``, real-data models first, then by name.

    Unreadable files are skipped: a damaged file in a models folder must not hide the others
    (choosing it by path still gives the one-line refusal).
    """
    from src_model import CheckpointError

    out = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            out.append(describe_checkpoint(path))
        except CheckpointError:
            continue
    return sorted(out, key=lambda m: (_is_phantom(m.training_data), m.display_name.lower()))


# ---------------------------------------------------------------------------- helpers
def _default_description(model: Mapping[str, Any], data: str | None) -> str:
    name = model.get("name", "model")
    if _is_phantom(data):
        return (f"Phantom-only demo ({name}): trained on generated CT phantoms "
                f"({data}), not on real scans.")
    return f"{name} trained on {data}." if data else f"{name} (no training record)."


def _added_classes(value: Any) -> tuple[str, ...]:
    """One line per added class of the card (``AddedClass.describe``); bad entries skipped."""
    from src_model.checkpoint_meta import AddedClass

    out = []
    for item in value if isinstance(value, list | tuple) else ():
        try:
            out.append(AddedClass(**dict(item)).describe())
        except (TypeError, ValueError):
            continue
    return tuple(out)


def _taught(records: Any) -> str | None:
    """The latest ``card.taught`` record in words (with how many times before), or None."""
    from src_model.checkpoint_meta import TaughtRecord

    if not isinstance(records, list | tuple) or not records:
        return None
    try:
        text = TaughtRecord(**_mapping(records[-1])).describe()
    except TypeError:  # not a record (the file was validated when read with read_metadata)
        return None
    if len(records) > 1:
        text += f"; taught {len(records)} times in all"
    return text


def _is_phantom(data: str | None) -> bool:
    return bool(data) and str(data).startswith("phantom:")


def _intensities(norm: Mapping[str, Any]) -> str:
    kind = norm.get("kind", "none")
    if kind == "ct_window":
        return f"CT window {norm.get('low', -125):g}..{norm.get('high', 275):g} HU"
    if kind == "percentile":
        low, high = norm.get("low", 0.5), norm.get("high", 99.5)
        if (low, high) == (0, 100):
            return "per-volume min-max scaling"
        return f"per-volume percentiles {low:g}-{high:g}"
    return "already in [0, 1]"


def _mean_dice(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("mean")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}

