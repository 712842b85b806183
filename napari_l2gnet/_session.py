"""What the three widgets share for one viewer: the current checkpoint, and layer conventions.

The checkpoint: ``Session.checkpoint`` is the model the user chose in Segment (a shipped
model or a file); ``Session.checkpoint_changed(path, origin)`` fires when it changes, so
Fine-tune's input follows Segment's choice, and Segment adopts a fine-tuned checkpoint that
Fine-tune sets after the user accepts it. ``origin`` says who changed it ("segment",
"finetune", or "" when not said); a slot may take the path only.

A segmentation layer made by the plugin carries ``metadata["l2gnet"]`` with ``role`` =
"segmentation", ``source_image`` (the image layer's name), ``checkpoint`` (path), ``axis``,
``class_names``, ``model_labels`` (a copy of the model's output, kept beside the user's
corrections) and ``explanation`` (a ``training.inference.Explanation`` or None); plus the
image's ``metadata["nifti"]`` so saving lands on the scan's grid.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from psygnal import Signal

RESOURCES = Path(__file__).parent / "resources"
DEMO_CHECKPOINT = RESOURCES / "demo_l2gnet.safetensors"
META_KEY = "l2gnet"


def default_checkpoint() -> Path | None:
    """The shipped demo checkpoint, when the package has it."""
    return DEMO_CHECKPOINT if DEMO_CHECKPOINT.is_file() else None


class Session:
    """Per-viewer state: the checkpoint Segment uses and Fine-tune starts from."""

    checkpoint_changed = Signal(str, str)
    """``(path, origin)``: the session's checkpoint changed; ``origin`` names the panel."""

    def __init__(self) -> None:
        ckpt = default_checkpoint()
        self.checkpoint: str | None = str(ckpt) if ckpt else None

    def set_checkpoint(self, path: str | Path, origin: str = "") -> None:
        """Make ``path`` the current checkpoint and tell the listeners.

        It fires even for the same path (a fine-tuned model may have been written over its
        input); a listener ignores what it set itself (``origin``) to avoid echoes.
        """
        self.checkpoint = str(path)
        self.checkpoint_changed.emit(self.checkpoint, origin)


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session_for(viewer) -> Session:
    """The one ``Session`` of ``viewer`` (created on first use)."""
    if viewer not in _SESSIONS:
        _SESSIONS[viewer] = Session()
    return _SESSIONS[viewer]


def is_segmentation(layer) -> bool:
    return layer.metadata.get(META_KEY, {}).get("role") == "segmentation"
