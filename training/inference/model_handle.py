"""One handle per checkpoint file: metadata read once, the model built on first use.

``open_model(path)`` returns the same ``ModelHandle`` while the file is unchanged (cached by
resolved path, modification time and size), so choosing a model again in the Segment panel,
or predicting several scans, neither re-reads the header nor rebuilds the network; a file
replaced on disk gets a fresh handle. Inference callers (Segment panel, ``l2gnet predict``,
``load_for_inference``) go through it. Training code that needs its own trainable copy still
calls ``src_model.load_checkpoint``: the handle's model is shared and must stay unmodified.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from src_model import CheckpointMeta, load_checkpoint, read_checkpoint_meta

_MAX_HANDLES = 4  # checkpoints kept open; each holds at most one built model per device


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A checkpoint's path and metadata; ``model(device)`` builds the network once, lazily.

    The model is shared by every caller of this handle: use it for inference only (eval mode,
    no weight changes). Get a private trainable copy with ``src_model.load_checkpoint``.
    """

    path: Path
    meta: CheckpointMeta
    _models: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def built(self) -> tuple[str, ...]:
        """The devices this handle has built a model on (empty until ``model`` is called)."""
        return tuple(self._models)

    def model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The checkpoint's network in eval mode on ``device``, built on the first call."""
        key = str(torch.device(device))
        with self._lock:  # the Segment panel builds in a worker thread
            if key not in self._models:
                self._models[key], _ = load_checkpoint(self.path, device=key)
            return self._models[key]


@dataclass
class _Cache:
    handles: OrderedDict[tuple, ModelHandle] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hits: int = 0
    misses: int = 0  # = header reads made by open_model


_CACHE = _Cache()


def _key(path: Path) -> tuple:
    resolved = path.expanduser().resolve()
    st = os.stat(resolved)
    return (str(resolved), st.st_mtime_ns, st.st_size)


def open_model(path: str | os.PathLike) -> ModelHandle:
    """The handle for the checkpoint at ``path``; its header is read only on a cache miss.

    Raises ``src_model.CheckpointError`` (with the fix) for a missing, non-checkpoint or
    damaged file, as ``read_checkpoint_meta`` does.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        read_checkpoint_meta(path)  # raises the clear "does not exist / is a folder" error
    key = _key(path)
    with _CACHE.lock:
        handle = _CACHE.handles.get(key)
        if handle is not None:
            _CACHE.hits += 1
            _CACHE.handles.move_to_end(key)
            return handle
    handle = ModelHandle(path=path, meta=read_checkpoint_meta(path))
    with _CACHE.lock:
        _CACHE.misses += 1
        stale = [k for k in _CACHE.handles if k[0] == key[0]]  # the same file, since replaced
        for k in stale:
            del _CACHE.handles[k]
        handle = _CACHE.handles.setdefault(key, handle)
        while len(_CACHE.handles) > _MAX_HANDLES:
            _CACHE.handles.popitem(last=False)
    return handle


def cache_stats() -> tuple[int, int]:
    """``(hits, header reads)`` of ``open_model`` since start or ``clear_cache``."""
    return _CACHE.hits, _CACHE.misses


def clear_cache() -> None:
    """Forget every handle (and the models they built), e.g. to free memory."""
    with _CACHE.lock:
        _CACHE.handles.clear()
        _CACHE.hits = _CACHE.misses = 0
