"""``Trainer``: train or fine-tune a segmenter on 2-D slices, in named steps.

The papers' (TransUNet's) recipe: SGD (lr 0.01, momentum 0.9, weight decay 1e-4) with poly
decay, AdamW as an option; AMP on CUDA; seeded; validation Dice per class; ``last`` and
``best`` checkpoints; progress through a callback; stoppable between steps. The steps, each a
method, in the spirit of nnU-Net's trainer and MONAI's engines:

- ``prepare_folder``: the overwrite rule and stale temporaries (``training.fitting.run_state``);
- ``resume``: restore the run state (weights, optimizer, counters, RNG) exactly;
- ``train_epoch`` / ``train_step``: one epoch, one optimizer step;
- ``validate``: mean Dice per class on the validation volumes (rank 0 only);
- ``save``: ``best`` (on a new best), then the run state (the commit), then ``last``.

Under ``torchrun`` (``training.fitting.distributed``) the model is wrapped in
DistributedDataParallel, each rank reads its shard of a per-epoch seeded permutation, the
Dice terms of the loss are summed over ranks, and only rank 0 validates, writes and reports.
See ``docs/design.md`` (training).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from src_model import load_checkpoint, save_checkpoint
from src_model.slice_context import add_slice_context

from ..data import Case, Slice, SliceDataset
from ..data.transforms import AUGMENTATIONS
from ..evaluation.metrics import dice
from ..inference.predict import predict_volume, resolve_device
from .distributed import DistContext
from .losses import LossConfig, SegmentationLoss
from .run_state import (
    BEST,
    LAST,
    STATE,
    Progress,
    RunState,
    check_run_folder,
    clear_run_folder,
    load_run_state,
    remove_stale_temporaries,
    save_run_state,
)

__all__ = [
    "FitResult",
    "LossNotFinite",
    "TrainConfig",
    "TrainEvent",
    "Trainer",
    "check_training_data",
    "seed_everything",
    "validate",
]

OPTIMIZERS = ("sgd", "adamw")  # TrainConfig.optimizer's choices (and the CLI's)


@dataclass
class TrainConfig:
    """How to train. Defaults are the papers' (TransUNet's) settings.

    ``overwrite``: replace an earlier run in ``out_dir`` (otherwise refused unless
    ``resume``). ``freeze_batchnorm``: BatchNorm layers keep their running statistics (eval
    mode) while training; useful when fine-tuning on a few slices, and what makes N ranks x
    batch b train exactly like one process with batch N*b. ``target_spacing_mm``: slices with
    a pixel size are resampled to it (``training.data.physical_scale``) and the checkpoints record
    it; None: every slice is resized to ``input_size``. ``foreground_oversample``: the share
    of windows centred on a foreground voxel (when a resampled slice is larger than the input).
    ``slice_context``: 1 feeds each slice between its neighbours (docs/design.md, "Slice
    context"; a checkpoint without it is converted so it starts predicting as before), 0 the
    slice alone; None: the starting checkpoint's (0 for a new model).
    """

    epochs: int = 10
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "sgd"  # one of OPTIMIZERS
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    input_size: tuple[int, int] = (224, 224)
    augment: str = "transunet"  # one of AUGMENTATIONS (training.data.transforms)
    amp: bool = True  # CUDA only
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    max_steps: int | None = None  # stop after this many steps in total (quick runs, tests)
    loss: LossConfig = field(default_factory=LossConfig)
    out_dir: str = "runs/l2gnet"
    resume: bool = False
    overwrite: bool = False
    validate_every: int = 1
    freeze_batchnorm: bool = False
    target_spacing_mm: tuple[float, float] | None = None
    foreground_oversample: float = 0.33
    slice_context: int | None = None

    def __post_init__(self) -> None:
        self.input_size = tuple(int(s) for s in self.input_size)
        if self.target_spacing_mm is not None:
            self.target_spacing_mm = tuple(float(s) for s in self.target_spacing_mm)
            if len(self.target_spacing_mm) != 2 or not min(self.target_spacing_mm) > 0:
                raise ValueError(f"target_spacing_mm must be two sizes > 0 mm, got "
                                 f"{self.target_spacing_mm}")
        if not 0.0 <= self.foreground_oversample <= 1.0:
            raise ValueError(f"foreground_oversample must be in [0, 1], got "
                             f"{self.foreground_oversample}")
        if self.slice_context not in (None, 0, 1):
            raise ValueError(f"slice_context must be 0 or 1, got {self.slice_context}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)


@dataclass(kw_only=True)
class TrainEvent:
    """What a run reports: ``kind`` is "step", "epoch", "done" or "stopped".

    ``epoch`` is the 0-based epoch running for "step" events and the number of epochs
    completed for the others. ``loss`` is the mean over ranks under DDP.
    """

    kind: str
    epoch: int
    step: int
    total_steps: int
    loss: float | None = None
    parts: dict[str, float] = field(default_factory=dict)
    lr: float | None = None
    val_dice: dict[str, float] | None = None
    checkpoint: str | None = None
    seconds: float = 0.0


@dataclass
class FitResult:
    last_checkpoint: str
    best_checkpoint: str | None
    history: list[dict[str, Any]]
    stopped: bool


class LossNotFinite(FloatingPointError, ValueError):
    """The loss became NaN or infinite: a user-fixable setting (learning rate, labels)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds libraries that use the global state
    torch.manual_seed(seed)


def check_training_data(slices: Sequence[Slice], val_cases: Sequence[Case],
                        num_classes: int) -> None:
    """Refuse, before any work, labels the model cannot hold and non-finite images.

    All slices are checked: a bad one found at step 900 wastes the run.
    """
    if not slices:
        raise ValueError("No training slices: give at least one annotated slice")
    for s in slices:
        if s.label.size and int(s.label.max()) >= num_classes:
            raise ValueError(
                f"Training label {int(s.label.max())} in {s.source or 'a slice'} does not fit a "
                f"model with {num_classes} classes (0..{num_classes - 1})")
    items = [(s.image, s.source or "a training slice") for s in slices]
    items += [(c.image, f"validation volume {c.name}") for c in val_cases]
    for image, name in items:
        bad = np.size(image) - int(np.isfinite(image).sum())
        if bad:
            raise ValueError(
                f"The image of {name} has {bad} NaN or infinite voxel(s): replace them (e.g. "
                "with the background intensity) or leave that slice out, then train again")


def validate(model: torch.nn.Module, cases: Sequence[Case], class_names: Sequence[str],
             input_size: tuple[int, int], device: torch.device, batch_size: int,
             target_spacing_mm: Sequence[float] | None = None, slice_context: int = 0) -> dict:
    """Mean Dice per foreground class over ``cases`` (volumes, already in [0, 1]), segmented
    at ``target_spacing_mm`` where a case has a voxel size (as inference will)."""
    scores: dict[str, list[float]] = {name: [] for name in class_names[1:]}
    for case in cases:
        pred = predict_volume(case.image, model, input_size=input_size, device=device,
                              batch_size=batch_size, spacing=case.spacing,
                              metadata={"normalization": {"kind": "none"},
                                        "target_spacing_mm": target_spacing_mm,
                                        "slice_context": slice_context})
        for c, name in enumerate(class_names[1:], start=1):
            truth = case.label == c
            if truth.any() or (pred.labels == c).any():
                scores[name].append(dice(pred.labels == c, truth))
    out = {name: float(np.mean(v)) if v else float("nan") for name, v in scores.items()}
    valid = [v for v in out.values() if not np.isnan(v)]
    out["mean"] = float(np.mean(valid)) if valid else float("nan")
    return out


def resolve_slice_context(start: int, wanted: int | None,
                          source: str = "the starting checkpoint") -> int:
    """A run's slice context: ``wanted`` (``TrainConfig.slice_context``), or None for the
    start's. A start trained with it cannot go without it: ValueError naming ``source``."""
    if wanted is None:
        return int(start)
    if start and not wanted:
        raise ValueError(f"{source} was trained with slice context and cannot be trained "
                         "without it: leave --slice-context out")
    return int(wanted)


def _slice_context(model: torch.nn.Module, meta: Mapping[str, Any], wanted: int | None,
                   from_checkpoint: bool) -> int:
    """``resolve_slice_context``; a checkpoint trained without context is converted in place
    (``src_model.slice_context``) when it is asked for."""
    start = int(meta.get("slice_context") or 0)
    context = resolve_slice_context(start, wanted)
    if context and not start and from_checkpoint:
        add_slice_context(model)
    return context


def _json_ready(val: dict[str, float] | None) -> dict[str, float | None] | None:
    """Validation Dice for a checkpoint: NaN (a class in neither truth nor prediction) -> None,
    as checkpoints hold strict JSON."""
    if val is None:
        return None
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in val.items()}


