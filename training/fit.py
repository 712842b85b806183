"""``fit``: train or fine-tune a segmenter on 2-D slices, as the papers do.

SGD (lr 0.01, momentum 0.9, weight decay 1e-4) with poly decay (TransUNet), AdamW as an
option; AMP on CUDA; seeded; validation Dice per class each epoch; ``last`` and ``best``
checkpoints written atomically; resumable; progress through a callback; stoppable between
steps, always leaving a valid checkpoint. Fine-tuning is the same call from a checkpoint.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from scan_io.atomic import atomic_write_path
from src_model import load_checkpoint, save_checkpoint

from .data import Case, Slice, SliceDataset
from .data.transforms import AUGMENTATIONS
from .inference import predict_volume, resolve_device
from .losses import LossConfig, SegmentationLoss
from .metrics import dice


@dataclass
class TrainConfig:
    """How to train. Defaults are the papers' (TransUNet's) settings."""

    epochs: int = 10
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "sgd"  # or "adamw"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    input_size: tuple[int, int] = (224, 224)
    augment: str = "transunet"  # "transunet" (rot90/flip or rotation), "rotate", "none"
    amp: bool = True  # CUDA only
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    max_steps: int | None = None  # stop after this many steps in total (quick runs, tests)
    loss: LossConfig = field(default_factory=LossConfig)
    out_dir: str = "runs/l2gnet"
    resume: bool = False
    validate_every: int = 1

    def __post_init__(self) -> None:
        self.input_size = tuple(int(s) for s in self.input_size)
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)


@dataclass
class TrainEvent:
    """What ``fit`` reports: ``kind`` is "step", "epoch", "done" or "stopped".

    ``epoch`` is the 0-based epoch running for "step" events and the number of epochs
    completed for the others.
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds libraries that use the global state
    torch.manual_seed(seed)


def _make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def _optimizer_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name.replace(".safetensors", ".optim.safetensors"))


def save_optimizer(path: Path, optimizer: torch.optim.Optimizer, progress: dict) -> None:
    """Optimizer tensors as safetensors (no pickle), groups and progress as JSON; atomic."""
    state = optimizer.state_dict()
    tensors = {f"{pid}.{name}": value.detach().cpu().contiguous()
               for pid, entry in state["state"].items() for name, value in entry.items()
               if isinstance(value, torch.Tensor)}
    meta = {"param_groups": json.dumps(state["param_groups"]), "progress": json.dumps(progress)}
    with atomic_write_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["progress"])


def validate(model: torch.nn.Module, cases: Sequence[Case], class_names: Sequence[str],
             input_size: tuple[int, int], device: torch.device, batch_size: int) -> dict:
    """Mean Dice per foreground class over ``cases`` (volumes, already in [0, 1])."""
    scores: dict[str, list[float]] = {name: [] for name in class_names[1:]}
    for case in cases:
        pred = predict_volume(case.image, model, input_size=input_size, device=device,
                              batch_size=batch_size, metadata={"normalization": {"kind": "none"}})
        for c, name in enumerate(class_names[1:], start=1):
            truth = case.label == c
            if truth.any() or (pred.labels == c).any():
                scores[name].append(dice(pred.labels == c, truth))
    out = {name: float(np.mean(v)) if v else float("nan") for name, v in scores.items()}
    valid = [v for v in out.values() if not np.isnan(v)]
    out["mean"] = float(np.mean(valid)) if valid else float("nan")
    return out


