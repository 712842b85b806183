"""Training loss: CE + soft Dice + quantiser loss + optional spectral, bucket and vote terms.

``total = ce_weight * CE + dice_weight * (1 - soft Dice) + quant_weight * quant_loss
+ spectral_weight * spectral + bucket_weight * bucket + vote_weight * vote``

- **CE**: ``F.cross_entropy`` on the logits, with ``class_weights`` when given (fine-tuning
  gives them: ``training.data.sampling.class_weights``, softened inverse frequency on the
  painted slices, so a small painted structure is learned as well as a large one). For
  ``num_classes == 2`` the equivalent binary form is used:
  ``BCE-with-logits(logits[:, 1] - logits[:, 0], target)``. A two-way softmax is
  the sigmoid of the logit difference, so the value and the gradients are the same as the
  two-class cross-entropy (up to rounding).
- **Dice**: soft Dice on softmax probabilities, per foreground class ``1..C-1`` over the whole
  batch, in TransUNet's ``DiceLoss`` form ``(2 sum(p g) + s) / (sum(p^2) + sum(g^2) + s)``
  with ``s = 1e-5``; the loss is ``1 - dice`` averaged over the foreground classes.
- **quant**: the model's ``aux["quant_loss"]`` (``None`` counts as 0).
- **spectral**: the Spectral Correlation Coefficient objective of SSNet (Gorade et al.,
  "Harmonized Spatial and Spectral Learning for Robust and Generalized Medical Image
  Segmentation", arXiv:2401.10373): the spatial masks are moved to the frequency domain with
  ``torch.fft.fft2`` and the prediction's spectrum is asked to correlate with the truth's.
  The paper's exact formula was not available to us; the form implemented here is: for each
  sample ``b`` and foreground class ``c`` present in the truth slice, with
  ``P = |fft2(softmax(logits)[b, c])|`` and ``G = |fft2(onehot(target)[b, c])|`` (amplitude
  spectra, all ``H*W`` frequencies), ``rho = pearson(P, G)`` (centred over the frequencies),
  and ``spectral = mean(1 - rho)`` over those (sample, class) pairs; 0 when no foreground class
  is present anywhere in the batch. Properties: in ``[0, 2]``; 0 when the probabilities equal
  the one-hot truth; unchanged by a circular shift of the prediction and by scaling it by a
  positive constant (both leave the amplitude spectrum correlation unchanged), so it measures
  shape and scale content rather than position, which CE and Dice already constrain.
  Classes absent from a sample's truth are skipped (their amplitude spectrum is 0 and the
  correlation undefined); false positives there are left to CE and Dice.
- **bucket** (ours, not the paper's; docs/design.md "Plan design choices"): asks L2GNet's
  transport plans to route tokens of one class to the same buckets, so that a bucket means an
  anatomical structure. Each token's class mixture ``y_i`` is the one-hot truth averaged over
  the token's patch. Each bucket ``j`` of reference ``r`` gets the class mixture of the tokens
  it received over the batch, ``m_rj = sum_(b,i) T_bij y_bi / sum_(b,i) T_bij``; each token's
  class is then predicted from its plan row, ``p_i = sum_j (T_ij / sum_j' T_ij') m_rj``, and
  ``bucket = -mean sum_c y_ic log p_ic`` over tokens and references. It is lowest when every
  row puts its mass on buckets that hold one class: sharp, anatomical plans. No parameters:
  the bucket's class is read from the batch (the global batch under DDP, below). 0 for models
  without plans.
- **vote** (ours; docs/design.md "Plan design choices"): for an L2GNet with ``plan_vote``, the
  cross-entropy of the buckets' votes alone (``aux["vote_logits"]``, token resolution)
  against each token's class mixture: ``vote = -mean sum_c y_ic log softmax(v_i)_c``. It
  makes the votes a coarse segmentation in their own right, so the output the decoder refines
  depends on which bucket each token is sent to. 0 for models without votes.

**Under DistributedDataParallel** (``SegmentationLoss(..., sync_ranks=True)``, what the
trainer uses with more than one rank), Dice's sums, the spectral term's sum and count and the
bucket term's class counts are summed over ranks with a differentiable all-reduce (nnU-Net
does the same for its batch Dice), so each term is the one of the global batch; CE, the
quantiser loss and the bucket term's token mean are per-rank means that DDP's gradient
averaging turns into the global mean (equal batch per rank).

The loss is computed in float32 whatever the logits' dtype (AMP-safe, and ``fft2`` in half
precision only takes power-of-two sizes). ``forward`` never synchronises with the device (no
``.item()``), and does not check target values (CE fails on out-of-range labels).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LossConfig", "SegmentationLoss", "bucket_class_loss", "bucket_vote_loss",
           "dice_loss", "spectral_correlation_loss"]

DICE_SMOOTH = 1e-5


@dataclass
class LossConfig:
    """Weights of the loss terms (a zero weight removes the term from the total)."""

    ce_weight: float = 1.0
    dice_weight: float = 1.0
    quant_weight: float = 1.0
    spectral_weight: float = 0.0
    bucket_weight: float = 0.0
    vote_weight: float = 0.0
    class_weights: tuple[float, ...] | None = None  # per-class CE weights; None: all 1
    dice_present_only: bool = False  # Dice averaged over the classes present in the batch
    weighted_votes: bool = False  # the vote term weighted by ``class_weights`` too

    def __post_init__(self) -> None:
        if self.class_weights is not None:
            self.class_weights = tuple(float(w) for w in self.class_weights)
            if not all(w > 0 and math.isfinite(w) for w in self.class_weights):
                raise ValueError(f"LossConfig.class_weights must all be > 0, got "
                                 f"{self.class_weights}")
        for name in ("ce_weight", "dice_weight", "quant_weight", "spectral_weight",
                     "bucket_weight", "vote_weight"):
            value = float(getattr(self, name))
            if not value >= 0.0:
                raise ValueError(f"LossConfig.{name} must be >= 0, got {value}")
            setattr(self, name, value)


def _no_sync(x: torch.Tensor) -> torch.Tensor:
    return x


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward is the all-reduce (sum) of the gradients: each rank's
    input gets d(global loss)/d(global sum) from every rank (as nnU-Net's AllGatherGrad)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd API
        import torch.distributed as dist

        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd API
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def _sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over the process group, with gradients (each rank's backward gets its
    share; with DDP's averaging the result is the global batch's gradient)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _SumOverRanks.apply(x)


def dice_loss(
    probs: torch.Tensor, onehot: torch.Tensor, smooth: float = DICE_SMOOTH,
    reduce: Callable[[torch.Tensor], torch.Tensor] = _no_sync, present_only: bool = False,
) -> torch.Tensor:
    """``1 - soft Dice`` per foreground class over the batch, averaged over classes 1..C-1
    (``present_only``: over those present in the batch's truth, so a class painted on few
    slices is not pushed to zero by every batch without it; 0 when none is).

    ``probs`` and ``onehot``: (B, C, H, W) float. ``reduce`` combines the per-class sums
    (over ranks under DDP).
    """
    p, g = probs[:, 1:], onehot[:, 1:]
    dims = (0, 2, 3)
    inter = reduce((p * g).sum(dims))
    truth = reduce((g * g).sum(dims))
    denom = reduce((p * p).sum(dims)) + truth
    dice = (2.0 * inter + smooth) / (denom + smooth)
    if present_only:
        present = (truth > 0).to(dice.dtype)
        return ((1.0 - dice) * present).sum() / present.sum().clamp_min(1.0)
    return (1.0 - dice).mean()


def _amplitude(x: torch.Tensor) -> torch.Tensor:
    spec = torch.fft.fft2(x)
    # sqrt with a tiny floor: |z| has no gradient at z = 0
    return torch.sqrt(spec.real.square() + spec.imag.square() + 1e-12)


def spectral_correlation_loss(
    probs: torch.Tensor, onehot: torch.Tensor, eps: float = 1e-8,
    reduce: Callable[[torch.Tensor], torch.Tensor] = _no_sync,
) -> torch.Tensor:
    """``mean(1 - pearson(|fft2(p)|, |fft2(g)|))`` over (sample, foreground class) pairs whose
    truth is non-empty (0 if there is none). See the module docstring (arXiv:2401.10373)."""
    p = probs[:, 1:].float()
    g = onehot[:, 1:].float()
    b, c = p.shape[:2]
    pa = _amplitude(p).reshape(b, c, -1)
    ga = _amplitude(g).reshape(b, c, -1)
    pa = pa - pa.mean(-1, keepdim=True)
    ga = ga - ga.mean(-1, keepdim=True)
    cov = (pa * ga).sum(-1)
    rho = cov / (pa.square().sum(-1).sqrt() * ga.square().sum(-1).sqrt() + eps)
    present = (g.flatten(2).sum(-1) > 0).to(rho.dtype)
    total = reduce(torch.stack([((1.0 - rho) * present).sum(), present.sum()]))
    return total[0] / total[1].clamp_min(1.0)


def token_class_mixture(target: torch.Tensor, num_classes: int, n: int) -> torch.Tensor:
    """(B, H, W) labels -> (B, n, C): each token's class fractions over its patch.

    The token grid is the labels' grid divided by the one stride s with (H/s) (W/s) = n.
    """
    height, width = target.shape[-2:]
    stride = round(math.sqrt(height * width / n))
    grid = (height // max(stride, 1), width // max(stride, 1))
    if grid[0] * grid[1] != n:
        raise ValueError(f"cannot place {n} tokens on a {height} x {width} label map")
    onehot = F.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot, grid).flatten(2).transpose(1, 2)


def bucket_class_loss(plans: torch.Tensor, target: torch.Tensor, num_classes: int,
                      reduce: Callable[[torch.Tensor], torch.Tensor] = _no_sync) -> torch.Tensor:
    """Cross-entropy of each token's class predicted through its plan row (module docstring).

    ``plans`` (B, q, n, t) transport plans, ``target`` (B, H, W) labels -> 0-d float32.
    ``reduce`` sums the buckets' class counts over ranks (DDP: the global batch's buckets).
    """
    with torch.autocast(plans.device.type, enabled=False):  # float32: logs of small masses
        plans = plans.float()
        y = token_class_mixture(target, num_classes, plans.shape[2])  # (B, n, C)
        mass = reduce(plans.sum(dim=(0, 2))).clamp_min(1e-12)  # (q, t)
        bucket_class = reduce(torch.einsum("bqnt,bnc->qtc", plans, y)) / mass.unsqueeze(-1)
        rows = plans / plans.sum(-1, keepdim=True).clamp_min(1e-12)
        predicted = torch.einsum("bqnt,qtc->bqnc", rows, bucket_class)
        return -(y.unsqueeze(1) * predicted.clamp_min(1e-8).log()).sum(-1).mean()


def bucket_vote_loss(vote_logits: torch.Tensor, target: torch.Tensor,
                     class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the buckets' votes against each token's class mixture (module docstring).

    ``vote_logits`` (B, C, h, w) at token resolution, ``target`` (B, H, W) -> 0-d float32.
    ``class_weight`` (C,): weighted as the CE term is (the weighted mean), so a small class,
    which fills a few percent of any token, is not voted down everywhere.
    """
    with torch.autocast(vote_logits.device.type, enabled=False):
        _, c, h, w = vote_logits.shape
        y = token_class_mixture(target, c, h * w)  # (B, n, C)
        log_p = vote_logits.float().flatten(2).transpose(1, 2).log_softmax(-1)
        if class_weight is None:
            return -(y * log_p).sum(-1).mean()
        y = y * class_weight.float()
        return -(y * log_p).sum() / y.sum().clamp_min(1e-8)


