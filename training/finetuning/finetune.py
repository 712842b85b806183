"""Fine-tune a checkpoint on a user's corrected slices, never silently worse (no Qt).

One path for the napari Fine-tune widget and ``l2gnet finetune``: ``run_finetune(checkpoint,
volumes, settings, out_dir)``. The steps (docs/design.md, "Training and fine-tuning"):

1. **Score the start.** The starting model segments each volume once; its Dice on the
   corrected slices is epoch 0 of the curve (the ``TrainEvent`` callback and the log), and
   its labels are the reference for "how much did the uncorrected slices change".
2. **Guard against forgetting.** Measured on the sample phantom and on a real CT (README,
   "Fine-tuning on corrections"), the choices are: no flips in the augmentation (left and
   right kidney differ only by side: rot90/flip taught the model to swap them), and two
   measures taken when the start agrees with the corrections (``trust``, its mean Dice on
   them, >= ``TRUST``; on the ones it was not itself taught on, when it was taught on some:
   ``seen_slices``): its own labels on ``round(keep_weight x trust x corrected)``
   uncorrected slices mixed in as pseudo-labels, its BatchNorm statistics kept, and its
   encoder and bottleneck frozen (only the decoder and head learn). A model that is already
   right keeps what it knows; a model that is wrong there (a new kind of scan) learns freely.
3. **Choose honestly.** ``training.fitting.fit`` validates each epoch on the corrected slices;
   the starting model is a candidate too, so a run that only made things worse returns the
   start.
4. **Report.** Dice on the corrected slices before and after, how much the labels on the
   uncorrected slices changed, and where the new model labels slices far beyond the
   corrected ones (``coverage``) (``FinetuneReport``, also written to
   ``out_dir/finetune.json``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..fitting.new_classes import (
    NewClassRequest,
    added_records,
    grow_checkpoint,
    model_class_names,
    painted_counts,
)
from .coverage import coverage_warnings, uncovered_slices
from .seen_slices import (
    known_slices,
    pseudo_label_candidates,
    seen_records,
    seen_slices,
    unseen_corrected,
    volume_fingerprint,
)

if TYPE_CHECKING:  # torch-importing modules: for annotations only
    from ..fitting.losses import LossConfig
    from ..fitting.one_call import TrainEvent
    from ..fitting.trainer import TrainConfig

CHOSEN = "finetuned.safetensors"
TRUST = 0.5  # the start's Dice on the corrections from which its knowledge is guarded
REPORT = "finetune.json"


@dataclass
class FinetuneSettings:
    """How to fine-tune on corrections; the widget's form and the CLI's flags default here."""

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 4
    samples_per_epoch: int = 128  # the slices are repeated (augmented anew) to fill an
    #   epoch at the model's input size (more in a smaller window: ``window``); 64 and 32
    #   fitted a real CT worse on every slice choice, the pancreas most
    #   (docs/results-teaching.md)
    optimizer: str = "adamw"
    augment: str = "rotate_scale_intensity"  # never "transunet": its flips swap left and
    #   right organs; rotation, zoom and contrast/brightness/gamma (a new scanner, a new size)
    class_balance: bool = True  # class-aware slice sampling and CE class weights, so a
    #   structure painted on a few slices is learned (``training.data.sampling``)
    class_weight_power: float = 0.5  # CE class weights = voxel share ** -power (0: none)
    class_weight_cap: float = 10.0  # ... within [1 / cap, cap]
    plan_terms: bool = True  # the bucket and vote loss terms at the checkpoint's weights
    weighted_votes: bool = False  # the vote term weighted by the class weights too
    window: str = "fit"  # the taught model's input window: "fit" (when the body relearns,
    #   i.e. not frozen: the smallest stride multiple that holds the largest corrected slice
    #   at the model's pixel size, at least half and at most the start's input size; an
    #   epoch then has samples_per_epoch x the area saved, at most 4x: the same pixels, so
    #   about the same time, in more steps) or "model" (the start's input size). A 3 mm CT:
    #   128 instead of 224 px, 392 samples an epoch, the pancreas learned
    #   (docs/results-teaching.md)
    scale: str = "median"  # the pixel size of a model without one: "median" (the
    #   corrected scans' median) or "fill" (``physical_scale.fill_spacing``)
    dice_present_only: bool = False  # the Dice term over the classes present in the batch
    keep_weight: float = 4.0  # pseudo-labelled uncorrected slices per corrected slice, x trust
    keep_bn_stats: bool | None = None  # BatchNorm statistics stay the start's; None: when
    #   the start agrees with the corrections (trust >= TRUST), else they adapt to the new scans
    freeze_body: bool | None = None  # the encoder and bottleneck keep the start's weights
    #   (only the decoder and head learn); None: when new classes are added, which keeps the
    #   old classes on other scans (docs/new-classes.md, "Measured"), and when the start
    #   agrees with the corrections (trust >= TRUST), which keeps it right on other patients
    #   (ACDC site curve: docs/results-teaching.md)
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("epochs and batch size must be >= 1 and the learning rate > 0")
        if self.window not in ("fit", "model"):
            raise ValueError(f"window must be 'fit' or 'model', got {self.window!r}")
        if self.samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {self.samples_per_epoch}")
        if not self.keep_weight >= 0:
            raise ValueError(f"keep_weight must be >= 0, got {self.keep_weight}")

    def train_config(self, *, input_size: Sequence[int], out_dir: str | Path, loss: LossConfig,
                     freeze_batchnorm: bool, target_spacing_mm: Sequence[float] | None = None,
                     overwrite: bool = False, resume: bool = False) -> TrainConfig:
        """The ``TrainConfig`` of this fine-tune: every field the two share (epochs, lr, batch
        size, optimizer, augment, seed, device, max_steps) is these settings'; the rest is what
        the run decided (the checkpoint's input size, the guards, the loss, the folder)."""
        from ..fitting.trainer import TrainConfig

        shared = {f.name for f in dataclasses.fields(TrainConfig)}
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name in shared}
        return TrainConfig(**own, input_size=tuple(input_size), out_dir=str(out_dir),
                           loss=loss, freeze_batchnorm=freeze_batchnorm,
                           target_spacing_mm=target_spacing_mm, overwrite=overwrite,
                           resume=resume)


