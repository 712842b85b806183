"""``CheckpointMeta``: the typed, validated metadata every checkpoint carries.

One place says which fields a checkpoint has, what each defaults to and which values are
sane (docs/design.md, "Checkpoints"). A checkpoint is a file from outside: its metadata is
checked here against bounds *before* anything is built from it, so a crafted file
(``num_classes = 10**12``, a width of a billion, nested JSON thousands deep, a string where a
number belongs) is refused in one line instead of exhausting memory or ending in a traceback.

For code written against the old dict, ``CheckpointMeta`` is also a read-only ``Mapping``
over its JSON form (``meta["class_names"]``, ``meta.get("model")``); new code reads the
attributes (``meta.class_names``, ``meta.model.num_classes``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version
from typing import Any, NoReturn

FORMAT = "napari-l2gnet/1"
try:  # the package version is written once, in pyproject.toml
    VERSION = _package_version("napari-l2gnet")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"

DEFAULT_INPUT_SIZE: tuple[int, int] = (224, 224)
"""The papers' training and inference slice size (TransUNet, L2GNet)."""

MAX_CLASSES = 1024
MAX_INPUT_SIDE = 4096
MIN_INPUT_SIDE = 8
MIN_SPACING_MM = 0.0  # exclusive: a pixel size must be > 0
MAX_SPACING_MM = 100.0
MAX_CONFIG_NUMBER = 65536  # widths, codebook size, heads...: generous, far below an OOM
MAX_JSON_DEPTH = 32
MAX_STRING = 4096
KEPT_FROM = "kept from "
"""How ``PostProcessing.chosen_on`` starts when the choice was made for the starting model."""
MAX_TAUGHT = 1000  # card.taught records (one per fine-tune a model went through)
MAX_SEEN_SCANS = 10_000  # card.taught[].seen: scans one fine-tune was taught on
MAX_SLICES = 100_000  # ... and slice indices per scan

