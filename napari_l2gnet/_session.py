"""What the three widgets share for one viewer: the current checkpoint, and layer conventions.

The checkpoint: ``Session.checkpoint`` is the model the user chose in Segment (a shipped
model or a file); ``Session.checkpoint_changed(path, origin)`` fires when it changes, so
Fine-tune's input follows Segment's choice, and Segment adopts a fine-tuned checkpoint that
Fine-tune sets after the user accepts it. ``origin`` says who changed it ("segment",
"finetune", or "" when not said); a slot may take the path only.

A segmentation layer made by the plugin carries ``metadata["l2gnet"]``, a
``napari_l2gnet._layer_record.LayerRecord`` (written and read only through that module), plus
the image's ``metadata["nifti"]`` so saving lands on the scan's grid.

Identity: a panel docked from the Plugins menu (``add_plugin_dock_widget``) gets napari's
public proxies of the viewer and of every layer it reaches through it, a new proxy object per
access; events still carry the real layers. So nothing here compares napari objects with
``is``, ``id()`` or as dict keys: ``same_layer`` compares what the proxies wrap, ``layer_key``
is the layer's own ``unique_id``, and sessions are kept per real viewer (``unwrap``).
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from pathlib import Path

from psygnal import Signal

from ._layer_record import META_KEY as META_KEY  # re-exported: where panels import it
from ._layer_record import read_record

RESOURCES = Path(__file__).parent / "resources"
DEMO_CHECKPOINT = RESOURCES / "demo_l2gnet.safetensors"


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


def unwrap(obj):
    """The napari object behind a public proxy (``obj`` itself when it is not one).

    napari's ``PublicOnlyProxy`` is a ``wrapt.ObjectProxy`` (wrapt's public API; napari's own
    module for it is private)."""
    from wrapt import ObjectProxy

    while isinstance(obj, ObjectProxy):
        obj = obj.__wrapped__
    return obj


def same_layer(a, b) -> bool:
    """Whether ``a`` and ``b`` are the same layer, whichever of them is a proxy (None: no)."""
    return a is not None and b is not None and unwrap(a) is unwrap(b)


def layer_key(layer) -> Hashable:
    """A key for per-layer state that is the same through a proxy and the real layer."""
    return layer.unique_id


def session_for(viewer) -> Session:
    """The one ``Session`` of ``viewer`` (created on first use), the same for every panel
    whether it holds the viewer or a proxy of it."""
    viewer = unwrap(viewer)
    if viewer not in _SESSIONS:
        _SESSIONS[viewer] = Session()
    return _SESSIONS[viewer]


def is_segmentation(layer) -> bool:
    return read_record(layer).is_segmentation
