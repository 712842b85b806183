"""Data-parallel training with ``torch.distributed``, as launched by ``torchrun``.

``torchrun --nproc_per_node N -m training.cli train ...`` starts N processes with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` set (``predict`` likewise, to split scans across the
processes); ``distributed_session`` joins them into one process
group (NCCL when training on CUDA, one GPU per process chosen by ``LOCAL_RANK``; gloo on CPU)
and yields a ``DistContext``. A plain ``l2gnet train`` gets ``DistContext()``: world size 1,
no process group, nothing changes. Only rank 0 writes files, logs and progress; decisions a
rank takes alone (is the output folder usable?) are taken on rank 0 and shared
(``DistContext.agree``) so that every rank fails together instead of waiting forever.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["DistContext", "distributed_session", "launched_by_torchrun"]

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: ``rank`` of ``world_size`` (1: not distributed)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs and progress."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA runs, else ``device``."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def device_name(self, requested: str) -> str:
        """A CLI ``--device`` for this rank: ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` (one
        GPU per process) when distributed; anything else is kept as given."""
        if not self.enabled or requested not in ("auto", "cuda"):
            return requested
        if requested == "cuda" or torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return "cpu"

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's share of a list every rank holds alike: ``items[rank::world_size]``, so
        each item is handled by exactly one rank."""
        return list(items[self.rank::self.world_size])

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value`` (small, picklable), in rank order, on every rank."""
        if not self.enabled:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (pickled over the process group: internal only)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a detached tensor over ranks (for logging the same loss everywhere)."""
        if not self.enabled:
            return value
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if ``flag`` is true on any rank (e.g. one got SIGTERM)."""
        if not self.enabled:
            return flag
        value = torch.tensor([int(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def agree(self, check: Callable[[], T]) -> T:
        """Run ``check`` on rank 0 only and give its result, or raise its error, everywhere.

        For checks of files that only rank 0 writes (they may not even be visible from other
        machines): every rank then fails with the same one-line message.
        """
        if not self.enabled:
            return check()
        outcome: tuple[str, Any]
        if self.is_main:
            try:
                outcome = ("ok", check())
            except (ValueError, OSError) as err:
                outcome = ("error", err)
        else:
            outcome = ("ok", None)
        kind, value = self.broadcast(outcome)
        if kind == "error":
            raise value
        return value


def launched_by_torchrun() -> bool:
    """True in a process started by ``torchrun`` with more than one process in the world."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@contextmanager
def distributed_session(device: str = "auto", backend: str | None = None
                        ) -> Iterator[DistContext]:
    """Join the ``torchrun`` process group for the body (a no-op outside ``torchrun``).

    ``device`` is the requested device: NCCL and one GPU per process for CUDA (``auto`` on a
    machine with GPUs), gloo otherwise. ``backend`` overrides that choice: batch prediction
    asks for gloo, since its ranks exchange only small Python objects.
    """
    if not launched_by_torchrun():
        yield DistContext()
        return
    ctx = DistContext(int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"]),
                      int(os.environ.get("LOCAL_RANK", "0")))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    try:
        yield ctx
    finally:
        dist.destroy_process_group()