@dataclass
class CorrectedVolume:
    """One scan to learn from: ``image`` (S, H, W) normalised to [0, 1] as the checkpoint
    expects, ``labels`` (S, H, W) holding the user's corrections on the ``corrected`` slices
    (the other slices' labels are ignored). ``spacing``: the slices' in-plane pixel size in
    mm (rows, columns), None when unknown (``training.data.physical_scale``)."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    corrected: list[int]
    spacing: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.image, self.labels = np.asarray(self.image), np.asarray(self.labels)
        if self.image.shape != self.labels.shape or self.image.ndim != 3:
            raise ValueError(f"{self.name}: image {self.image.shape} and labels "
                             f"{self.labels.shape} must be 3-D volumes of the same shape")
        n = self.image.shape[0]
        self.corrected = sorted({int(i) for i in self.corrected})
        bad = [i for i in self.corrected if not 0 <= i < n]
        if bad:
            raise ValueError(f"{self.name}: corrected slices {bad} are outside 0..{n - 1}")
        if self.spacing is not None:
            from ..data.physical_scale import in_plane_spacing

            self.spacing = in_plane_spacing(self.spacing)

    @cached_property
    def fingerprint(self) -> str:
        """``seen_slices.volume_fingerprint`` of the image, hashed once per volume."""
        return volume_fingerprint(self.image)

    @property
    def uncorrected(self) -> list[int]:
        done = set(self.corrected)
        return [i for i in range(self.image.shape[0]) if i not in done]


@dataclass
class FinetuneReport:
    """What a run did, in the numbers a user can judge it by."""

    checkpoint: str  # the chosen model (a copy of the start if nothing beat it)
    chosen_epoch: int  # 0: the starting model was best
    corrected_dice_before: dict[str, float]
    corrected_dice_after: dict[str, float]
    uncorrected_agreement: float | None  # mean Dice start vs new labels on untouched slices
    uncorrected_changed: float | None  # fraction of untouched voxels whose label changed
    trust: float
    kept_bn_stats: bool
    corrected_slices: int
    pseudo_slices: int
    seconds: float
    stopped: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    new_classes: list[str] = field(default_factory=list)  # classes added by this run
    froze_body: bool = False  # the encoder and bottleneck kept the start's weights
    trust_slices: int | None = None  # trust judged on only these many corrected slices: the
    #   ones the start was not taught on (``seen_slices``); None: on all of them
    warnings: list[str] = field(default_factory=list)  # e.g. a new class painted too
    #   little, labels drawn far beyond the corrected slices (``coverage``)

    def describe(self) -> str:
        """A few lines for the widget's result panel and the CLI's log."""
        b, a = self.corrected_dice_before.get("mean"), self.corrected_dice_after.get("mean")
        lines = [f"Dice on the {self.corrected_slices} corrected slices: {_fmt(b)} before, "
                 f"{_fmt(a)} after (epoch {self.chosen_epoch})."]
        if self.chosen_epoch == 0:
            lines.append("No epoch beat the starting model, so it is kept.")
        if self.uncorrected_changed is not None:
            lines.append(f"Uncorrected slices: {100 * self.uncorrected_changed:.1f}% of voxels "
                         "changed label; Dice with the labels before "
                         f"{_fmt(self.uncorrected_agreement)}.")
        if self.trust_slices is not None:
            taught = self.corrected_slices - self.trust_slices
            lines.append(f"The starting model was taught on {taught} of these slices before; "
                         "whether it already agreed with you was judged on the other "
                         f"{self.trust_slices} (Dice {self.trust:.3f}).")
        if self.pseudo_slices:
            lines.append(f"{self.pseudo_slices} uncorrected slices kept the starting model's "
                         "labels as targets (it agreed with the corrections).")
        for name in self.new_classes:
            after = self.corrected_dice_after.get(name)
            lines.append(f"New class '{name}': Dice {_fmt(after)} on the slices it was "
                         "painted on" + ("" if after is not None and after >= 0.5 else
                                         " (not learned: paint it on more slices, or train "
                                         "longer)") + ".")
        if self.froze_body:
            lines.append("The encoder and bottleneck were kept as they were (only the decoder "
                         "and head learned), so what the model knew holds on other scans.")
        lines += self.warnings
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


# ---------------------------------------------------------------------------- pieces
def corrected_cases(volumes: Sequence[CorrectedVolume]) -> list:
    """The corrected slices of each volume stacked as one ``Case`` (what Dice is scored on:
    per class, the mean over the volumes that show it), with the volume's pixel size."""
    from ..data.cases import Case

    return [Case(f"{v.name} (corrected slices)", v.image[v.corrected].astype(np.float32),
                 v.labels[v.corrected].astype(np.uint8),
                 None if v.spacing is None else (1.0, *v.spacing))
            for v in volumes if v.corrected]


