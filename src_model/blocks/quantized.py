"""Bottlenecks that start with the vector quantiser (VQUNet, TransVQUNet, SynergyNet, L2GNet)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..config import BodyConfig, _positive
from ..layers.quantizer import VectorQuantizer
from .bottleneck import Bottleneck


@dataclass
class QuantizerConfig(BodyConfig):
    """Body + codebook. Args: codebook_size (K), code_dim (the bottleneck's width),
    commitment_beta (beta in ||sg[z]-e||^2 + beta ||z-sg[e]||^2)."""

    codebook_size: int = 512
    code_dim: int = 1024
    commitment_beta: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "codebook_size", "code_dim", "commitment_beta")


class QuantizedBottleneck(Bottleneck):
    """z_con -> nearest code z_dis (straight-through). Alone, this is VQUNet's bottleneck."""

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        self.in_channels = self.out_channels = config.code_dim
        self.quantizer = VectorQuantizer(
            config.codebook_size, config.code_dim, beta=config.commitment_beta
        )

    def quantize(self, z_con: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Quantise and report what docs/design.md asks of a quantiser (loss, codes, usage)."""
        q = self.quantizer(z_con)
        aux = {
            "quant_loss": q.loss,
            "codes": q.indices,
            "codebook_usage": {"perplexity": q.perplexity, "dead_codes": q.dead_codes},
        }
        return q.quantized, aux

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        return self.quantize(x)