def fit(
    model_or_checkpoint: torch.nn.Module | str | Path,
    train_slices: Sequence[Slice],
    val_cases: Sequence[Case],
    config: TrainConfig,
    *,
    metadata: dict[str, Any] | None = None,
    callback: Callable[[TrainEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FitResult:
    """Train ``model_or_checkpoint`` on ``train_slices``; validate on ``val_cases`` each epoch.

    ``metadata`` goes into every checkpoint (class names, colours, normalisation...); starting
    from a checkpoint inherits its metadata. Writes ``out_dir/last.safetensors`` each epoch (and
    when stopped) and ``out_dir/best.safetensors`` on a new best validation mean Dice.
    """
    cfg = config
    seed_everything(cfg.seed)
    if isinstance(model_or_checkpoint, str | Path):
        model, base_meta = load_checkpoint(model_or_checkpoint)
        base_meta = {**base_meta, **(metadata or {})}
    else:
        model, base_meta = model_or_checkpoint, dict(metadata or {})
    num_classes = model.num_classes
    class_names = list(base_meta.get("class_names") or
                       ["background"] + [f"class {i}" for i in range(1, num_classes)])
    for s in train_slices:  # all of them: a bad label found at step 900 wastes the run
        if s.label.size and int(s.label.max()) >= num_classes:
            raise ValueError(
                f"Training label {int(s.label.max())} in {s.source or 'a slice'} does not fit a "
                f"model with {num_classes} classes (0..{num_classes - 1})"
            )
    device = resolve_device(cfg.device)
    model.to(device).train()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out_dir / "last.safetensors", out_dir / "best.safetensors"

    dataset = SliceDataset(train_slices, cfg.input_size, augment=cfg.augment,
                           in_channels=model.in_channels, seed=cfg.seed)
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
        generator=torch.Generator().manual_seed(cfg.seed), drop_last=len(dataset) > cfg.batch_size,
    )
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    criterion = SegmentationLoss(cfg.loss, num_classes).to(device)
    optimizer = _make_optimizer(model, cfg)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    step, start_epoch, best, history = 0, 0, -1.0, []
    if cfg.resume and last_path.is_file():
        resumed, resumed_meta = load_checkpoint(last_path)
        model.load_state_dict(resumed.state_dict())
        progress = load_optimizer(_optimizer_path(last_path), optimizer)
        step, start_epoch = progress["step"], progress["epoch"]
        best, history = progress.get("best", -1.0), progress.get("history", [])

    def checkpoint(path: Path, epoch: int, val: dict | None) -> str:
        meta = dict(base_meta)
        meta["input_size"] = list(cfg.input_size)
        meta["class_names"] = class_names
        meta["training"] = {
            **dict(base_meta.get("training") or {}),
            "epochs_done": epoch, "steps": step, "val_dice": val, "best_val_dice": best,
            "config": asdict(cfg), "train_slices": len(train_slices),
        }
        save_checkpoint(path, model, meta)
        return str(path)

    def emit(event: TrainEvent) -> None:
        if callback is not None:
            callback(event)

    t0 = time.perf_counter()
    stopped = False
    epoch = epochs_done = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        dataset.set_epoch(epoch)
        for x, y in loader:
            if step >= total_steps:
                break
            if should_stop is not None and should_stop():
                stopped = True
                break
            lr = _poly_lr(cfg, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                out = model(x)
                loss, parts = criterion(out.logits.float(), y, out.aux["quant_loss"].float())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"Loss became {loss.item()} at step {step}: lower the learning rate "
                    f"(now {cfg.lr}) or check the labels"
                )
            emit(TrainEvent("step", epoch, step, total_steps, float(loss.detach()),
                            {k: float(v) for k, v in parts.items()}, lr,
                            seconds=time.perf_counter() - t0))
        if stopped:
            break
        val = None
        if val_cases and ((epoch + 1) % cfg.validate_every == 0 or step >= total_steps):
            val = validate(model, val_cases, class_names, cfg.input_size, device, cfg.batch_size)
            model.train()
        record = {"epoch": epoch + 1, "step": step, "val_dice": val,
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        saved_best = None
        if val is not None and val["mean"] > best:
            best = val["mean"]
            saved_best = checkpoint(best_path, epoch + 1, val)
        checkpoint(last_path, epoch + 1, val)
        epochs_done = epoch + 1
        save_optimizer(_optimizer_path(last_path), optimizer,
                       {"step": step, "epoch": epoch + 1, "best": best, "history": history})
        emit(TrainEvent("epoch", epoch + 1, step, total_steps, None, {}, None, val,
                        saved_best or str(last_path), time.perf_counter() - t0))
        if step >= total_steps:
            break

    if stopped:
        checkpoint(last_path, epoch, None)
        save_optimizer(_optimizer_path(last_path), optimizer,
                       {"step": step, "epoch": epoch, "best": best, "history": history})
    kind = "stopped" if stopped else "done"
    emit(TrainEvent(kind, epochs_done, step, total_steps, checkpoint=str(last_path),
                    seconds=time.perf_counter() - t0))
    return FitResult(str(last_path), str(best_path) if best_path.is_file() else None, history,
                     stopped)


def _poly_lr(cfg: TrainConfig, step: int, total: int) -> float:
    return cfg.lr * (1.0 - step / max(total, 1)) ** cfg.poly_power

