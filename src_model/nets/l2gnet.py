"""L2GNet (Gorade et al., PMLR 317, 2026): quantiser + L2GMapper on the shared body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..blocks.l2g_mapper import L2GMapper
from ..blocks.quantized import QuantizedBottleneck, QuantizerConfig
from ..config import _positive
from ..registry import register_model
from .base import Segmenter, build_segmenter


@dataclass
class L2GNetConfig(QuantizerConfig):
    """L2GNet's bottleneck (paper eq. 1-3; DESIGN.md "L2GMapper").

    Args:
        num_refs: q, the number of learnable references (paper: 2 or 4).
        ref_size: t, elements per reference (buckets); a square in the 2-D positional mode.
        num_anchors: k, Nyström anchors; psi(z) lives in R^k.
        kernel_sigma: sigma of the exponential kernel, alpha = 1 / sigma^2 (OTKE: 0.3-0.5).
        sinkhorn_eps: entropic regularisation epsilon.
        sinkhorn_iters: Sinkhorn iterations (paper: 10).
        pos_sigma: sigma_pos of the positional filter S.
        pos_mode: ``"1d"`` (row-major token index, cell centres (i + 0.5)/n), ``"2d"`` (row x column
            Gaussians) or ``"none"``.
    """

    num_refs: int = 4
    ref_size: int = 16
    num_anchors: int = 256
    kernel_sigma: float = 0.5
    sinkhorn_eps: float = 0.5
    sinkhorn_iters: int = 10
    pos_sigma: float = 0.5
    pos_mode: str = "1d"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "num_refs", "ref_size", "num_anchors", "kernel_sigma", "sinkhorn_eps",
                  "sinkhorn_iters", "pos_sigma")
        if self.pos_mode not in ("1d", "2d", "none"):
            raise ValueError(f"pos_mode must be '1d', '2d' or 'none', got {self.pos_mode!r}")


class L2GBottleneck(QuantizedBottleneck):
    """z_con -> VQ -> L2GMapper(z_dis) -> back on the token grid, added to z_con (residual)."""

    def __init__(self, config: L2GNetConfig):
        super().__init__(config)
        self.mapper = L2GMapper(
            config.code_dim,
            num_refs=config.num_refs,
            ref_size=config.ref_size,
            num_anchors=config.num_anchors,
            kernel_sigma=config.kernel_sigma,
            sinkhorn_eps=config.sinkhorn_eps,
            sinkhorn_iters=config.sinkhorn_iters,
            pos_sigma=config.pos_sigma,
            pos_mode=config.pos_mode,
            out_dim=config.code_dim,
        )

    def forward(self, z_con: Tensor) -> tuple[Tensor, dict[str, Any]]:
        z_dis, aux = self.quantize(z_con)
        dense, plans = self.mapper(z_dis)
        aux["plans"] = plans
        return z_con + dense, aux


@register_model("l2gnet", L2GNetConfig, "L2GNet: quantiser + optimal-transport L2GMapper")
def build_l2gnet(num_classes: int, config: L2GNetConfig) -> Segmenter:
    return build_segmenter("l2gnet", num_classes, config, lambda width: L2GBottleneck(config))