def _corrected_dice(predictions: Sequence[np.ndarray], volumes: Sequence[CorrectedVolume],
                    class_names: Sequence[str]) -> dict[str, float]:
    """``trainer.validate``'s numbers for labels already predicted (per class, the mean over
    volumes where the truth or the prediction has it, on the corrected slices)."""
    from ..evaluation.metrics import dice

    scores: dict[str, list[float]] = {name: [] for name in class_names[1:]}
    for pred, v in zip(predictions, volumes, strict=True):
        if not v.corrected:
            continue
        p, t = pred[v.corrected], v.labels[v.corrected]
        for c, name in enumerate(class_names[1:], start=1):
            if (t == c).any() or (p == c).any():
                scores[name].append(dice(p == c, t == c))
    out = {name: float(np.mean(s)) if s else float("nan") for name, s in scores.items()}
    valid = [s for s in out.values() if not math.isnan(s)]
    out["mean"] = float(np.mean(valid)) if valid else float("nan")
    return out


def label_agreement(a: np.ndarray, b: np.ndarray, num_classes: int) -> float | None:
    """Mean Dice over the foreground classes present in ``a`` or ``b`` (None: none is)."""
    from ..evaluation.metrics import dice

    scores = [dice(a == c, b == c) for c in range(1, num_classes)
              if (a == c).any() or (b == c).any()]
    return float(np.mean(scores)) if scores else None


