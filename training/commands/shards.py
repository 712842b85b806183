"""Splitting a batch across the processes ``torchrun`` starts.

``torchrun --nproc_per_node N -m training.cli predict ...`` sets ``WORLD_SIZE``/``RANK``/
``LOCAL_RANK``; each rank takes every N-th item of the same sorted list, so every output is
written by exactly one rank. Ranks only exchange small Python objects (error messages, the
paths written), so the process group always uses gloo, also when the model runs on CUDA
(one GPU per rank: ``cuda:LOCAL_RANK``). Without ``torchrun`` nothing is initialised.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Shards:
    """This process's place among the ranks (``rank`` of ``world_size``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    _group: bool = False

    @classmethod
    def from_environment(cls) -> Shards:
        """Join torchrun's process group when ``WORLD_SIZE`` > 1, else a single shard."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                   True)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's items: ``items[rank::world_size]`` (the same list on every rank)."""
        return list(items[self.rank::self.world_size])

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self._group:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def device(self, requested: str) -> str:
        """One device per rank: ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` under torchrun."""
        if not self._group or requested not in ("auto", "cuda"):
            return requested
        import torch

        if requested == "cuda" or torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return "cpu"

    def close(self) -> None:
        if self._group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._group = False