class SegmentationLoss(nn.Module):
    """Weighted sum of CE, soft Dice, quantiser loss and spectral loss (module docstring)."""

    def __init__(self, config: LossConfig | None = None, num_classes: int = 2, *,
                 sync_ranks: bool = False) -> None:
        super().__init__()
        self.reduce = _sum_over_ranks if sync_ranks else _no_sync
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.config = config if config is not None else LossConfig()
        self.num_classes = int(num_classes)
        weights = self.config.class_weights
        if weights is not None and len(weights) != self.num_classes:
            raise ValueError(f"LossConfig.class_weights has {len(weights)} entries for "
                             f"{self.num_classes} classes")
        self.register_buffer("class_weight", None if weights is None else
                             torch.tensor(weights, dtype=torch.float32), persistent=False)

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        quant_loss: torch.Tensor | float | None = None,
        plans: torch.Tensor | None = None,
        vote_logits: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``logits`` (B, C, H, W), ``target`` (B, H, W) long -> ``(total, parts)``.

        ``parts`` holds detached 0-d float tensors ``ce``, ``dice``, ``quant``, ``spectral``,
        ``bucket``, ``vote`` (unweighted) and ``total``; ``spectral``, ``bucket`` and ``vote``
        are only computed when their weight is > 0 (``bucket`` also needs ``plans``, ``vote``
        needs ``vote_logits``) and read 0 otherwise.
        """
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must be (B, {self.num_classes}, H, W), got {tuple(logits.shape)}"
            )
        if target.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match logits shape "
                f"{tuple(logits.shape)} (expected (B, H, W))"
            )
        cfg = self.config
        logits = logits.float()
        target = target.long()
        zero = logits.new_zeros(())

        w = self.class_weight
        if self.num_classes == 2:
            ce = F.binary_cross_entropy_with_logits(
                logits[:, 1] - logits[:, 0], target.to(logits.dtype),
                weight=None if w is None else w[target],
            )
            if w is not None:  # the weighted mean, as cross_entropy's
                ce = ce * target.numel() / w[target].sum()
        else:
            ce = F.cross_entropy(logits, target, weight=w)

        probs = logits.softmax(dim=1)
        onehot = F.one_hot(target, self.num_classes).permute(0, 3, 1, 2).to(probs.dtype)
        dice = dice_loss(probs, onehot, reduce=self.reduce,
                         present_only=cfg.dice_present_only)

        if quant_loss is None:
            quant = zero
        else:
            quant = torch.as_tensor(quant_loss, device=logits.device).float().reshape(())

        spectral = (spectral_correlation_loss(probs, onehot, reduce=self.reduce)
                    if cfg.spectral_weight > 0 else zero)
        bucket = (bucket_class_loss(plans, target, self.num_classes, self.reduce)
                  if cfg.bucket_weight > 0 and plans is not None else zero)
        vote = (bucket_vote_loss(vote_logits, target, w if cfg.weighted_votes else None)
                if cfg.vote_weight > 0 and vote_logits is not None else zero)

        total = zero
        for weight, term in (
            (cfg.ce_weight, ce),
            (cfg.dice_weight, dice),
            (cfg.quant_weight, quant),
            (cfg.spectral_weight, spectral),
            (cfg.bucket_weight, bucket),
            (cfg.vote_weight, vote),
        ):
            if weight > 0:
                total = total + weight * term
        parts = {
            "ce": ce.detach(),
            "dice": dice.detach(),
            "quant": quant.detach(),
            "spectral": spectral.detach(),
            "bucket": bucket.detach(),
            "vote": vote.detach(),
            "total": total.detach(),
        }
        return total, parts