def complete_new_only_slices(volumes: Sequence[CorrectedVolume], predicted: Sequence[np.ndarray],
                             new_indices: Sequence[int]) -> tuple[list[CorrectedVolume], int]:
    """Corrected slices painted with new classes only take the start's labels elsewhere.

    A user who paints only a new structure on a slice (a lesion, on otherwise empty labels)
    means "and the rest is as the model said", not "the rest is background": without this
    the old classes would be taught away on exactly those slices. A slice that holds any
    old-class label is left as painted (the user corrected it). Returns the volumes (copies
    where changed) and how many slices were completed.
    """
    out, count = [], 0
    new = np.asarray(list(new_indices))
    for v, pred in zip(volumes, predicted, strict=True):
        labels = None
        for i in v.corrected:
            lab = v.labels[i]
            fg = lab > 0
            is_new = np.isin(lab, new)
            if is_new.any() and not (fg & ~is_new).any() and (pred[i] > 0).any():
                if labels is None:
                    labels = v.labels.copy()
                labels[i] = np.where(fg, lab, pred[i]).astype(labels.dtype)
                count += 1
        out.append(v if labels is None else dataclasses.replace(v, labels=labels))
    return out, count


BODY = ("encoder", "pre", "bottleneck", "post")  # Segmenter parts before the decoder


def freeze_body(model) -> None:
    """Keep the encoder and bottleneck as they are: only the decoder and head train.

    Teaching a new class from 2 scans with the whole network free moved the old classes on
    other patients by up to 0.09-0.16 Dice; with the body frozen, by at most 0.015 (ACDC,
    ``benchmarks/new_class.py``, docs/new-classes.md "Measured").
    """
    for name in BODY:
        part = getattr(model, name, None)
        if part is not None:
            part.requires_grad_(False)


def growth_weights(weights: Sequence[float], old: int) -> tuple[float, ...]:
    """Class weights with the model's own ``old`` classes back at 1: only the new classes
    are up-weighted, so the old classes' decision boundaries are not moved by the weighting."""
    return tuple(1.0 if c < old else float(w) for c, w in enumerate(weights))


def pseudo_slice_indices(uncorrected: Sequence[int], count: int) -> list[int]:
    """``count`` of the uncorrected slices, evenly spread (they anchor the whole volume)."""
    uncorrected = list(uncorrected)
    if count <= 0 or not uncorrected:
        return []
    if count >= len(uncorrected):
        return uncorrected
    pos = np.linspace(0, len(uncorrected) - 1, count).round().astype(int)
    return [uncorrected[i] for i in sorted(set(pos.tolist()))]


def present_only(val: dict[str, float] | None) -> dict[str, float] | None:
    """Validation Dice without the classes absent from both sides (NaN: undefined, and not
    JSON); a mean of 1 when nothing is present anywhere (nothing to disagree about)."""
    if val is None:
        return None
    out = {k: float(v) for k, v in val.items() if not math.isnan(float(v))}
    out.setdefault("mean", 1.0)
    return out


_TRAINER: type | None = None


def _trainer_class() -> type:
    """``training.fitting.Trainer`` whose validation Dice is ``present_only`` (a class absent
    from the corrected slices would otherwise put NaN in the checkpoint's metadata, which
    ``save_checkpoint`` refuses). Built on first use: the trainer imports torch."""
    global _TRAINER
    if _TRAINER is None:
        from ..fitting.trainer import Trainer

        class FinetuneTrainer(Trainer):
            def validate(self) -> dict | None:
                return present_only(super().validate())

        _TRAINER = FinetuneTrainer
    return _TRAINER


def volume_from_arrays(
    volume: np.ndarray, labels: np.ndarray, corrected: Sequence[int], *, axis: int,
    normalization, num_classes: int, name: str = "labels",
    spacing: Sequence[float] | None = None,
) -> CorrectedVolume:
    """What the widget hands over (a raw volume, its labels layer, the corrected slices along
    ``axis``) as a ``CorrectedVolume``, normalised as the checkpoint expects.

    ``name`` (the labels layer's) goes into the messages: each says what to fix. ``spacing``:
    the voxel size in mm in the volume's axis order (None: unknown).
    """
    from ..data.normalization import normalize
    from ..data.physical_scale import in_plane_spacing

    volume, labels = np.asarray(volume), np.asarray(labels)
    if volume.ndim == 2 and labels.ndim == 2:
        volume, labels, axis = volume[None], labels[None], 0
    if volume.ndim != 3 or volume.shape != labels.shape:
        raise ValueError(f"'{name}' {labels.shape} must be a 2-D or 3-D labels layer of the "
                         f"image's shape {volume.shape}: pick the labels drawn on this image")
    if labels.size and labels.min() < 0:
        raise ValueError(f"'{name}' has negative labels: use class indices 0..{num_classes - 1}")
    top = int(labels.max(initial=0))
    if top >= num_classes:
        raise ValueError(f"Labels layer '{name}' has label {top} but the model has "
                         f"{num_classes} classes (0..{num_classes - 1}): fix those voxels or "
                         "use a checkpoint with more classes")
    image = np.moveaxis(normalize(volume, normalization), axis, 0).astype(np.float32)
    return CorrectedVolume(name, image, np.moveaxis(labels, axis, 0), list(corrected),
                           in_plane_spacing(spacing, axis, volume.ndim))


