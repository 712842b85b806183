"""L2GNet and the papers' seed systems on one shared body: torch (+torchvision) only.

Public API::

    model = build_model("l2gnet", num_classes=9)          # paper default: R50, K=512, q=4
    out = model(x)                                          # SegOutput(logits, aux)
    save_checkpoint("model.safetensors", model, metadata)
    model, meta = load_checkpoint("model.safetensors")    # meta: CheckpointMeta
"""

from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_meta,
    read_metadata,
    save_checkpoint,
)
from .checkpoint_meta import DEFAULT_INPUT_SIZE, CheckpointMeta, ModelCard, default_class_names
from .registry import build_model, list_models
from .types import SegOutput

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "CheckpointError",
    "CheckpointMeta",
    "ModelCard",
    "SegOutput",
    "build_model",
    "default_class_names",
    "list_models",
    "load_checkpoint",
    "read_checkpoint_meta",
    "read_metadata",
    "save_checkpoint",
]
