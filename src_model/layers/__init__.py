"""Pure, I/O-free building blocks: Sinkhorn, Nyström embedding, positional filter, quantiser."""

from .sinkhorn import sinkhorn_log

__all__ = [
    "sinkhorn_log",
]