def change_scores(model_labels: np.ndarray, labels: np.ndarray, class_names, spacing=None):
    """Per foreground class: how much ``labels`` differs from the model's ``model_labels``.

    Rows of ``{"name", "dice", "hd95", "changed", "present"}``; Dice and HD95 (clinical
    protocol, in the units of ``spacing``) come from ``training.evaluation.score_case`` on the
    class's bounding box; an untouched class scores Dice 1 and HD95 0 without computing; a
    class only one side has scores Dice 0 and HD95 None (undefined); a class neither has,
    None and None.
    """
    from ..evaluation.metrics import bounding_box, score_case

    model_labels, labels = np.asarray(model_labels), np.asarray(labels)
    if model_labels.shape != labels.shape:
        raise ValueError(f"The model's labels {model_labels.shape} and the layer's "
                         f"{labels.shape} have different shapes")
    top = int(max(model_labels.max(initial=0), labels.max(initial=0)))
    names = list(class_names or [])
    rows = []
    for c in range(1, max(len(names), top + 1)):
        before, after = model_labels == c, labels == c
        changed = int((before != after).sum())
        present = bool(before.any() or after.any())
        name = names[c] if c < len(names) else f"class {c}"
        if not present:
            rows.append(dict(name=name, dice=None, hd95=None, changed=0, present=False))
            continue
        if not changed:
            rows.append(dict(name=name, dice=1.0, hd95=0.0, changed=0, present=True))
            continue
        box = bounding_box(before | after, margin=1)
        score = score_case(after[box].astype(np.uint8), before[box].astype(np.uint8), 2,
                           protocol="clinical", spacing=spacing)[0]
        # one side empty (the model missed the class, or the user erased all of it): Dice 0
        d = 0.0 if score["dice"] is None else score["dice"]
        rows.append(dict(name=name, dice=d, hd95=score["hd95"], changed=changed, present=True))
    return rows


# ---------------------------------------------------------------------------- the run
PLAN_LOSS_TERMS = ("bucket_weight", "vote_weight")


def trained_plan_weights(meta: dict[str, Any]) -> dict[str, float]:
    """The weights of the plan terms (bucket, vote) the checkpoint was trained with; 0 for a
    term its metadata does not record (paper-literal and older checkpoints)."""
    trained = ((meta.get("training") or {}).get("config") or {}).get("loss") or {}
    return {name: float(trained.get(name, 0.0)) for name in PLAN_LOSS_TERMS}


def finetune_loss(meta: dict[str, Any], class_weights: Sequence[float] | None = None,
                  dice_present_only: bool = False, weighted_votes: bool = False) -> LossConfig:
    """The paper's loss, plus the bucket and vote terms at the weights the checkpoint was
    trained with: a fine-tune keeps the plans tied to the labels where training did
    (docs/design.md); ``class_weights`` weight the CE term per class."""
    from ..fitting.losses import LossConfig

    return LossConfig(**trained_plan_weights(meta),
                      class_weights=None if class_weights is None else tuple(class_weights),
                      dice_present_only=dice_present_only, weighted_votes=weighted_votes)


def fitted_window(volumes: Sequence[CorrectedVolume], target: Sequence[float],
                  limit: Sequence[int], stride: int = 16) -> tuple[int, int]:
    """The smallest square window, a multiple of ``stride``, that holds every corrected
    volume's slices resampled to ``target`` mm, at least half of ``limit`` and at most
    ``limit`` (training on windows that are mostly padding costs steps for nothing)."""
    from ..data.physical_scale import resampled_size

    side = 0
    for v in volumes:
        if v.spacing is None:
            return tuple(limit)  # type: ignore[return-value]
        side = max(side, *resampled_size(v.image.shape[1:], v.spacing, target))
    floor = stride * math.ceil(max(limit) / 2 / stride)  # enough tokens for the bottleneck
    side = stride * math.ceil(max(side, floor) / stride)
    return (min(side, int(limit[0])), min(side, int(limit[1])))


