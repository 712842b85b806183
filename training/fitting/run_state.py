"""A training run's folder: what it holds, what may replace it, and its resumable state.

A run folder (``TrainConfig.out_dir``) holds three files:

- ``run_state.safetensors``: the *run state*, one file written atomically (temporary name,
  then rename), holding everything ``--resume`` needs and nothing else: the model weights,
  the optimizer tensors, and as JSON the optimizer's groups, the progress counters (epoch,
  step, batches done in the epoch, best Dice, history), the AMP scaler, the RNG state and the
  metadata of the checkpoint it stands for. One file, one rename: there is no moment at which
  the weights and the optimizer state on disk belong to different steps.
- ``last.safetensors`` and ``best.safetensors``: ordinary checkpoints (``src_model``), the
  files a user loads. ``last`` is an export of the run state and is rewritten from it on
  resume, so a kill between the two writes loses nothing.

A kill (power cut, ``kill -9``, out of memory) during a write leaves a hidden temporary file
(``.last.safetensors.XXXX.tmp``) beside the target; the next run in that folder removes them
(``remove_stale_temporaries``). ``check_run_folder`` is the overwrite rule: a folder holding
an earlier run is only written with ``resume`` (continue it) or ``overwrite`` (replace it), and
a run never writes over the checkpoint it starts from. See ``docs/design.md`` (training).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from scan_io.atomic import atomic_write_path

__all__ = [
    "LAST",
    "BEST",
    "STATE",
    "Progress",
    "RunState",
    "check_run_folder",
    "clear_run_folder",
    "load_run_state",
    "remove_stale_temporaries",
    "save_run_state",
]

LAST, BEST, STATE = "last.safetensors", "best.safetensors", "run_state.safetensors"
RUN_FILES = (LAST, BEST, STATE)
_LEGACY = ("last.optim.safetensors",)  # the optimizer file of versions before the run state
_MODEL, _OPTIM, _RNG = "model/", "optim/", "rng/"


@dataclass
class Progress:
    """Where a run stands. ``epoch``: epochs completed; ``step``: optimizer steps per rank;
    ``batches_in_epoch``: batches of epoch ``epoch`` already trained (a stop mid-epoch)."""

    epoch: int = 0
    step: int = 0
    batches_in_epoch: int = 0
    best: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)
    world_size: int = 1


@dataclass
class RunState:
    """Everything ``--resume`` restores; see the module docstring."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    progress: Progress
    scaler: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    checkpoint_meta: dict[str, Any] = field(default_factory=dict)


def check_run_folder(out_dir: str | os.PathLike, *, resume: bool, overwrite: bool,
                     inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse a run that would replace files it was not asked to replace (one-line errors).

    ``inputs`` are files the run reads (the checkpoint it starts from): a run never writes
    over them, whatever the flags. An earlier run's files are replaced only with
    ``overwrite``; ``resume`` continues a run and needs its run state.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out-dir {out} is a file; give a folder for the run")
    targets = {(out / name).resolve(): name for name in RUN_FILES}
    for src in inputs:
        if Path(src).resolve() in targets:
            raise ValueError(
                f"The run would overwrite its own input {src} (it writes "
                f"{targets[Path(src).resolve()]} in {out}): choose another --out-dir, or copy "
                "the checkpoint elsewhere first")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if not existing:
        return
    if resume:
        if STATE not in existing:
            raise ValueError(
                f"--resume: {out} holds {', '.join(existing)} but no {STATE} to resume from "
                "(written by an older version, or not a run folder); pass --overwrite to start "
                "a new run there, or choose another --out-dir")
        return
    if not overwrite:
        raise FileExistsError(
            f"{out} already holds a training run ({', '.join(existing)}): pass --resume to "
            "continue it, --overwrite to replace it, or choose another --out-dir")


def clear_run_folder(out_dir: str | os.PathLike) -> None:
    """Remove an earlier run's files (``--overwrite``), so none of them outlives the new run."""
    for name in (*RUN_FILES, *_LEGACY):
        (Path(out_dir) / name).unlink(missing_ok=True)


def remove_stale_temporaries(out_dir: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed write left in ``out_dir``; returns them.

    Only the names ``atomic_write_path`` gives this folder's run files are touched.
    """
    out = Path(out_dir)
    removed = []
    if not out.is_dir():
        return removed
    for name in (*RUN_FILES, *_LEGACY):
        for tmp in out.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def save_run_state(path: str | os.PathLike, state: RunState) -> None:
    """Write ``state`` to ``path`` as one safetensors file (no pickle), atomically."""
    tensors = {_MODEL + k: v.detach().to("cpu").contiguous().clone()
               for k, v in state.model.items()}
    opt = state.optimizer
    for pid, entry in opt["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIM}{pid}/{name}"] = value.detach().to("cpu").contiguous().clone()
    plain = {str(pid): {n: v for n, v in entry.items() if not isinstance(v, torch.Tensor)}
             for pid, entry in opt["state"].items()}
    for name, value in state.rng.items():
        tensors[_RNG + name] = value.detach().to("cpu").contiguous().clone()
    meta = {
        "param_groups": json.dumps(opt["param_groups"]),
        "optimizer_plain": json.dumps(plain),
        "progress": json.dumps(asdict(state.progress)),
        "scaler": json.dumps(state.scaler),
        "checkpoint_meta": json.dumps(state.checkpoint_meta),
    }
    with atomic_write_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_run_state(path: str | os.PathLike) -> RunState:
    """Read a run state written by ``save_run_state``; ``ValueError`` if it is damaged."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        groups = json.loads(meta["param_groups"])
        plain = json.loads(meta["optimizer_plain"])
        progress = Progress(**json.loads(meta["progress"]))
        scaler = json.loads(meta["scaler"])
        checkpoint_meta = json.loads(meta["checkpoint_meta"])
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"The run state {path} is damaged ({err}); start again with "
                         "--overwrite or from last.safetensors with --from") from err
    model, rng = {}, {}
    opt_state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in plain.items()}
    for key, value in tensors.items():
        if key.startswith(_MODEL):
            model[key[len(_MODEL):]] = value
        elif key.startswith(_OPTIM):
            pid, name = key[len(_OPTIM):].split("/", 1)
            opt_state.setdefault(int(pid), {})[name] = value
        elif key.startswith(_RNG):
            rng[key[len(_RNG):]] = value
    return RunState(model, {"state": opt_state, "param_groups": groups}, progress, scaler, rng,
                    checkpoint_meta)
