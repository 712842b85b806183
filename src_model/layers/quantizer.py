"""Vector quantiser (van den Oord et al., "Neural Discrete Representation Learning", 2017).

z_con -> nearest codebook entry by L2, straight-through gradient, loss
||sg[z] - e||^2 + beta ||z - sg[e]||^2 (L2GNet/SynergyNet: K = 512, dim = 1024, beta = 0.25).
Reports codebook usage (perplexity, dead codes): dead codes are the known failure of VQ
training, and ``restart_dead_codes`` is the simple remedy (off unless called).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["QuantizerOutput", "VectorQuantizer"]


class QuantizerOutput(NamedTuple):
    """What one forward returns.

    quantized: same shape and layout as the input, straight-through (d quantized / d z = I).
    indices: (B, *spatial) int64, the code chosen for each vector.
    loss: scalar, ||sg[z] - e||^2 + beta ||z - sg[e]||^2, each term a mean over elements.
    perplexity: scalar float tensor, exp(entropy of this batch's code histogram), in [1, K].
    dead_codes: scalar int64 tensor, the number of codes no vector of this batch chose.
    """

    quantized: Tensor
    indices: Tensor
    loss: Tensor
    perplexity: Tensor
    dead_codes: Tensor


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser with a (codebook_size x dim) codebook E.

    Args:
        codebook_size: K, number of codes.
        dim: code width (the bottleneck's channels).
        beta: commitment weight.
        channel_first: True for (B, dim, *spatial) inputs (the conv layout, default);
            False for (B, *spatial, dim).
    """

    def __init__(
        self,
        codebook_size: int = 512,
        dim: int = 1024,
        beta: float = 0.25,
        *,
        channel_first: bool = True,
    ):
        super().__init__()
        if codebook_size < 1 or dim < 1 or beta < 0:
            raise ValueError(
                f"need codebook_size >= 1, dim >= 1, beta >= 0; got {codebook_size}, {dim}, {beta}"
            )
        self.codebook_size = codebook_size
        self.dim = dim
        self.beta = beta
        self.channel_first = channel_first
        self.codebook = nn.Parameter(torch.empty(codebook_size, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """uniform(-1/K, 1/K), as the VQ-VAE reference implementations."""
        nn.init.uniform_(self.codebook, -1.0 / self.codebook_size, 1.0 / self.codebook_size)

    def _to_last(self, z: Tensor) -> Tensor:
        """Input layout -> (B, *spatial, dim)."""
        if z.dim() < 2 or z.shape[1 if self.channel_first else -1] != self.dim:
            layout = "(B, dim, ...)" if self.channel_first else "(B, ..., dim)"
            raise ValueError(f"VectorQuantizer expects {layout} with dim={self.dim}, "
                             f"got {tuple(z.shape)}")
        return torch.movedim(z, 1, -1) if self.channel_first else z

    def _from_last(self, z: Tensor) -> Tensor:
        return torch.movedim(z, -1, 1) if self.channel_first else z

    @torch.no_grad()
    def nearest(self, flat: Tensor) -> Tensor:
        """Index of the nearest code (L2) for each row of ``flat`` (N, dim); float32, no AMP."""
        with torch.autocast(device_type=flat.device.type, enabled=False):
            flat = flat.float()
            code = self.codebook.float()
            dist = (flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ code.T
                    + code.pow(2).sum(1)[None, :])
            return dist.argmin(dim=1)

    def forward(self, z: Tensor) -> QuantizerOutput:
        z_last = self._to_last(z)
        flat = z_last.reshape(-1, self.dim)
        indices = self.nearest(flat)
        e = F.embedding(indices, self.codebook).view(z_last.shape).to(z.dtype)
        loss = F.mse_loss(e, z_last.detach()) + self.beta * F.mse_loss(z_last, e.detach())
        quantized = z_last + (e - z_last).detach()  # straight-through estimator

        counts = torch.bincount(indices, minlength=self.codebook_size)
        probs = counts.float() / max(indices.numel(), 1)
        entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
        return QuantizerOutput(
            quantized=self._from_last(quantized),
            indices=indices.view(z_last.shape[:-1]),
            loss=loss,
            perplexity=torch.exp(entropy),
            dead_codes=(counts == 0).sum(),
        )

    @torch.no_grad()
    def restart_dead_codes(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Re-initialise the codes that no vector of ``z`` chose to randomly drawn vectors of z.

        Call it during training (e.g. every few hundred steps on a large batch), outside the
        forward/backward of a step: it writes the codebook in place. Used codes are untouched;
        the optimiser's state for the restarted rows is not reset. Returns the restarted code
        indices (int64).
        """
        flat = self._to_last(z).reshape(-1, self.dim).detach()
        used = torch.bincount(self.nearest(flat), minlength=self.codebook_size) > 0
        dead = torch.nonzero(~used).flatten()
        if dead.numel() == 0 or flat.shape[0] == 0:
            return dead[:0]
        if flat.shape[0] >= dead.numel():
            pick = torch.randperm(flat.shape[0], generator=generator,
                                  device="cpu")[: dead.numel()]
        else:
            pick = torch.randint(flat.shape[0], (dead.numel(),), generator=generator,
                                 device="cpu")
        self.codebook[dead] = flat[pick.to(flat.device)].to(self.codebook.dtype)
        return dead

    def extra_repr(self) -> str:
        return (f"codebook_size={self.codebook_size}, dim={self.dim}, beta={self.beta}, "
                f"channel_first={self.channel_first}")