MAX_WINDOW_GAIN = 4.0
"""At most this many times ``samples_per_epoch`` when the window shrinks (``epoch_samples``)."""


def epoch_samples(samples: int, start_size: Sequence[int], window: Sequence[int]) -> int:
    """Samples an epoch: ``samples`` at the start's input size, times the area a smaller
    window saves (at most ``MAX_WINDOW_GAIN``), so a round costs about the same time."""
    gain = (start_size[0] * start_size[1]) / (window[0] * window[1])
    return int(round(samples * min(MAX_WINDOW_GAIN, max(1.0, gain))))


def run_finetune(
    checkpoint: str | Path,
    volumes: Sequence[CorrectedVolume],
    settings: FinetuneSettings,
    out_dir: str | Path,
    *,
    metadata: dict[str, Any] | None = None,
    callback: Callable[[TrainEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    class_names: Sequence[str] | None = None,
    class_colors: Sequence[Sequence[float]] | None = None,
    taught_on: str | None = None,
) -> FinetuneReport:
    """Fine-tune ``checkpoint`` on the corrected slices of ``volumes``; see the module doc.

    Writes ``out_dir/finetuned.safetensors`` (the chosen model), ``out_dir/finetune.json``
    (the report) and the ``Trainer``'s run files (``last``/``best``...), set up by
    ``training.fitting.run_setup.prepare_run`` as ``l2gnet train`` is; an earlier run in ``out_dir``
    is replaced only with ``overwrite``; ``resume`` continues a stopped run from its run state
    (as ``l2gnet train --resume``). ``metadata`` entries are added to the checkpoint's.

    New classes (docs/new-classes.md): ``class_names`` beyond the model's grow it by those
    classes (``class_colors``: theirs, or every class's; ``taught_on``: where, for the card).
    The old classes are protected: a corrected slice painted with new classes only keeps the
    starting model's labels elsewhere, the guards' trust is the start's Dice on the old
    classes, and the starting model's labels on uncorrected slices are targets as above.
    """
    from src_model import load_checkpoint

    from ..data.cases import Slice, neighbour_slices
    from ..data.physical_scale import fill_spacing, median_spacing
    from ..data.sampling import balanced_repeats, class_weights
    from ..fitting.run_setup import prepare_run
    from ..fitting.trainer import TrainConfig, TrainEvent, seed_everything, validate
    from ..inference.predict import predict_volume, resolve_device

    t0 = time.perf_counter()
    volumes = list(volumes)
    if not any(v.corrected for v in volumes):
        raise ValueError("No corrected slices to fine-tune on")
    out = Path(out_dir)
    seed_everything(settings.seed)
    # A private trainable copy, not model_handle's shared inference model (it gets trained).
    model, meta = load_checkpoint(checkpoint)
    meta = {**meta, **(metadata or {})}
    request = NewClassRequest.from_names(model_class_names(meta), class_names)
    for v in volumes:
        request.check_labels(int(v.labels[v.corrected].max(initial=0)), v.name)
    class_names = request.names
    num_classes = len(class_names)  # the grown model's (at step 0 it predicts as the start)
    input_size = tuple(meta.get("input_size") or TrainConfig().input_size)
    device = resolve_device(settings.device)
    # the pixel size the model works at: the checkpoint's, else the corrected scans' median
    # (recorded in the new checkpoint, so the taught model is used at that scale next time)
    target = meta.get("target_spacing_mm") or (
        fill_spacing([v.image.shape for v in volumes], [v.spacing for v in volumes],
                     input_size) if settings.scale == "fill" else
        median_spacing([v.spacing for v in volumes]))
    target = None if target is None else tuple(float(t) for t in target)
    window = input_size  # the taught model's; fitted to the scans below when it relearns
    plain = {"normalization": {"kind": "none"},  # volumes are normalised already
             "target_spacing_mm": target}

    def segment(net, targeted: bool = True) -> list[np.ndarray]:
        info = plain if targeted else {**plain, "target_spacing_mm": None}
        size = window if net is not model else input_size
        return [predict_volume(v.image, net, input_size=size, device=device,
                               batch_size=settings.batch_size, metadata=info,
                               spacing=v.spacing).labels
                for v in volumes]

    # the start as it is used today (a checkpoint without a pixel size: plain resize)
    before = segment(model, targeted=meta.get("target_spacing_mm") is not None)
    added, warnings, completed = [], [], 0
    if request.growing:
        volumes, completed = complete_new_only_slices(volumes, before, request.new_indices)
        painted = painted_counts(((v.name, v.labels[v.corrected]) for v in volumes),
                                 request.new_indices, class_names)
        warnings = request.check_painted(painted, "the corrected slices")
        added = added_records(painted, derived_from=str(checkpoint),
                              taught_on=taught_on or ", ".join(v.name for v in volumes))
    cases = corrected_cases(volumes)
    dice_before = present_only(_corrected_dice(before, volumes, class_names))

    # the guards, as much as the start agrees with the corrections (on the classes it knows),
    # judged on the corrected slices it was not already taught on when there are any
    known = known_slices(volumes, seen_slices(meta))
    unseen = unseen_corrected(volumes, known)
    judged = sum(len(u) for u in unseen)
    fresh = 0 < judged < sum(len(v.corrected) for v in volumes)
    trust_dice = present_only(_corrected_dice(before, [
        dataclasses.replace(v, corrected=u) for v, u in zip(volumes, unseen, strict=True)],
        class_names)) if fresh else dice_before
    old_dice = [d for k, d in trust_dice.items() if k in request.model_names[1:]]
    trust = max(0.0, float(np.mean(old_dice)) if old_dice else
                (1.0 if request.growing else trust_dice["mean"]))
    trusted = trust >= TRUST
    frozen = ((request.growing or trusted) if settings.freeze_body is None
              else settings.freeze_body)
    if settings.window == "fit" and target is not None and not frozen:
        # a start that relearns its body trains and segments in a window fitted to the scans;
        # one that keeps its body (trusted, or adding classes) keeps the window it knows
        window = fitted_window(volumes, target, input_size)
    # a frozen body keeps its BatchNorm statistics too, or its features would still move
    keep_bn = (trusted or frozen) if settings.keep_bn_stats is None else settings.keep_bn_stats
    weights = None  # CE class weights; a grown model's own classes stay at 1
    if settings.class_balance:
        corrected_labels = [v.labels[i] for v in volumes for i in v.corrected]
        weights = class_weights(corrected_labels, num_classes, cap=settings.class_weight_cap,
                                power=settings.class_weight_power)
        if request.growing:  # only the new classes up-weighted
            weights = growth_weights(weights, len(request.model_names))
    cfg = settings.train_config(
        input_size=window, out_dir=out, freeze_batchnorm=keep_bn, target_spacing_mm=target,
        loss=finetune_loss(meta if settings.plan_terms else {}, weights,
                           dice_present_only=settings.dice_present_only,
                           weighted_votes=settings.weighted_votes),
        overwrite=overwrite, resume=resume)
    slices, pseudo = [], 0
    for v, pred, k in zip(volumes, before, known, strict=True):
        slices += [Slice(v.image[i], v.labels[i].astype(np.uint8), f"{v.name}:{i}", v.spacing,
                         neighbour_slices(v.image, i)) for i in v.corrected]
        count = int(round(settings.keep_weight * trust * len(v.corrected))) if trusted else 0
        for i in pseudo_slice_indices(pseudo_label_candidates(v, k), count):
            slices.append(Slice(v.image[i], pred[i].astype(np.uint8), f"{v.name}:{i} (start)",
                                v.spacing, neighbour_slices(v.image, i)))
            pseudo += 1
    n_base = len(slices)

    samples = epoch_samples(settings.samples_per_epoch, input_size, window)
    if settings.class_balance:  # every painted class in about as many samples
        order = balanced_repeats([s.label for s in slices], samples)
        slices = [slices[i] for i in order]
    else:
        slices = slices * max(1, math.ceil(samples / len(slices)))
    per_epoch = (len(slices) // cfg.batch_size if len(slices) > cfg.batch_size
                 else 1)  # as fit's DataLoader counts (drop_last when there is more)
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(
        per_epoch * cfg.epochs, cfg.max_steps)
    if callback is not None:  # epoch 0: the starting model on the corrected slices
        callback(TrainEvent(kind="epoch", epoch=0, step=0, total_steps=total,
                            val_dice=dice_before, checkpoint=str(checkpoint),
                            seconds=time.perf_counter() - t0))
    metadata = {**(metadata or {}), "card": {"taught": taught_records(meta, checkpoint,
                                                                      volumes)}}
    setup = prepare_run(slices, cfg, checkpoint=checkpoint, val=cases, metadata=metadata,
                        class_names=class_names if request.growing else None,
                        added_classes=added, class_colors=class_colors)
    # the model scored above, not a copy; a grown one is prepare_run's (the same predictions)
    start = setup.model if request.growing else model
    if frozen:
        freeze_body(start)
    trainer = _trainer_class()(start, setup.slices, setup.val_cases, setup.config,
                               metadata=setup.metadata, callback=callback,
                               should_stop=should_stop)
    result = trainer.fit()

    scored = [r for r in result.history if r.get("val_dice")]
    best = max(scored, key=lambda r: r["val_dice"]["mean"], default=None)  # first of equals
    chosen = out / CHOSEN
    if result.best_checkpoint and best and best["val_dice"]["mean"] > dice_before["mean"]:
        shutil.copyfile(result.best_checkpoint, chosen)
        chosen_epoch = best["epoch"]
    elif request.growing:  # nothing beat the start: the start, with its new (empty) classes
        from src_model import save_checkpoint

        grown, _ = grow_checkpoint(checkpoint, added, colors=class_colors)
        save_checkpoint(chosen, grown, trainer.checkpoint_meta(None))
        chosen_epoch = 0
    else:  # nothing beat the start (ties go to it): the start is the result
        shutil.copyfile(checkpoint, chosen)
        chosen_epoch = 0

    new_model, _ = load_checkpoint(chosen)
    after = before if chosen_epoch == 0 else segment(new_model)
    dice_after = (dice_before if chosen_epoch == 0 else
                  present_only(validate(new_model, cases, class_names, window, device,
                                        settings.batch_size, target)))
    # labels far from the corrections (and from the slices the start was taught on), of the
    # classes they taught: all, unless the start agreed with them on a scan it had not been
    # taught on (then only the added ones)
    warnings += coverage_warnings([uncovered_slices(
        v.name, a, sorted(set(v.corrected) | k), class_names,
        classes=request.new_indices if trusted and not k else None)
        for v, a, k in zip(volumes, after, known, strict=True)])
    agree, changed, voxels = [], 0, 0
    for v, b, a in zip(volumes, before, after, strict=True):
        idx = v.uncorrected
        if idx:
            score = label_agreement(b[idx], a[idx], num_classes)
            if score is not None:
                agree.append(score)
            changed += int((b[idx] != a[idx]).sum())
            voxels += b[idx].size
    report = FinetuneReport(
        checkpoint=str(chosen), chosen_epoch=chosen_epoch,
        corrected_dice_before=dice_before, corrected_dice_after=dice_after,
        uncorrected_agreement=float(np.mean(agree)) if agree else (1.0 if voxels else None),
        uncorrected_changed=changed / voxels if voxels else None,
        trust=trust, kept_bn_stats=cfg.freeze_batchnorm, corrected_slices=n_base - pseudo,
        pseudo_slices=pseudo,
        seconds=time.perf_counter() - t0, stopped=result.stopped,
        history=[{"epoch": 0, "step": 0, "val_dice": dice_before, "seconds": 0.0},
                 *result.history],
        new_classes=list(request.new_names), froze_body=frozen,
        trust_slices=judged if fresh else None,
        warnings=warnings + ([f"{completed} corrected slice(s) held only new classes: the "
                              "starting model's labels were kept for the rest of them."]
                             if completed else []),
    )
    (out / REPORT).write_text(json.dumps(asdict(report), indent=1, default=_json_default))
    return report


def taught_records(meta: dict[str, Any], checkpoint: str | Path,
                   volumes: Sequence[CorrectedVolume]) -> list[dict[str, Any]]:
    """The start's ``card.taught`` records plus this run's (``TaughtRecord``): what it was
    derived from, how many corrected slices of how many scans, when, and which slices of
    which scans (``seen_slices``: fingerprints, no pixels)."""
    import datetime as dt

    card = meta.get("card") or {}
    earlier = [dict(t) for t in card.get("taught") or []]
    name = card.get("display_name") or Path(checkpoint).name.removesuffix(".safetensors")
    used = [v for v in volumes if v.corrected]
    return [*earlier, {"derived_from": str(name), "derived_from_file": Path(checkpoint).name,
                       "corrected_slices": sum(len(v.corrected) for v in used),
                       "scans": len(used), "seen": seen_records(used),
                       "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
