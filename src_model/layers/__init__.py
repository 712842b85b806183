"""Pure, I/O-free building blocks: Sinkhorn, Nyström embedding, positional filter, quantiser."""

from .nystrom import NystromEmbedding, exp_kernel, kernel_inv_sqrt
from .positional import positional_filter_1d, positional_filter_2d
from .quantizer import QuantizerOutput, VectorQuantizer
from .sinkhorn import sinkhorn_log

__all__ = [
    "NystromEmbedding",
    "QuantizerOutput",
    "VectorQuantizer",
    "exp_kernel",
    "kernel_inv_sqrt",
    "positional_filter_1d",
    "positional_filter_2d",
    "sinkhorn_log",
]
