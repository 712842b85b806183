"""Do an L2GNet checkpoint's transport plans carry the model and show anatomy? JSON lines.

    python benchmarks/plan_diagnostics.py CHECKPOINT --data SPEC [--protocol transunet]

SPEC is any data spec ``l2gnet evaluate`` takes (``phantom:0``, an ACDC ``val_volumes``
folder, NIfTI imagesTr+labelsTr). One JSON line per reference r of the mapper, with

- sharpness: ``row_entropy_before_s`` / ``row_entropy_after_s``, the mean entropy of the
  plan's rows over log t, before and after the positional filter S (1 = uniform rows);
- reliance: ``dice`` (mean Dice as ``l2gnet evaluate``), ``dice_delta_uniform`` (every plan
  replaced by the uniform 1/(n t)), ``dice_delta_uniform_content`` (the Sinkhorn plan
  replaced by uniform before S, so only position is left; absent without S) and
  ``dice_delta_zero_mapper`` (the mapper's dense output zeroed; its plans, and so the bucket
  votes of a ``plan_vote`` model, are kept); negative = the model needs it. Uniform plans
  also make every token's bucket vote the same;
- anatomy (``all_`` for every token, ``fg_`` for foreground tokens): each token's argmax bucket
  (what the Explain widget draws) against its class (the majority label of its cell), as
  homogeneity I(class; bucket)/H(class) and NMI, beside the same for a position-only
  predictor (each position's most frequent bucket), and I(class; bucket | position) beside
  the same with the buckets shuffled within each position;
- ``code_homogeneity`` / ``code_homogeneity_position``: the same homogeneity for the
  quantiser's code of each token (what the mapper is fed), and the gain over position: an upper
  reference for how anatomical content-driven buckets could be.

The maths is ``training.evaluation.plan_metrics`` (docs/design.md "Plan design choices").
Targets (issue 11): row entropy
<= 0.6, homogeneity gain >= 0.15 for the best reference, uniform plans cost >= 0.02 Dice.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager

import numpy as np


def _mapper(model):
    mapper = getattr(getattr(model, "bottleneck", None), "mapper", None)
    if mapper is None:
        raise SystemExit("plan_diagnostics: the checkpoint is not an L2GNet (its bottleneck has "
                         "no L2GMapper); pass an l2gnet checkpoint")
    return mapper


@contextmanager
def _zero_mapper(mapper):
    """The mapper's dense output replaced by zeros (its plans kept)."""
    handle = mapper.register_forward_hook(
        lambda mod, args, out: (out[0].new_zeros(out[0].shape), out[1]))
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def _override(mapper, mode: str | None):
    old, mapper.plan_override = mapper.plan_override, mode
    try:
        yield
    finally:
        mapper.plan_override = old


def _dice_pass(model, meta, cases, protocol, capture=None, device: str = "cpu") -> float:
    """Mean Dice over ``cases`` as ``l2gnet evaluate``; fills ``capture`` with plans per slice."""
    from training.evaluation.metrics import score_case, summarize
    from training.inference import predict_volume

    rows = []
    raw_meta = {**meta, "normalization": {"kind": "none"}}  # cases are normalised already
    for case in cases:
        pred = predict_volume(case.image, model, metadata=raw_meta, device=device, batch_size=8,
                              resize_back="nearest" if protocol == "transunet" else "logits")
        rows.append(score_case(pred.labels, case.label, model.num_classes, protocol=protocol,
                               spacing=case.spacing))
        if capture is not None:
            capture["labels"].append(case.label)
    names = list(meta.get("class_names") or range(model.num_classes))
    return float(summarize(rows, names)["mean"]["dice"])


def diagnose(checkpoint: str, data: str, protocol: str = "transunet",
             max_cases: int | None = None, device: str = "cpu") -> list[dict]:
    import torch

    from src_model import load_checkpoint
    from training.data.normalization import IntensityNormalization
    from training.data.specs import load_cases
    from training.evaluation.plan_metrics import anatomy_scores, row_entropy_ratio, token_labels

    model, meta = load_checkpoint(checkpoint)
    mapper = _mapper(model)
    norm = IntensityNormalization.from_metadata(meta.get("normalization"))
    cases = load_cases(data, norm)[:max_cases]
    if not cases:
        raise SystemExit(f"plan_diagnostics: {data} holds no volumes")

    raw, weighted, grids, tokens = [], [], [], []

    def grab(mod, args, out):
        z_dis = args[0]
        with torch.no_grad():
            raw.append(mod.raw_plans(z_dis).float().cpu().numpy())
        weighted.append(out[1].float().cpu().numpy())
        grids.extend([tuple(z_dis.shape[-2:])] * z_dis.shape[0])
        tokens.append(z_dis.flatten(2).transpose(1, 2).float().cpu().numpy())  # (B, n, dim)

    t0 = time.perf_counter()
    capture: dict[str, list] = {"labels": []}
    handle = mapper.register_forward_hook(grab)
    try:
        with torch.no_grad():
            dice = _dice_pass(model, meta, cases, protocol, capture, device)
    finally:
        handle.remove()
    deltas = {}

    def dice_now() -> float:
        return _dice_pass(model, meta, cases, protocol, device=device)

    with torch.no_grad():
        with _override(mapper, "uniform"):
            deltas["dice_delta_uniform"] = dice_now() - dice
        if mapper.pos_mode != "none":
            with _override(mapper, "uniform_content"):
                deltas["dice_delta_uniform_content"] = dice_now() - dice
        with _zero_mapper(mapper):
            deltas["dice_delta_zero_mapper"] = dice_now() - dice

    raw_p, plans = np.concatenate(raw), np.concatenate(weighted)  # (slices, q, n, t)
    if len(set(grids)) != 1:
        raise SystemExit(f"plan_diagnostics: token grids differ between slices ({set(grids)})")
    grid = grids[0]
    labels = np.stack([token_labels(s, grid).ravel()
                       for vol in capture["labels"] for s in vol])  # (slices, n)
    positions = np.broadcast_to(np.arange(labels.shape[1]), labels.shape)
    fg = labels > 0
    toks = np.concatenate(tokens)
    codes = np.unique(toks.reshape(-1, toks.shape[-1]), axis=0,
                      return_inverse=True)[1].reshape(labels.shape)
    code_scores = anatomy_scores(labels, codes, positions)
    lines = []
    for r in range(plans.shape[1]):
        buckets = plans[:, r].argmax(-1)  # (slices, n)
        line = {
            "bench": "plan_diagnostics", "checkpoint": checkpoint, "data": data,
            "reference": r, "slices": int(plans.shape[0]), "grid": list(grid),
            "ref_size": int(plans.shape[-1]),
            "row_entropy_before_s": row_entropy_ratio(raw_p[:, r]),
            "row_entropy_after_s": row_entropy_ratio(plans[:, r]),
            "dice": dice, **deltas,
            **anatomy_scores(labels, buckets, positions).to_dict("all_"),
            **anatomy_scores(labels[fg], buckets[fg], positions[fg]).to_dict("fg_"),
            "code_homogeneity": code_scores.homogeneity,
            "code_homogeneity_position": code_scores.homogeneity_position,
            "code_nmi": code_scores.nmi,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="phantom:SEEDS, an ACDC val_volumes folder, ...")
    p.add_argument("--protocol", choices=["transunet", "clinical"], default="transunet")
    p.add_argument("--max-cases", type=int, help="score only the first N volumes")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--device", default="cpu", help="cpu or cuda (AMP there, as l2gnet predict)")
    args = p.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    for line in diagnose(args.checkpoint, args.data, args.protocol, args.max_cases,
                         args.device):
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
