"""``prepare_run``: everything a training run needs, checked, before any work starts.

One set-up for the two ways a run starts: ``l2gnet train`` (data given as a folder or
``phantom:SEEDS``, a model built from a preset, or a checkpoint to fine-tune) and the napari
Fine-tune widget (slices cut from its layers, a checkpoint). Both get a ``RunSetup``: the
model (or the checkpoint path, loaded where the run happens), the slices, the validation
volumes, the metadata every checkpoint of the run carries, and the ``TrainConfig``. Errors a
user can fix (labels the model cannot hold, NaN voxels, an output folder that holds another
run or the input) are one-line ``ValueError``/``FileExistsError`` raised here, before a model
is trained.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src_model.checkpoint_meta import PostProcessing
from src_model.class_growth import MAX_NEW_CLASSES

from ..data import Case, Slice
from ..data.normalization import CT_WINDOW, MRI_PERCENTILE, NO_NORMALIZATION, IntensityNormalization
from .distributed import DistContext
from .new_classes import (
    NewClassRequest,
    added_records,
    grow_checkpoint,
    model_class_names,
    painted_counts,
    unnamed_label_error,
)
from .run_state import check_run_folder
from .trainer import TrainConfig, Trainer, TrainEvent, check_training_data, seed_everything

if TYPE_CHECKING:
    import torch


__all__ = ["RunSetup", "prepare_run", "resolve_normalization"]

_NORMALIZATIONS = {"ct_window": CT_WINDOW, "percentile": MRI_PERCENTILE,
                   "none": NO_NORMALIZATION}


@dataclass
class RunSetup:
    """A checked run, ready to start with ``trainer()``.

    ``model`` is a built model, or the path of the checkpoint to fine-tune (kept as a path
    so that a run description stays small and picklable).
    """

    model: torch.nn.Module | str
    model_name: str
    num_classes: int
    slices: list[Slice]
    val_cases: list[Case]
    config: TrainConfig
    metadata: dict[str, Any] = field(default_factory=dict)
    normalization: IntensityNormalization = NO_NORMALIZATION
    warnings: list[str] = field(default_factory=list)  # e.g. a new class painted too little

    def trainer(self, *, callback: Callable[[TrainEvent], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                dist: DistContext | None = None) -> Trainer:
        return Trainer(self.model, self.slices, self.val_cases, self.config,
                       metadata=self.metadata, callback=callback, should_stop=should_stop,
                       dist=dist)


def resolve_normalization(kind: str | IntensityNormalization | None,
                          checkpoint_meta: dict[str, Any] | None = None,
                          data: str | None = None) -> IntensityNormalization:
    """The intensity normalisation of a run: the one asked for, else the checkpoint's, else
    by data kind (CT window for NIfTI and phantoms, none for h5/npz already in [0, 1])."""
    if isinstance(kind, IntensityNormalization):
        return kind
    if kind is None and checkpoint_meta is not None:
        return IntensityNormalization.from_metadata(checkpoint_meta.get("normalization"))
    if kind is None:
        slices_data = data is not None and not data.startswith("phantom:") and data.endswith(
            ("slices", "npz"))
        kind = "none" if data is None or slices_data else "ct_window"
    if kind not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {sorted(_NORMALIZATIONS)}, got {kind!r}")
    return _NORMALIZATIONS[kind]


def prepare_run(
    data: str | Sequence[Slice],
    config: TrainConfig,
    *,
    checkpoint: str | Path | None = None,
    model: str = "l2gnet",
    model_config: dict[str, Any] | None = None,
    num_classes: int | None = None,
    val: str | Sequence[Case] | None = None,
    normalization: str | IntensityNormalization | None = None,
    class_names: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    phantom_shape: tuple[int, int, int] | None = None,
    dist: DistContext | None = None,
    added_classes: Sequence[Any] | None = None,
    class_colors: Sequence[Sequence[float]] | None = None,
    target_spacing: str | Sequence[float] | None = "auto",
) -> RunSetup:
    """Check and assemble a run; see the module docstring.

    ``data``/``val``: a spec (folder or ``phantom:SEEDS``) read with the run's normalisation,
    or ready slices/volumes (already normalised by the caller). ``checkpoint``: fine-tune it
    (its class count, names and normalisation are kept); otherwise ``model`` (a preset or
    model name) is built with ``model_config`` and ``num_classes`` (default: Synapse's for
    phantoms, else the largest label + 1). ``metadata`` entries are added to every
    checkpoint written (e.g. ``training.command``, ``finetune``). The output folder is checked
    first (``training.fitting.run_state.check_run_folder``), on rank 0 under ``torchrun``.
    ``target_spacing`` (the in-plane pixel size the run works at, ``training.data.physical_scale``):
    ``config.target_spacing_mm`` when set; else ``"auto"``: the checkpoint's, or the median
    over the training slices that have a pixel size (None when none has: the plain resize);
    a pair of numbers; or None (the plain resize).

    New classes (docs/new-classes.md): with a checkpoint, ``class_names`` must start with its
    names, unchanged and in order; names beyond them grow the model by those classes
    (``src_model.class_growth``), which must be painted in ``data``. ``added_classes`` (the
    card's records, ``training.fitting.new_classes.added_records``) are counted from ``data`` unless
    given; ``class_colors`` colours the new classes (or all classes).
    """
    from src_model import build_model, read_metadata

    from ..data.phantom import SYNAPSE_CLASSES, SYNAPSE_COLORS
    from ..data.specs import load_cases, load_slices, max_label
    from .presets import resolve_preset

    dist = dist or DistContext()
    inputs = [str(checkpoint)] if checkpoint is not None else []
    dist.agree(lambda: check_run_folder(config.out_dir, resume=config.resume,
                                        overwrite=config.overwrite, inputs=inputs))
    base = read_metadata(checkpoint) if checkpoint is not None else None
    spec = data if isinstance(data, str) else None
    norm = resolve_normalization(normalization, base, spec)
    phantom = spec is not None and spec.startswith("phantom:")
    extra = {"shape": tuple(phantom_shape)} if phantom_shape else {}
    slices = load_slices(data, norm, **extra) if isinstance(data, str) else list(data)
    if isinstance(val, str):
        val_cases = load_cases(val, norm, **extra)
    else:
        val_cases = list(val or [])

    config = _with_target_spacing(config, target_spacing, base, slices)
    meta: dict[str, Any] = dict(base or {})
    warnings: list[str] = []
    if base is not None:
        built: torch.nn.Module | str = str(checkpoint)
        model_name = base["model"]["name"]
        n_classes = int(base["model"]["num_classes"])
        grows = class_names is not None and len(class_names) > n_classes
        if num_classes is not None and num_classes != (len(class_names) if grows else n_classes):
            plus = " (plus the new --class-names)" if grows else ""
            raise ValueError(f"--num-classes {num_classes} disagrees with {checkpoint}, which "
                             f"has {n_classes} classes{plus}: training on from a checkpoint "
                             "keeps its classes; drop --num-classes")
        if class_names is not None and len(class_names) >= n_classes:
            grown = _grow_from_checkpoint(checkpoint, base, class_names, slices, val_cases,
                                          spec, added_classes, class_colors, warnings)
            if grown is not None:
                built, meta = grown
                n_classes = len(class_names)
        elif class_names is None:
            _check_named(model_class_names(base), slices)
    else:
        preset = resolve_preset(model)
        model_name = preset.model
        n_classes = num_classes or (len(SYNAPSE_CLASSES) if phantom else max_label(slices) + 1)
        seed_everything(config.seed)  # the same initial weights on every rank and every run
        built = build_model(model_name, n_classes,
                            **{**preset.model_config, **dict(model_config or {})})
    if class_names is not None:
        names = [str(n) for n in class_names]
    elif phantom and base is None:
        names = list(SYNAPSE_CLASSES)
        meta.setdefault("class_colors", [list(c) for c in SYNAPSE_COLORS])
    else:
        names = meta.get("class_names") or ["background"] + [
            f"class {i}" for i in range(1, n_classes)]
    if len(names) != n_classes:
        said = (f"--num-classes {num_classes}" if num_classes is not None and base is None
                else f"the model has {n_classes} classes")
        raise ValueError(f"--class-names gives {len(names)} names but {said}: they must "
                         "agree (or give only --class-names)")
    check_training_data(slices, val_cases, n_classes)
    encoder = getattr(getattr(built, "encoder", None), "weights_source", None)
    meta.update(class_names=names, normalization=norm.to_metadata(),
                encoder_weights=encoder or meta.get("encoder_weights", "random"))
    given = dict(metadata or {})
    if isinstance(given.get("card"), Mapping):  # card entries are added to the start's card
        given["card"] = {**dict(meta.get("card") or {}), **given["card"]}
    meta.update(given)
    if base is not None:
        meta.pop("model", None)  # rebuilt from the model by save_checkpoint
        post = PostProcessing.from_metadata(meta.get("postprocessing"))
        if post is not None and "postprocessing" not in given:  # measured on the start only
            meta["postprocessing"] = post.kept_from(Path(str(checkpoint)).name).to_dict()
    return RunSetup(built, model_name, n_classes, slices, val_cases, config, meta, norm,
                    warnings)


def _top_label(slices: Sequence[Slice]) -> tuple[int, str]:
    """The largest label value in ``slices`` and the first slice holding it."""
    top, where = 0, "the data"
    for s in slices:
        m = int(s.label.max(initial=0))
        if m > top:
            top, where = m, s.source or "a slice"
    return top, where


def _check_named(names: Sequence[str], slices: Sequence[Slice]) -> None:
    """A label value beyond a checkpoint's classes: ask for a name (one line)."""
    top, where = _top_label(slices)
    if top - len(names) + 1 > MAX_NEW_CLASSES:
        raise unnamed_label_error(top, names, where)
    if top >= len(names):
        listed = ",".join(names)
        raise ValueError(
            f"Training label {top} in {where} does not fit a model with {len(names)} classes "
            f"(0..{len(names) - 1}): to teach it as a new class, name it (e.g. --class-names "
            f"{listed}{',NAME' * (top - len(names) + 1)}); otherwise fix those voxels")


def _grow_from_checkpoint(checkpoint, base, class_names, slices, val_cases, spec, added,
                          colors, warnings: list[str]):
    """(grown model, its metadata) when ``class_names`` adds classes, else None."""
    request = NewClassRequest.from_names(model_class_names(base), class_names)
    if not request.growing:
        _check_named(request.names, slices)
        return None
    where = spec or "the painted slices"
    top, first = _top_label([*slices, *(Slice(c.image, c.label, c.name) for c in val_cases)])
    request.check_labels(top, first)
    if added is None:
        painted = painted_counts(((s.source.split(":")[0], s.label) for s in slices),
                                 request.new_indices, request.names)
        warnings += request.check_painted(painted, where)
        added = added_records(painted, taught_on=where, derived_from=str(checkpoint))
    model, meta = grow_checkpoint(checkpoint, added, colors=colors)
    return model, meta


def _with_target_spacing(config: TrainConfig, choice: str | Sequence[float] | None,
                         base: dict[str, Any] | None, slices: Sequence[Slice]) -> TrainConfig:
    """``config`` with the run's ``target_spacing_mm`` resolved (``prepare_run``)."""
    from dataclasses import replace

    from ..data.physical_scale import median_spacing

    if config.target_spacing_mm is not None or choice is None:
        return config
    if isinstance(choice, str):
        if choice != "auto":
            raise ValueError(f"target spacing must be 'auto', none or two sizes in mm, got "
                             f"{choice!r}")
        target = (base or {}).get("target_spacing_mm") or median_spacing(
            [s.spacing for s in slices])
    else:
        target = tuple(float(v) for v in choice)
    return config if target is None else replace(config, target_spacing_mm=tuple(target))
