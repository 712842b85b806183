"""Reusable blocks built from ``src_model.layers``."""

from .l2g_mapper import L2GMapper, transport_back

__all__ = ["L2GMapper", "transport_back"]
