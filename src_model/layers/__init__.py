"""Pure, I/O-free building blocks: Sinkhorn, Nyström embedding, positional filter, quantiser."""

from .nystrom import NystromEmbedding, exp_kernel, kernel_inv_sqrt
from .sinkhorn import sinkhorn_log

__all__ = [
    "NystromEmbedding",
    "exp_kernel",
    "kernel_inv_sqrt",
    "sinkhorn_log",
]
