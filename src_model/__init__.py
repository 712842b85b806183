"""L2GNet and the papers' seed systems on one shared body: torch (+torchvision) only.

Public API::

    model = build_model("l2gnet", num_classes=9)          # paper default: R50, K=512, q=4
    out = model(x)                                          # SegOutput(logits, aux)
    save_checkpoint("model.safetensors", model, metadata)
    model, metadata = load_checkpoint("model.safetensors")
"""

from .checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from .registry import build_model, list_models
from .types import SegOutput

__all__ = [
    "CheckpointError",
    "SegOutput",
    "build_model",
    "list_models",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
]
