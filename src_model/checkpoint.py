"""Checkpoints: one ``.safetensors`` file holding the weights and a JSON metadata entry.

The metadata (``CheckpointMeta``: architecture config, class names and colours, input size,
intensity normalisation, training record, model card) is enough to rebuild and use the model.
Nothing is ever unpickled, and a save goes to a temporary file that is renamed into place, so
an interrupted save never leaves a broken checkpoint behind.

Loading checks a file from outside before trusting it (docs/design.md, "Checkpoints"): the
metadata against sane bounds, then the described model is built on PyTorch's ``meta`` device
(no memory, no random initialisation) and its parameter count and tensor shapes compared with
the file's header; weights that are NaN or infinite are refused; then the file's tensors are
assigned to that skeleton.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from scan_io.atomic import atomic_write_path

from .checkpoint_meta import (
    FORMAT,
    VERSION,
    CheckpointError,
    CheckpointMeta,
    as_metadata_dict,
)
from .config import config_to_dict
from .registry import build_model

__all__ = [
    "FORMAT",
    "MAX_PARAMETERS",
    "VERSION",
    "CheckpointError",
    "CheckpointMeta",
    "load_checkpoint",
    "read_checkpoint_meta",
    "read_metadata",
    "save_checkpoint",
]

_META_KEY = "l2gnet"
MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32: far above any model here (R50 TransUNet: 139M)
_MAX_METADATA_BYTES = 16 * 1024 * 1024


def save_checkpoint(
    path: str | os.PathLike, model: torch.nn.Module, metadata: CheckpointMeta | Mapping | None
) -> Path:
    """Write ``model``'s weights and ``metadata`` atomically to ``path`` (``.safetensors``).

    ``metadata`` is a ``CheckpointMeta`` or a JSON-ready dict of its fields; the model's name,
    class count and config are taken from ``model``. Returns the path written.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"Checkpoint path {path} must end in .safetensors")
    raw = as_metadata_dict(metadata)
    names = raw.get("class_names")
    if names is not None and len(names) != model.num_classes:
        raise CheckpointError(
            f"metadata['class_names'] has {len(names)} names but the model has "
            f"{model.num_classes} classes"
        )
    raw.update(format=FORMAT, version=VERSION, model={
        "name": model.name, "num_classes": model.num_classes,
        "config": config_to_dict(model.config)})
    try:
        meta_json = json.dumps(raw, allow_nan=False)  # strict JSON: NaN is recorded as null
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"Checkpoint metadata must be JSON-serialisable: {err}") from err
    meta = CheckpointMeta.from_dict(json.loads(meta_json), source=str(path))
    meta_json = json.dumps(meta.to_dict())
    # safetensors refuses shared or non-contiguous storage: give it independent copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_write_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: meta_json})
    return path


def read_checkpoint_meta(path: str | os.PathLike) -> CheckpointMeta:
    """The checkpoint's validated metadata, without building the model (cheap)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"Checkpoint {path} is a folder; give the .safetensors file in it")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable .safetensors checkpoint (not safetensors, or truncated "
            f"or corrupted): {err}"
        ) from err
    if raw is None:
        raise CheckpointError(
            f"{path} is a safetensors file but not a napari-l2gnet checkpoint: it has no "
            f"'{_META_KEY}' metadata entry (weights from elsewhere need their architecture "
            f"config; save them with src_model.save_checkpoint)"
        )
    if len(raw) > _MAX_METADATA_BYTES:
        raise CheckpointError(f"{path} has {len(raw)} bytes of metadata (at most "
                              f"{_MAX_METADATA_BYTES}): damaged or not ours; use another file")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as err:
        kind = "nested too deeply" if isinstance(err, RecursionError) else "not valid JSON"
        raise CheckpointError(f"{path} has damaged metadata ({kind}); use another "
                              "checkpoint") from None
    return CheckpointMeta.from_dict(data, source=str(path))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Legacy: ``read_checkpoint_meta(path).to_dict()``, a plain (mutable) dict.

    Validated the same way; new code should use ``read_checkpoint_meta`` and its attributes.
    """
    return read_checkpoint_meta(path).to_dict()


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is truncated or corrupted: {err}") from err


def _build(meta: CheckpointMeta, path: Path, device: str | None = None) -> torch.nn.Module:
    """``build_model`` from the metadata; any failure is a ``CheckpointError``."""
    info = meta.model
    try:
        if device is None:
            return build_model(info.name, info.num_classes, **info.config)
        with torch.device(device):
            return build_model(info.name, info.num_classes, **info.config)
    except Exception as err:  # a crafted config can fail anywhere in a constructor
        raise CheckpointError(
            f"{path} describes a model this version cannot build (written by version "
            f"{meta.version}): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err


def _check_against_header(model: torch.nn.Module, shapes: dict[str, tuple[int, ...]],
                          meta: CheckpointMeta, path: Path) -> None:
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise CheckpointError(
            f"{path} describes a {meta.model.name!r} model with {count:,} parameters (at most "
            f"{MAX_PARAMETERS:,}): its config is damaged or crafted; use another checkpoint")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {keys[:4]}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected),
                                ("wrong shape", wrong))
            if keys
        )
        raise CheckpointError(
            f"Weights in {path} do not match the {meta.model.name!r} config stored in it "
            f"({detail})"
        )


def _has_meta_tensors(model: torch.nn.Module) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [v for m in model.modules() for v in vars(m).values() if isinstance(v, torch.Tensor)]
    return any(t.is_meta for t in tensors)


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, CheckpointMeta]:
    """Rebuild the model a checkpoint describes and load its weights: ``(model, meta)``.

    The model is returned in eval mode on ``device``. A file that is not a checkpoint, is
    truncated, has out-of-bounds metadata, weights that do not match its config, or NaN/inf
    weights raises ``CheckpointError`` before any large allocation.
    """
    path = Path(path)
    meta = read_checkpoint_meta(path)
    shapes = _header_shapes(path)
    skeleton = _build(meta, path, device="meta")  # no memory, no random init
    _check_against_header(skeleton, shapes, meta, path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is truncated or corrupted: {err}") from err
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise CheckpointError(
            f"{path} has NaN or infinite weights ({', '.join(bad[:3])}"
            f"{' ...' if len(bad) > 3 else ''}): the run that wrote it diverged; use an earlier "
            "checkpoint (e.g. best.safetensors) or retrain with a lower learning rate")
    # Every parameter and buffer is in the file (checked above), so the skeleton takes the
    # loaded tensors as they are; a model holding tensors outside its state is built for real.
    skeleton.load_state_dict(state, assign=True)
    if _has_meta_tensors(skeleton):
        model = _build(meta, path)
        model.load_state_dict(state)
    else:
        model = skeleton
    return model.to(device).eval(), meta