_LEGACY_DROPPED = frozenset({"slice_axis"})  # written by older versions, read by nothing
_CARD_TEXT = ("display_name", "modality", "intended_use", "training_data", "training_command")
_MODALITY_OF_NORMALIZATION = {"ct_window": "CT", "percentile": "MRI"}


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint; the message says which and why."""


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """``("background", "class 1", ...)``: the names a checkpoint without names gets."""
    return ("background",) + tuple(f"class {i}" for i in range(1, num_classes))


@dataclass(frozen=True)
class ModelInfo:
    """Which registered network to build: ``build_model(name, num_classes, **config)``."""

    name: str
    num_classes: int
    config: Mapping[str, Any]


@dataclass(frozen=True)
class AddedClass:
    """A class added to a trained model after the fact (``src_model.class_growth``).

    Attributes:
        name: the class name (``class_names[index]``).
        index: its label value.
        taught_on: where it was taught, in words (the data or scans, the command or panel).
        derived_from: the checkpoint it was added to.
        date: when (ISO 8601, UTC).
        scans: how many scans it was painted on.
        slices: how many slices it was painted on.
        voxels: how many voxels were painted with it.
    """

    name: str
    index: int
    taught_on: str
    derived_from: str | None = None
    date: str | None = None
    scans: int | None = None
    slices: int | None = None
    voxels: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    def describe(self) -> str:
        """``lesion (label 4): taught on ... , 34 slices of 2 scans, 2026-12-07``."""
        counts = ", ".join(f"{n} {word}" for n, word in ((self.slices, "slices"),
                                                        (self.scans, "scans")) if n is not None)
        parts = [f"taught on {self.taught_on}", counts, (self.date or "")[:10]]
        return f"{self.name} (label {self.index}): " + ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class SeenSlices:
    """The corrected slices of one scan a fine-tune was taught on; the scan is known by a
    fingerprint of its image (``training.finetuning.seen_slices``), never by its pixels."""

    fingerprint: str
    slices: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "slices": list(self.slices)}


@dataclass(frozen=True)
class TaughtRecord:
    """How a model was taught from another on a user's corrections (one fine-tune).

    Attributes:
        derived_from: the starting model, as a person knows it (its card's name, or file).
        corrected_slices: how many corrected slices taught it.
        scans: of how many scans.
        date: when (ISO 8601, UTC).
        derived_from_file: the starting checkpoint's file name.
        seen: which slices of which scans (``SeenSlices``), so that a later fine-tune judges
            whether this model already agrees with a user on slices it was not taught on.

    The Dice the taught model reached is the training record's ``val_dice``: measured on the
    corrected slices it was taught on, not on held-out data.
    """

    derived_from: str
    corrected_slices: int
    scans: int
    date: str
    derived_from_file: str | None = None
    seen: tuple[SeenSlices, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if getattr(self, f.name) is not None}
        if self.seen is not None:
            out["seen"] = [s.to_dict() for s in self.seen]
        return out

    def describe(self) -> str:
        """``derived from Demo, taught on 6 corrected slices of 1 scan (2026-12-07)``."""
        s = "s" * (self.scans != 1)
        return (f"derived from {self.derived_from}, taught on {self.corrected_slices} "
                f"corrected slice{'s' * (self.corrected_slices != 1)} of {self.scans} "
                f"scan{s} ({self.date[:10]})")


@dataclass(frozen=True)
class ModelCard:
    """What a person needs before trusting a model; every field optional (old checkpoints).

    ``validation_dice`` maps class name (and ``"mean"``) to the validation Dice the run
    reached. ``added_classes`` records classes taught after the model was trained (oldest
    first). ``taught`` records each time the model was taught on a user's corrections
    (``training.finetuning.finetune``; oldest first): such a model is no longer what the rest of the
    card describes. ``CheckpointMeta.resolved_card()`` fills gaps from the training record.
    """

    display_name: str | None = None
    modality: str | None = None
    intended_use: str | None = None
    training_data: str | None = None
    training_command: str | None = None
    validation_dice: Mapping[str, float] | None = None
    added_classes: tuple[AddedClass, ...] | None = None
    taught: tuple[TaughtRecord, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.validation_dice is not None:
            out["validation_dice"] = dict(self.validation_dice)
        if self.added_classes is not None:
            out["added_classes"] = [a.to_dict() for a in self.added_classes]
        if self.taught is not None:
            out["taught"] = [t.to_dict() for t in self.taught]
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class PostProcessing:
    """Post-processing of the model's label maps, chosen on validation data (nnU-Net style).

    ``largest_component``: the classes (by name) of which only the largest 3-D connected
    component is kept; the other components become background. ``chosen_on``: the data the
    choice was measured on; ``measured``: the per-class figures behind it (free-form JSON).
    """

    largest_component: tuple[str, ...] = ()
    chosen_on: str | None = None
    measured: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"largest_component": list(self.largest_component)}
        if self.chosen_on is not None:
            out["chosen_on"] = self.chosen_on
        if self.measured:
            out["measured"] = dict(self.measured)
        return out

    def kept_from(self, start: str) -> PostProcessing:
        """The same choice for a model trained on from ``start``: it was measured on the
        start, not on the new model, and ``chosen_on`` says so (``measured``, the start's
        figures, is dropped); a choice already kept from an earlier model stays as it is."""
        if (self.chosen_on or "").startswith(KEPT_FROM):
            return PostProcessing(self.largest_component, self.chosen_on)
        return PostProcessing(self.largest_component, f"{KEPT_FROM}{start} (chosen there on "
                                                      f"{self.chosen_on or 'unrecorded data'})")

    @classmethod
    def from_metadata(cls, data: Any) -> PostProcessing | None:
        """From a ``PostProcessing``, its JSON form, or None (no post-processing)."""
        if data is None or isinstance(data, PostProcessing):
            return data
        return cls(tuple(data.get("largest_component") or ()), data.get("chosen_on"),
                   dict(data.get("measured") or {}))


@dataclass(frozen=True, eq=True)
class CheckpointMeta(Mapping):
    """Everything needed to rebuild and use a model, besides its weights.

    Attributes:
        model: the architecture (registry name, class count, config).
        class_names: one per class, ``class_names[0]`` is the background.
        class_colors: RGB(A) per class in [0, 1], or ``None`` for the viewer's defaults.
        input_size: (H, W) slices are resized to before the network (with
            ``target_spacing_mm``: the window the resampled slice is fitted to).
        target_spacing_mm: in-plane pixel size (mm, rows then columns) slices with a known
            voxel size are resampled to before the network (the training data's median, as
            nnU-Net plans it); ``None``: resize to ``input_size`` whatever the pixel size
            (older checkpoints, and data without a voxel size).
        normalization: the intensity normalisation entry (``training.data.normalization``).
        slice_context: 0: the grey slice repeated to the 3 input channels (the papers); 1:
            the channels are the slice before, the slice and the slice after (2.5-D input;
            docs/design.md, "Slice context"). Older checkpoints mean 0.
        encoder_weights: where the encoder's initial weights came from.
        training: the run's record (command, data, epochs, Dice...), free-form JSON.
        card: the model card (modality, intended use, ...).
        postprocessing: the post-processing chosen on validation (``PostProcessing``), or
            None (none; checkpoints written before it existed).
        extra: any other top-level entries (e.g. ``finetuned_from``), kept as written.
    """

    model: ModelInfo
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[float, ...], ...] | None = None
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    normalization: Mapping[str, Any] = field(default_factory=lambda: {"kind": "none"})
    target_spacing_mm: tuple[float, float] | None = None
    slice_context: int = 0
    encoder_weights: str | None = "random"
    training: Mapping[str, Any] = field(default_factory=dict)
    card: ModelCard = field(default_factory=ModelCard)
    postprocessing: PostProcessing | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    version: str = VERSION

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, data: Any, source: str = "checkpoint") -> CheckpointMeta:
        """Validate the JSON metadata and fill defaults; ``CheckpointError`` in one line.

        ``source`` (usually the file path) starts every message.
        """
        check = _Checker(source)
        if not isinstance(data, Mapping):
            check.fail("metadata", "must be a JSON object")
        check.depth(data)
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            check.fail("format", f"is {fmt!r}, this version reads {FORMAT!r} (a newer "
                       "napari-l2gnet wrote it? update napari-l2gnet)")
        model = data.get("model")
        if not isinstance(model, Mapping):
            check.fail("model", "is missing (name, num_classes and config are needed)")
        name = check.text(model.get("name"), "model.name", limit=100)
        num_classes = check.integer(model.get("num_classes"), "model.num_classes", 1,
                                    MAX_CLASSES)
        config = model.get("config")
        if not isinstance(config, Mapping):
            check.fail("model.config", "must be a JSON object of config fields")
        for key, value in config.items():
            check.config_value(value, f"model.config.{key}")

        names = data.get("class_names")
        if names is None:
            names = default_class_names(num_classes)
        else:
            check.sequence(names, "class_names", num_classes)
            names = tuple(check.text(n, f"class_names[{i}]", 200) for i, n in enumerate(names))
        colors = data.get("class_colors")
        if colors is not None:
            check.sequence(colors, "class_colors", num_classes)
            colors = tuple(check.color(c, f"class_colors[{i}]") for i, c in enumerate(colors))
        size = data.get("input_size")
        if size is None:
            size = DEFAULT_INPUT_SIZE
        else:
            check.sequence(size, "input_size", 2)
            size = tuple(check.integer(s, "input_size", MIN_INPUT_SIDE, MAX_INPUT_SIDE)
                         for s in size)
        norm = data.get("normalization") or {"kind": "none"}
        if not isinstance(norm, Mapping):
            check.fail("normalization", "must be a JSON object such as {\"kind\": \"none\"}")
        check.text(norm.get("kind", "none"), "normalization.kind", 32)
        for key in ("low", "high"):
            if key in norm:
                check.number(norm[key], f"normalization.{key}", -1e6, 1e6)
        target = data.get("target_spacing_mm")
        if target is not None:
            check.sequence(target, "target_spacing_mm", 2)
            target = tuple(float(check.number(t, "target_spacing_mm", MIN_SPACING_MM,
                                              MAX_SPACING_MM)) for t in target)
            if min(target) <= 0:
                check.fail("target_spacing_mm", f"= {list(target)} must be > 0 mm")
        context = check.integer(data.get("slice_context", 0), "slice_context", 0, 1)
        if context and int(dict(config).get("in_channels", 3)) != 3:
            check.fail("slice_context", "= 1 needs a model with 3 input channels")
        weights = data.get("encoder_weights", "random")
        if weights is not None:
            check.text(weights, "encoder_weights", MAX_STRING)
        training = data.get("training") or {}
        if not isinstance(training, Mapping):
            check.fail("training", "must be a JSON object")
        card = check.card(data.get("card") or {})
        post = check.postprocessing(data.get("postprocessing"), names)
        for added in card.added_classes or ():
            if added.index >= num_classes or names[added.index] != added.name:
                check.fail("card.added_classes", f"names {added.name!r} as label "
                           f"{added.index}, which is not that class in class_names")
        known = {f.name for f in fields(cls)} - {"extra"}
        extra = {k: v for k, v in data.items() if k not in known and k not in _LEGACY_DROPPED}
        return cls(
            model=ModelInfo(name, num_classes, dict(config)),
            class_names=names,
            class_colors=colors,
            input_size=size,  # type: ignore[arg-type]
            normalization=dict(norm),
            target_spacing_mm=target,  # type: ignore[arg-type]
            slice_context=context,
            encoder_weights=weights,
            training=dict(training),
            card=card,
            postprocessing=post,
            extra=extra,
            format=FORMAT,
            version=check.text(data.get("version", VERSION), "version", 32),
        )

    # ------------------------------------------------------------------ writing
    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the file (and the legacy dict view)."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            class_names=list(self.class_names),
            class_colors=None if self.class_colors is None else [list(c)
                                                                  for c in self.class_colors],
            input_size=list(self.input_size),
            normalization=dict(self.normalization),
            encoder_weights=self.encoder_weights,
            training=dict(self.training),
            format=self.format,
            version=self.version,
            model={"name": self.model.name, "num_classes": self.model.num_classes,
                   "config": dict(self.model.config)},
        )
        if self.target_spacing_mm is not None:  # absent, not null, in older files' JSON
            out["target_spacing_mm"] = [float(t) for t in self.target_spacing_mm]
        if self.slice_context:  # absent in older files' JSON and where it is 0
            out["slice_context"] = int(self.slice_context)
        card = self.card.to_dict()
        if card:
            out["card"] = card
        if self.postprocessing is not None:
            out["postprocessing"] = self.postprocessing.to_dict()
        return out

    def updated(self, **changes: Any) -> CheckpointMeta:
        """A copy with some fields changed, validated again (``dataclasses.replace`` + check)."""
        return CheckpointMeta.from_dict(replace(self, **changes).to_dict())

    # ------------------------------------------------------------------ derived
    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def resolved_card(self) -> ModelCard:
        """The card with gaps filled from the training record and the normalisation."""
        t = self.training
        dice = self.card.validation_dice or t.get("val_dice")
        return ModelCard(
            display_name=self.card.display_name or self.model.name,
            modality=self.card.modality
            or _MODALITY_OF_NORMALIZATION.get(str(self.normalization.get("kind"))),
            intended_use=self.card.intended_use,
            training_data=self.card.training_data or t.get("data"),
            training_command=self.card.training_command or t.get("command"),
            validation_dice=dict(dice) if isinstance(dice, Mapping) else None,
            added_classes=self.card.added_classes,
            taught=self.card.taught,
        )

    # ------------------------------------------------------------------ legacy Mapping
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    __hash__ = None  # type: ignore[assignment]  # holds dicts


class _Checker:
    """Bounds checks that raise ``CheckpointError("<source>: metadata 'field' ...")``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, name: str, problem: str) -> NoReturn:
        raise CheckpointError(
            f"{self.source}: checkpoint metadata '{name}' {problem}; this file was not written "
            "by napari-l2gnet as it stands (damaged or edited): use another checkpoint"
        )

    def depth(self, data: Any) -> None:
        stack = [(data, 1)]
        while stack:
            item, level = stack.pop()
            if level > MAX_JSON_DEPTH:
                self.fail("metadata", f"is nested more than {MAX_JSON_DEPTH} levels deep")
            if isinstance(item, Mapping):
                stack += [(v, level + 1) for v in item.values()]
            elif isinstance(item, list | tuple):
                stack += [(v, level + 1) for v in item]

    def text(self, value: Any, name: str, limit: int) -> str:
        if not isinstance(value, str):
            self.fail(name, f"must be text, got {_show(value)}")
        if len(value) > limit:
            self.fail(name, f"is {len(value)} characters long (at most {limit})")
        return value

    def integer(self, value: Any, name: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"must be a whole number, got {_show(value)}")
        if not low <= value <= high:
            self.fail(name, f"= {_show(value)} is out of range ({low}..{high})")
        return value

    def number(self, value: Any, name: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(name, f"must be a number, got {_show(value)}")
        if not (math.isfinite(value) and low <= value <= high):
            self.fail(name, f"= {_show(value)} is out of range ({low:g}..{high:g})")
        return value

    def sequence(self, value: Any, name: str, length: int) -> None:
        if not isinstance(value, list | tuple):
            self.fail(name, f"must be a list, got {_show(value)}")
        if len(value) != length:
            self.fail(name, f"has {len(value)} entries, expected {length}")

    def color(self, value: Any, name: str) -> tuple[float, ...]:
        if not isinstance(value, list | tuple) or len(value) not in (3, 4):
            self.fail(name, f"must be 3 or 4 numbers (RGB[A]), got {_show(value)}")
        return tuple(float(self.number(c, name, 0.0, 255.0)) for c in value)

    def config_value(self, value: Any, name: str) -> None:
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, str):
            self.text(value, name, MAX_STRING)
        elif isinstance(value, int | float):
            self.number(value, name, -MAX_CONFIG_NUMBER, MAX_CONFIG_NUMBER)
        elif isinstance(value, list | tuple):
            if len(value) > 64:
                self.fail(name, f"has {len(value)} entries (at most 64)")
            for item in value:
                if isinstance(item, list | tuple | Mapping):
                    self.fail(name, "must be a flat list of numbers")
                self.config_value(item, name)
        else:
            self.fail(name, f"must be a number, text, a list or null, got {_show(value)}")

    def postprocessing(self, data: Any, class_names: Sequence[str]) -> PostProcessing | None:
        if data is None:
            return None
        if not isinstance(data, Mapping):
            self.fail("postprocessing", "must be a JSON object")
        chosen = data.get("largest_component") or []
        if not isinstance(chosen, list | tuple) or len(chosen) > MAX_CLASSES:
            self.fail("postprocessing.largest_component", "must be a list of class names")
        for name in chosen:
            if self.text(name, "postprocessing.largest_component", 200) not in class_names[1:]:
                self.fail("postprocessing.largest_component",
                          f"names {name!r}, which is not one of the foreground classes")
        on = data.get("chosen_on")
        if on is not None:
            self.text(on, "postprocessing.chosen_on", MAX_STRING)
        measured = data.get("measured") or {}
        if not isinstance(measured, Mapping):
            self.fail("postprocessing.measured", "must be a JSON object")
        return PostProcessing(tuple(chosen), on, dict(measured))

    def card(self, data: Any) -> ModelCard:
        if not isinstance(data, Mapping):
            self.fail("card", "must be a JSON object")
        values: dict[str, Any] = {}
        for key in _CARD_TEXT:
            if data.get(key) is not None:
                values[key] = self.text(data[key], f"card.{key}", MAX_STRING)
        dice = data.get("validation_dice")
        if dice is not None:
            if not isinstance(dice, Mapping) or len(dice) > MAX_CLASSES + 1:
                self.fail("card.validation_dice", "must map class names to numbers")
            values["validation_dice"] = {
                self.text(k, "card.validation_dice", 200):
                float(self.number(v, f"card.validation_dice.{k}", 0.0, 1.0))
                for k, v in dice.items()
            }
        added = data.get("added_classes")
        if added is not None:
            if not isinstance(added, list | tuple) or len(added) > MAX_CLASSES:
                self.fail("card.added_classes", "must be a list of added classes")
            values["added_classes"] = tuple(self.added_class(a, f"card.added_classes[{i}]")
                                            for i, a in enumerate(added))
        taught = data.get("taught")
        if taught is not None:
            if not isinstance(taught, list | tuple) or len(taught) > MAX_TAUGHT:
                self.fail("card.taught", f"must be a list of at most {MAX_TAUGHT} records")
            values["taught"] = tuple(self.taught(t, f"card.taught[{i}]")
                                     for i, t in enumerate(taught))
        return ModelCard(**values)

    def taught(self, data: Any, name: str) -> TaughtRecord:
        if not isinstance(data, Mapping):
            self.fail(name, "must be a JSON object (derived_from, corrected_slices, scans, "
                      "date)")
        values: dict[str, Any] = {
            "derived_from": self.text(data.get("derived_from"), f"{name}.derived_from", 500),
            "corrected_slices": self.integer(data.get("corrected_slices"),
                                             f"{name}.corrected_slices", 1, 2**31),
            "scans": self.integer(data.get("scans"), f"{name}.scans", 1, 2**31),
            "date": self.text(data.get("date"), f"{name}.date", 64),
        }
        if data.get("derived_from_file") is not None:
            values["derived_from_file"] = self.text(data["derived_from_file"],
                                                    f"{name}.derived_from_file", 500)
        seen = data.get("seen")
        if seen is not None:
            if not isinstance(seen, list | tuple) or len(seen) > MAX_SEEN_SCANS:
                self.fail(f"{name}.seen", f"must be a list of at most {MAX_SEEN_SCANS} scans")
            values["seen"] = tuple(self.seen_slices(v, f"{name}.seen[{i}]")
                                   for i, v in enumerate(seen))
        return TaughtRecord(**values)

    def seen_slices(self, data: Any, name: str) -> SeenSlices:
        if not isinstance(data, Mapping):
            self.fail(name, "must be a JSON object (fingerprint, slices)")
        slices = data.get("slices")
        if not isinstance(slices, list | tuple) or len(slices) > MAX_SLICES:
            self.fail(f"{name}.slices", f"must be a list of at most {MAX_SLICES} slice indices")
        return SeenSlices(self.text(data.get("fingerprint"), f"{name}.fingerprint", 64),
                          tuple(self.integer(z, f"{name}.slices[{i}]", 0, MAX_SLICES)
                                for i, z in enumerate(slices)))

    def added_class(self, data: Any, name: str) -> AddedClass:
        if not isinstance(data, Mapping):
            self.fail(name, "must be a JSON object (name, index, taught_on, ...)")
        values: dict[str, Any] = {
            "name": self.text(data.get("name"), f"{name}.name", 200),
            "index": self.integer(data.get("index"), f"{name}.index", 1, MAX_CLASSES - 1),
            "taught_on": self.text(data.get("taught_on"), f"{name}.taught_on", MAX_STRING),
        }
        for key in ("derived_from", "date"):
            if data.get(key) is not None:
                values[key] = self.text(data[key], f"{name}.{key}", MAX_STRING)
        for key in ("scans", "slices", "voxels"):
            if data.get(key) is not None:
                values[key] = self.integer(data[key], f"{name}.{key}", 0, 2**53)
        return AddedClass(**values)


def _show(value: Any) -> str:
    """A short rendering of a bad value for a message (never a megabyte of it)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_metadata_dict(metadata: Mapping[str, Any] | Sequence | None) -> dict[str, Any]:
    """A plain dict from a ``CheckpointMeta``, a dict, or ``None``."""
    if metadata is None:
        return {}
    if isinstance(metadata, CheckpointMeta):
        return metadata.to_dict()
    return dict(metadata)


def class_names_or_default(meta: Mapping[str, Any] | None, num_classes: int) -> tuple[str, ...]:
    """The metadata's class names (``CheckpointMeta`` or legacy dict), else the defaults."""
    if isinstance(meta, CheckpointMeta):
        return meta.class_names
    names = None if meta is None else meta.get("class_names")
    return tuple(names) if names else default_class_names(num_classes)
