"""Checkpoints: one ``.safetensors`` file holding the weights and a JSON metadata entry.

The metadata is enough to rebuild and use the model (architecture config, class names and
colours, input size, intensity normalisation, slice axis, version, training summary). Nothing
is ever unpickled, and a save goes to a temporary file that is renamed into place, so an
interrupted save never leaves a broken checkpoint behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from scan_io.atomic import atomic_write_path

from .config import config_to_dict
from .registry import build_model

FORMAT = "napari-l2gnet/1"
_META_KEY = "l2gnet"
VERSION = "0.1.0"


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint; the message says which and why."""


def default_metadata(num_classes: int) -> dict[str, Any]:
    """What ``load_checkpoint`` fills in when a checkpoint leaves a key out."""
    return {
        "class_names": ["background"] + [f"class {i}" for i in range(1, num_classes)],
        "class_colors": None,
        "input_size": [224, 224],
        "normalization": {"kind": "none"},
        "slice_axis": 0,
        "encoder_weights": "random",
        "training": {},
    }


def save_checkpoint(
    path: str | os.PathLike, model: torch.nn.Module, metadata: dict[str, Any]
) -> Path:
    """Write ``model``'s weights and ``metadata`` atomically to ``path`` (``.safetensors``).

    ``metadata`` must be JSON-serialisable; the model's name, class count and config are added
    under ``"model"``. Returns the path written.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"Checkpoint path {path} must end in .safetensors")
    meta = dict(metadata)
    meta["format"] = FORMAT
    meta["version"] = VERSION
    meta["model"] = {
        "name": model.name,
        "num_classes": model.num_classes,
        "config": config_to_dict(model.config),
    }
    names = meta.get("class_names")
    if names is not None and len(names) != model.num_classes:
        raise CheckpointError(
            f"metadata['class_names'] has {len(names)} names but the model has "
            f"{model.num_classes} classes"
        )
    try:
        meta_json = json.dumps(meta)
    except TypeError as err:
        raise CheckpointError(f"Checkpoint metadata must be JSON-serialisable: {err}") from err
    # safetensors refuses shared or non-contiguous storage: give it independent copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_write_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: meta_json})
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's metadata, without building the model (cheap; for UIs and checks)."""
    path = Path(path)
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
    try:
        meta = json.loads(raw)
        model_meta = meta["model"]
        model_meta["name"], model_meta["num_classes"], model_meta["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} has damaged metadata ({err!r})") from err
    filled = default_metadata(int(model_meta["num_classes"]))
    filled.update(meta)
    return filled


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild the model a checkpoint describes and load its weights: ``(model, metadata)``.

    The model is returned in eval mode on ``device``. A file that is not a checkpoint, is
    truncated, or whose weights do not match its config raises ``CheckpointError``.
    """
    path = Path(path)
    meta = read_metadata(path)
    model_meta = meta["model"]
    try:
        model = build_model(
            model_meta["name"], int(model_meta["num_classes"]), **model_meta["config"]
        )
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{path} describes a model this version cannot build (written by version "
            f"{meta.get('version')}): {err}"
        ) from err
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is truncated or corrupted: {err}") from err
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {keys[:4]}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected),
                                ("wrong shape", wrong))
            if keys
        )
        raise CheckpointError(
            f"Weights in {path} do not match the {model_meta['name']!r} config stored in it "
            f"({detail})"
        )
    model.load_state_dict(state)
    return model.to(device).eval(), meta