class EpochSampler(DistributedSampler):
    """A permutation seeded by ``(seed, epoch)``, this rank's share of it, minus ``skip``.

    With one rank it is a plain seeded shuffle; the per-epoch seed is what makes a resumed run
    see the batches an uninterrupted one would (``skip``: samples already trained this epoch).
    """

    def __init__(self, dataset: SliceDataset, dist: DistContext, seed: int) -> None:
        super().__init__(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                         seed=seed, drop_last=False)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return self.num_samples - self.skip


class Trainer:
    """One training run; ``fit()`` runs it. See the module docstring for the steps.

    ``model_or_checkpoint``: a model, or a checkpoint to fine-tune (its metadata is
    inherited, ``metadata`` entries override it). ``callback`` gets every ``TrainEvent`` (rank 0
    only); ``should_stop`` is asked before each step (then a valid ``last`` and run state are
    written; under DDP pass it on every rank or on none).
    """

    def __init__(
        self,
        model_or_checkpoint: torch.nn.Module | str | Path,
        train_slices: Sequence[Slice],
        val_cases: Sequence[Case],
        config: TrainConfig,
        *,
        metadata: dict[str, Any] | None = None,
        callback: Callable[[TrainEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        dist: DistContext | None = None,
    ) -> None:
        self.cfg = cfg = config
        self.dist = dist or DistContext()
        self.callback = callback if self.dist.is_main else None
        self.should_stop = should_stop
        seed_everything(cfg.seed)
        self.inputs: list[str] = []
        if isinstance(model_or_checkpoint, str | Path):
            # A fresh trainable copy, not model_handle's shared inference model.
            model, base_meta = load_checkpoint(model_or_checkpoint)
            self.base_meta = {**base_meta, **(metadata or {})}
            self.inputs.append(str(model_or_checkpoint))
        else:
            model, self.base_meta = model_or_checkpoint, dict(metadata or {})
        self.slice_context = _slice_context(model, self.base_meta, cfg.slice_context,
                                            from_checkpoint=bool(self.inputs))
        self.model = model
        num_classes = model.num_classes
        self.class_names = list(self.base_meta.get("class_names") or
                                ["background"] + [f"class {i}" for i in range(1, num_classes)])
        check_training_data(train_slices, val_cases, num_classes)
        self.train_slices, self.val_cases = train_slices, list(val_cases)
        self.out_dir = Path(cfg.out_dir)
        self.last_path, self.best_path = self.out_dir / LAST, self.out_dir / BEST
        self.state_path = self.out_dir / STATE

        self.device = self.dist.device(resolve_device(cfg.device))
        model.to(self.device)
        self.net: torch.nn.Module = model
        if self.dist.enabled:
            self.net = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.dataset = SliceDataset(train_slices, cfg.input_size, augment=cfg.augment,
                                    in_channels=model.in_channels, seed=cfg.seed,
                                    target_spacing=cfg.target_spacing_mm,
                                    foreground_oversample=cfg.foreground_oversample,
                                    slice_context=bool(self.slice_context))
        self.sampler = EpochSampler(self.dataset, self.dist, cfg.seed)
        per_rank = self.sampler.num_samples
        self.drop_last = per_rank > cfg.batch_size
        self.loader = DataLoader(
            self.dataset, batch_size=cfg.batch_size, sampler=self.sampler,
            num_workers=cfg.num_workers, drop_last=self.drop_last,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        self.steps_per_epoch = (per_rank // cfg.batch_size if self.drop_last
                                else math.ceil(per_rank / cfg.batch_size))
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.criterion = SegmentationLoss(cfg.loss, num_classes,
                                          sync_ranks=self.dist.enabled).to(self.device)
        self.optimizer = self._make_optimizer()
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.progress = Progress(world_size=self.dist.world_size)
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ set-up steps
    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg, params = self.cfg, self.model.parameters()
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)

    def prepare_folder(self) -> None:
        """Apply the overwrite rule (on rank 0, shared with all ranks) and tidy the folder."""
        cfg = self.cfg

        def check() -> None:
            check_run_folder(self.out_dir, resume=cfg.resume, overwrite=cfg.overwrite,
                             inputs=self.inputs)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out_dir)
            if cfg.overwrite and not (cfg.resume and self.state_path.is_file()):
                clear_run_folder(self.out_dir)

        self.dist.agree(check)

    def resume(self) -> bool:
        """Restore the run state of ``out_dir`` (if any): weights, optimizer, counters, RNG.

        Rank 0 reads the file and shares it, so other machines need not see the folder. The
        ``last`` checkpoint is rewritten from the state (it may be one epoch behind after a
        kill between the two writes).
        """
        found = self.dist.agree(lambda: self.state_path.is_file())
        if not found:
            return False
        state = self.dist.agree(lambda: load_run_state(self.state_path))
        try:
            self.model.load_state_dict(state.model)
            self.optimizer.load_state_dict(state.optimizer)
        except (RuntimeError, ValueError, KeyError) as err:
            raise ValueError(
                f"The run state in {self.out_dir} was written for another model or optimizer "
                f"({str(err).splitlines()[0]}): resume with the run's own --model/--set/"
                "--optimizer, or start again with --overwrite") from err
        if state.scaler and self.use_amp:
            self.scaler.load_state_dict(state.scaler)
        if "torch" in state.rng:
            torch.set_rng_state(state.rng["torch"])
        if "cuda" in state.rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(state.rng["cuda"], self.device)
        self.progress = state.progress
        if self.dist.is_main and self.progress.step > 0:
            save_checkpoint(self.last_path, self.model, state.checkpoint_meta)
        return True

    # ------------------------------------------------------------------ training steps
    def _train_mode(self) -> None:
        self.net.train()
        if self.cfg.freeze_batchnorm:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _stop_requested(self) -> bool:
        """``should_stop()``; under DDP every rank asks its own and all stop if one does."""
        if self.should_stop is None:
            return False
        return self.dist.any(bool(self.should_stop()), self.device)

    def lr_at(self, step: int) -> float:
        """Poly decay: ``lr * (1 - step / total) ** power`` (TransUNet)."""
        cfg = self.cfg
        return cfg.lr * (1.0 - step / max(self.total_steps, 1)) ** cfg.poly_power

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> TrainEvent:
        """One optimizer step on a batch; the event carries the loss (mean over ranks)."""
        lr = self.lr_at(self.progress.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            out = self.net(x)
            loss, parts = self.criterion(out.logits.float(), y, out.aux["quant_loss"].float(),
                                         out.aux.get("plans"), out.aux.get("vote_logits"))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.progress.step += 1
        self.progress.batches_in_epoch += 1
        mean = self.dist.mean(loss.detach())
        if not torch.isfinite(mean):
            raise LossNotFinite(
                f"Loss became {mean.item()} at step {self.progress.step}: lower the learning "
                f"rate (now {self.cfg.lr}) or check the labels")
        return TrainEvent(kind="step", epoch=self.progress.epoch, step=self.progress.step,
                          total_steps=self.total_steps, loss=float(mean),
                          parts={k: float(v) for k, v in parts.items()}, lr=lr,
                          seconds=self.seconds)

    def train_epoch(self) -> bool:
        """Train the rest of epoch ``progress.epoch``; True if a stop was requested."""
        p = self.progress
        self.dataset.set_epoch(p.epoch)
        self.sampler.set_epoch(p.epoch)
        self.sampler.skip = p.batches_in_epoch * self.cfg.batch_size
        self._train_mode()
        for x, y in self.loader:
            if p.step >= self.total_steps:
                break
            if self._stop_requested():
                return True
            self.emit(self.train_step(x, y))
        return False

    def validate(self) -> dict | None:
        """Mean Dice per class, on rank 0 (other ranks wait); None when not due."""
        p, cfg = self.progress, self.cfg
        due = (p.epoch % cfg.validate_every == 0) or p.step >= self.total_steps
        if not self.val_cases or not due:
            return None
        val = None
        if self.dist.is_main:
            val = validate(self.model, self.val_cases, self.class_names, cfg.input_size,
                           self.device, cfg.batch_size, cfg.target_spacing_mm,
                           self.slice_context)
        self.dist.barrier()
        self._train_mode()
        return val

    # ------------------------------------------------------------------ saving
    def checkpoint_meta(self, val: dict | None) -> dict[str, Any]:
        """The metadata of a checkpoint written now (the caller's, plus the training record)."""
        p, cfg = self.progress, self.cfg
        meta = dict(self.base_meta)
        meta["input_size"] = list(cfg.input_size)
        if cfg.target_spacing_mm is not None:
            meta["target_spacing_mm"] = list(cfg.target_spacing_mm)
        meta["slice_context"] = self.slice_context
        meta["class_names"] = self.class_names
        meta["training"] = {
            **dict(self.base_meta.get("training") or {}),
            "epochs_done": p.epoch, "steps": p.step, "val_dice": _json_ready(val),
            "best_val_dice": p.best,
            "world_size": self.dist.world_size,
            "global_batch_size": cfg.batch_size * self.dist.world_size,
            "config": asdict(cfg), "train_slices": len(self.train_slices),
        }
        return meta

    def run_state(self, meta: dict[str, Any]) -> RunState:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return RunState(self.model.state_dict(), self.optimizer.state_dict(), self.progress,
                        self.scaler.state_dict() if self.use_amp else {}, rng, meta)

    def save(self, val: dict | None = None, *, new_best: bool = False) -> None:
        """``best`` (if ``new_best``), then the run state (the commit point), then ``last``.

        A kill at any point leaves a resumable folder: before the state is renamed into
        place the previous state is intact (the epoch is trained again, identically); after
        it, ``last`` is rewritten from the state on resume. Rank 0 only.
        """
        if not self.dist.is_main:
            return
        meta = self.checkpoint_meta(val)
        if new_best:
            save_checkpoint(self.best_path, self.model, meta)
        save_run_state(self.state_path, self.run_state(meta))
        if self.progress.step > 0:
            save_checkpoint(self.last_path, self.model, meta)

    # ------------------------------------------------------------------ the run
    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._t0

    def emit(self, event: TrainEvent) -> None:
        if self.callback is not None:
            self.callback(event)

    def fit(self) -> FitResult:
        """Run to ``epochs`` (or ``max_steps``, or a stop); see the module docstring."""
        cfg, p = self.cfg, self.progress
        self.prepare_folder()
        if not (cfg.resume and self.resume()):
            self.save()  # the initial state: the folder is a run folder from now on
        p = self.progress
        self._t0 = time.perf_counter()
        stopped = False
        while p.epoch < cfg.epochs and p.step < self.total_steps:
            if self.train_epoch():
                stopped = True
                break
            p.epoch, p.batches_in_epoch = p.epoch + 1, 0
            val = self.validate()
            p.history.append({"epoch": p.epoch, "step": p.step, "val_dice": val,
                              "seconds": self.seconds})
            new_best = val is not None and val["mean"] > p.best
            if new_best:
                p.best = val["mean"]
            self.save(val, new_best=new_best)
            self.dist.barrier()
            self.emit(TrainEvent(kind="epoch", epoch=p.epoch, step=p.step,
                                 total_steps=self.total_steps, val_dice=val,
                                 checkpoint=str(self.best_path if new_best else self.last_path),
                                 seconds=self.seconds))
        if stopped:
            self.save()
        self.dist.barrier()
        self.emit(TrainEvent(kind="stopped" if stopped else "done", epoch=p.epoch, step=p.step,
                             total_steps=self.total_steps, checkpoint=str(self.last_path),
                             seconds=self.seconds))
        best = self.dist.agree(lambda: self.best_path.is_file())
        return FitResult(str(self.last_path), str(self.best_path) if best else None,
                         list(p.history), stopped)
