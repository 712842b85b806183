"""Do L2GNet's transport plans carry anatomy? Information measures on plans, torch-free.

The Explain widget shows each token's argmax bucket as the model's explanation. These numbers
say how much of the class a bucket tells beyond what the token's position already tells
(the 1-D positional filter S alone makes buckets into horizontal bands; docs/design.md
"Plan design choices"):

- ``row_entropy_ratio``: mean entropy of the plan's rows (each normalised to sum 1) over
  log t; 1 = every token spreads evenly over all buckets, 0 = each token in one bucket.
- ``homogeneity``: I(class; bucket) / H(class), the share of the class's uncertainty that the
  bucket explains (1 = every bucket holds one class); ``nmi`` the arithmetic-mean normalised
  mutual information.
- ``position_predictor``: each position's most frequent bucket; the same scores for it are
  what position alone gives, and the ``gain`` is what the plan adds.
- ``conditional_mi``: I(class; bucket | position), against the same with the buckets shuffled
  within each position (the estimator's bias at this sample size).

All take integer arrays of equal length (one entry per token); entropies in nats.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "AnatomyScores",
    "anatomy_scores",
    "conditional_mutual_information",
    "entropy",
    "homogeneity",
    "mutual_information",
    "nmi",
    "position_predictor",
    "row_entropy_ratio",
    "shuffle_within",
    "token_labels",
]


def _codes(x: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(x).ravel(), return_inverse=True)[1]


def entropy(x: np.ndarray) -> float:
    """H(x) of the empirical distribution of the integer array ``x``."""
    counts = np.bincount(_codes(x)).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """I(x; y) from the joint histogram (0 when either is constant)."""
    a, b = _codes(x), _codes(y)
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same length, got {a.shape} and {b.shape}")
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(max(0.0, (joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum()))


def homogeneity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """I(labels; clusters) / H(labels): 1 when every cluster holds one label (1 if H = 0)."""
    h = entropy(labels)
    return 1.0 if h == 0 else mutual_information(labels, clusters) / h


def nmi(labels: np.ndarray, clusters: np.ndarray) -> float:
    """I / ((H(labels) + H(clusters)) / 2), the arithmetic normalisation (1 if both constant)."""
    denom = 0.5 * (entropy(labels) + entropy(clusters))
    return 1.0 if denom == 0 else mutual_information(labels, clusters) / denom


def conditional_mutual_information(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """I(x; y | z) = sum_z P(z) I(x; y | z)."""
    z = _codes(z)
    x, y = np.asarray(x).ravel(), np.asarray(y).ravel()
    total = 0.0
    for value, count in enumerate(np.bincount(z)):
        if count:
            sel = z == value
            total += count / z.size * mutual_information(x[sel], y[sel])
    return total


def shuffle_within(values: np.ndarray, groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """``values`` permuted at random within each group (the group marginals are kept)."""
    values = np.asarray(values).ravel().copy()
    groups = _codes(groups)
    rng = np.random.default_rng(seed)
    for g in range(groups.max() + 1):
        idx = np.flatnonzero(groups == g)
        values[idx] = values[rng.permutation(idx)]
    return values


def position_predictor(buckets: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each token's predicted bucket = the most frequent bucket at its position (ties: lowest)."""
    values, b = np.unique(np.asarray(buckets).ravel(), return_inverse=True)
    p = _codes(positions)
    table = np.zeros((p.max() + 1, b.max() + 1), np.int64)
    np.add.at(table, (p, b), 1)
    return values[table.argmax(1)[p]]


def row_entropy_ratio(plans: np.ndarray) -> float:
    """Mean entropy of the rows of ``plans`` (..., n, t), each normalised to sum 1, / log t."""
    p = np.asarray(plans, np.float64)
    t = p.shape[-1]
    if t < 2:
        return 0.0
    p = p / np.clip(p.sum(-1, keepdims=True), 1e-300, None)
    ent = -(p * np.log(np.clip(p, 1e-300, None))).sum(-1)
    return float(ent.mean() / np.log(t))


def token_labels(label: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(H, W) label slice -> (h, w) majority class of each token's cell (ties: lowest class).

    Cell (r, c) covers rows [r H / h, (r+1) H / h) and the same for columns: the token grid of
    a model that resizes the slice to its input size and downsamples by a fixed stride.
    """
    label = np.asarray(label)
    h, w = grid
    rows = np.linspace(0, label.shape[0], h + 1).round().astype(int)
    cols = np.linspace(0, label.shape[1], w + 1).round().astype(int)
    out = np.zeros((h, w), np.int64)
    for r in range(h):
        for c in range(w):
            cell = label[rows[r]:max(rows[r + 1], rows[r] + 1), cols[c]:max(cols[c + 1],
                                                                            cols[c] + 1)]
            out[r, c] = np.bincount(cell.ravel().astype(np.int64)).argmax()
    return out


@dataclass
class AnatomyScores:
    """Anatomy of one reference's buckets over a set of tokens (see the module docstring)."""

    tokens: int
    homogeneity: float
    homogeneity_position: float
    homogeneity_gain: float
    nmi: float
    nmi_position: float
    conditional_mi: float
    conditional_mi_shuffled: float
    class_entropy_given_position: float

    def to_dict(self, prefix: str = "") -> dict[str, float | int]:
        return {prefix + k: v for k, v in asdict(self).items()}


def anatomy_scores(labels: np.ndarray, buckets: np.ndarray, positions: np.ndarray,
                   seed: int = 0) -> AnatomyScores:
    """Scores of ``buckets`` (argmax bucket per token) against the tokens' ``labels``.

    A plan whose buckets are a function of position scores ``homogeneity_gain`` 0 and
    ``conditional_mi`` 0; one whose buckets copy the labels scores homogeneity 1.
    """
    labels, buckets, positions = (np.asarray(a).ravel() for a in (labels, buckets, positions))
    if not labels.size == buckets.size == positions.size:
        raise ValueError("labels, buckets and positions need one entry per token, got "
                         f"{labels.size}, {buckets.size}, {positions.size}")
    if labels.size == 0:
        nan = float("nan")
        return AnatomyScores(0, nan, nan, nan, nan, nan, nan, nan, nan)
    by_pos = position_predictor(buckets, positions)
    hom, hom_pos = homogeneity(labels, buckets), homogeneity(labels, by_pos)
    return AnatomyScores(
        tokens=int(labels.size),
        homogeneity=hom,
        homogeneity_position=hom_pos,
        homogeneity_gain=hom - hom_pos,
        nmi=nmi(labels, buckets),
        nmi_position=nmi(labels, by_pos),
        conditional_mi=conditional_mutual_information(labels, buckets, positions),
        conditional_mi_shuffled=conditional_mutual_information(
            labels, shuffle_within(buckets, positions, seed), positions),
        class_entropy_given_position=entropy(labels) - mutual_information(labels, positions),
    )
