"""L2GNet (Gorade et al., PMLR 317, 2026): quantiser + L2GMapper on the shared body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..blocks.l2g_mapper import COLUMN_MARGINALS, COSTS, POS_MODES, L2GMapper
from ..blocks.quantized import QuantizedBottleneck, QuantizerConfig
from ..config import _positive
from ..registry import register_model
from .base import Segmenter, build_segmenter

PLAN_RETURNS = ("residual", "replace", "gate")

# Named settings of the plan design choices (docs/design.md "Plan design choices"); pass one
# as config
# overrides, e.g. ``build_model("l2gnet", n, **PLAN_PRESETS["sharp"])`` or the same as
# ``--set`` options. "paper" is the paper-literal reading, today's default: every field below
# defaults to it, so checkpoints saved before these fields existed load unchanged.
PLAN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(cost="dot", sinkhorn_eps=0.5, pos_mode="1d", pos_before_sinkhorn=True,
                  renormalize_rows=False, column_marginal="uniform", plan_return="residual"),
    # The sharpest plans of the CPU ablation at no Dice cost; not anatomical (README table).
    "sharp": dict(cost="cosine", cost_temperature=0.02, sinkhorn_eps=1.0, pos_mode="none",
                  column_marginal="learned", ref_size=4, plan_return="replace"),
}


@dataclass
class L2GNetConfig(QuantizerConfig):
    """L2GNet's bottleneck (paper eq. 1-3; docs/design.md "L2GMapper").

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
        pos_before_sinkhorn: also weight the similarities by S before Sinkhorn (OTKE).
        cost: ``"dot"`` (raw dot product, the paper) or ``"cosine"`` (cosine / cost_temperature).
        cost_temperature: tau of the cosine cost.
        renormalize_rows: rescale the plan's rows back to 1/n after the positional weighting.
        column_marginal: ``"uniform"`` (1/t per bucket) or ``"learned"`` (per reference).
        plan_return: how the mapper's map meets the continuous map z_con: ``"residual"``
            (z_con + mapper), ``"replace"`` (the mapper's map alone) or ``"gate"`` (a learned
            per-pixel, per-channel sigmoid mix of the two).
        plan_vote: give every bucket learned class logits and add each token's vote (its plan
            row times them, summed over references) to the output logits, upsampled (ours, not
            the paper's): the output then depends on where the plans send each token, which
            the skips cannot route around, and each bucket has a readable class.

    Every field added after the first release defaults to that release's behaviour, so a
    checkpoint whose metadata lacks it loads unchanged (docs/design.md "Plan design choices").
    """

    num_refs: int = 4
    ref_size: int = 16
    num_anchors: int = 256
    kernel_sigma: float = 0.5
    sinkhorn_eps: float = 0.5
    sinkhorn_iters: int = 10
    pos_sigma: float = 0.5
    pos_mode: str = "1d"
    pos_before_sinkhorn: bool = True
    cost: str = "dot"
    cost_temperature: float = 0.05
    renormalize_rows: bool = False
    column_marginal: str = "uniform"
    plan_return: str = "residual"
    plan_vote: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "num_refs", "ref_size", "num_anchors", "kernel_sigma", "sinkhorn_eps",
                  "sinkhorn_iters", "pos_sigma", "cost_temperature")
        for name, accepted in (("pos_mode", POS_MODES), ("cost", COSTS),
                               ("column_marginal", COLUMN_MARGINALS),
                               ("plan_return", PLAN_RETURNS)):
            if getattr(self, name) not in accepted:
                raise ValueError(f"{name} must be one of {accepted}, "
                                 f"got {getattr(self, name)!r}")


class L2GBottleneck(QuantizedBottleneck):
    """z_con -> VQ -> L2GMapper(z_dis) -> back on the token grid, combined with z_con.

    ``plan_return`` picks the combination: residual add (the decoder can bypass the mapper),
    replace (it cannot, through this path), or a learned gate g = sigmoid(conv1x1([z_con,
    mapper])) giving (1 - g) * z_con + g * mapper. With ``plan_vote`` it also returns
    ``aux["vote_logits"]`` (B, C, h, w), which the body adds to its output logits.
    """

    def __init__(self, config: L2GNetConfig, num_classes: int = 2):
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
            pos_before_sinkhorn=config.pos_before_sinkhorn,
            cost=config.cost,
            cost_temperature=config.cost_temperature,
            renormalize_rows=config.renormalize_rows,
            column_marginal=config.column_marginal,
        )
        self.plan_return = config.plan_return
        self.gate = (nn.Conv2d(2 * config.code_dim, config.code_dim, kernel_size=1)
                     if config.plan_return == "gate" else None)
        # Zero start: the vote adds nothing until training finds what each bucket holds.
        self.bucket_votes = (nn.Parameter(torch.zeros(config.num_refs, config.ref_size,
                                                      num_classes))
                             if config.plan_vote else None)

    def vote_logits(self, plans: Tensor, h: int, w: int) -> Tensor:
        """(B, q, n, t) plans -> (B, C, h, w): sum_r sum_j n T^r_ij v^r_j, v the bucket votes.

        A token whose row sits on one bucket gets that bucket's vote; a uniform row gets the
        mean vote of the reference, the same for every token.
        """
        n = plans.shape[2]
        votes = self.bucket_votes.to(plans.dtype)
        tokens = n * torch.einsum("bqnt,qtc->bcn", plans, votes)
        return tokens.reshape(plans.shape[0], -1, h, w)

    def forward(self, z_con: Tensor) -> tuple[Tensor, dict[str, Any]]:
        z_dis, aux = self.quantize(z_con)
        dense, plans = self.mapper(z_dis)
        aux["plans"] = plans
        if self.bucket_votes is not None:
            aux["vote_logits"] = self.vote_logits(plans, *z_dis.shape[-2:])
        if self.plan_return == "replace":
            return dense, aux
        if self.gate is not None:
            g = torch.sigmoid(self.gate(torch.cat([z_con, dense.to(z_con.dtype)], dim=1)))
            aux["gate"] = g
            return (1 - g) * z_con + g * dense, aux
        return z_con + dense, aux


@register_model("l2gnet", L2GNetConfig, "L2GNet: quantiser + optimal-transport L2GMapper")
def build_l2gnet(num_classes: int, config: L2GNetConfig) -> Segmenter:
    return build_segmenter("l2gnet", num_classes, config,
                           lambda width: L2GBottleneck(config, num_classes))
