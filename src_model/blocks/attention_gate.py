"""Additive attention gate on a skip connection (Oktay et al., "Attention U-Net: Learning
Where to Look for the Pancreas", MIDL 2018).

alpha = sigmoid(psi(relu(W_x skip + W_g gating))), one coefficient per skip pixel; the gate
returns ``skip * alpha``. The decoder calls it after upsampling its coarser signal, so the
gating map is already at the skip's resolution (it is resized if not).
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


class AttentionGate(nn.Module):
    """``gate(skip, gating) -> skip * alpha``, alpha (B, 1, H, W) = sigmoid(psi(...)).

    The gate keeps no state between calls; ``src_model.nets.attn_unet.attention_maps`` reads
    the alphas of one forward pass through hooks on ``psi``.

    Args:
        skip_channels: channels of the encoder skip (x in the paper).
        gating_channels: channels of the decoder's gating signal (g in the paper).
        inter_channels: width of the additive attention (paper: skip_channels // 2).
    """

    def __init__(self, skip_channels: int, gating_channels: int, inter_channels: int | None = None):
        super().__init__()
        inter = inter_channels or max(skip_channels // 2, 1)
        self.theta_x = nn.Conv2d(skip_channels, inter, kernel_size=1, bias=False)
        self.phi_g = nn.Conv2d(gating_channels, inter, kernel_size=1, bias=True)
        self.psi = nn.Conv2d(inter, 1, kernel_size=1, bias=True)

    def forward(self, skip: Tensor, gating: Tensor) -> Tensor:
        if gating.shape[-2:] != skip.shape[-2:]:
            gating = F.interpolate(
                gating, size=skip.shape[-2:], mode="bilinear", align_corners=False
            )
        alpha = self.psi(F.relu(self.theta_x(skip) + self.phi_g(gating))).sigmoid()
        return skip * alpha


def attention_gate_factory(skip_channels: int, gating_channels: int) -> AttentionGate:
    """The ``SkipGateFactory`` that ``build_segmenter(skip_gate=...)`` takes."""
    return AttentionGate(skip_channels, gating_channels)
