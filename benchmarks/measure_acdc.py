"""The shipped cardiac model on the ACDC validation volumes: Dice/HD95, cardiac indices against
the experts', and where along the heart the RV is missed. Prints JSON lines.

    python benchmarks/measure_acdc.py                  # ../shared/data/acdc/val_volumes
    python benchmarks/measure_acdc.py --no-tta         # skip the flip test-time augmentation

Variants (each a JSON line with Dice and HD95 in pixels, TransUNet protocol, and the EF/EDV
errors):

* ``raw``: ``predict_volume(..., postprocess=False)`` (resize the logits back, its default);
* ``default``: ``predict_volume``'s defaults, i.e. with the checkpoint's largest-component
  post-processing (what the plugin and ``l2gnet predict/measure`` give);
* ``tta_flip``: the softmax averaged with that of the left-right flipped slices, then the
  post-processing (measured here only; see docs/measure.md);
* ``nearest_raw`` / ``nearest_default``: ``l2gnet evaluate``'s protocol (argmax at the input
  size, nearest resize back), without and with the post-processing;
* ``basal_reviewed``: ``default`` with the experts' labels on the basal slices that ``l2gnet
  measure`` and the Measure panel ask the reader to check (``basal_slices`` of the model's
  ED and ES labels, ``--review`` per frame): what a reader who corrects them gets
  (docs/measure.md);
* ``ensemble`` (with ``--ensemble-with C2``): the softmax averaged with that of a second
  checkpoint, then this checkpoint's post-processing (measured only).

Cardiac indices: ED = frame01, ES = frame02 of each patient, voxels of 1.5625 x 1.5625 x 10
mm (the h5 files store no spacing; ACDC's typical), myocardial mass at ED with 1.05 g/mL;
errors are model minus expert. ``rv_by_position`` splits each volume's slices that hold the
heart (any expert label) into base (first quarter along the stack), mid and apex (last
quarter) and gives, per part, the RV Dice over the pooled voxels, the predicted / expert RV
volume, and how many slices have an expert RV that the model misses entirely.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VOXEL_ML = 1.5625 * 1.5625 * 10 / 1000


def _indices(labels: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict:
    """EF/EDV/mass errors over patients (model minus expert), and the EFs' Pearson
    correlation with the experts' (the agreement figure the ACDC challenge reports)."""
    from training.evaluation.measure import CardiacClasses, cardiac_indices

    classes = CardiacClasses(lv=3, rv=1, myo=2)
    patients = sorted({n.split("_")[0] for n in labels})
    errs: dict[str, list[float]] = {k: [] for k in (
        "LV_EF", "RV_EF", "LV_EDV_rel", "LV_ESV_rel", "RV_EDV_rel", "Myo_mass_rel")}
    pairs: dict[str, list[tuple[float, float]]] = {"LV_EF": [], "RV_EF": []}
    for p in patients:
        got = cardiac_indices(labels[f"{p}_frame01"], labels[f"{p}_frame02"], classes,
                              VOXEL_ML)
        ref = cardiac_indices(truth[f"{p}_frame01"], truth[f"{p}_frame02"], classes,
                              VOXEL_ML)
        pairs["LV_EF"].append((got.lv.ef_percent, ref.lv.ef_percent))
        pairs["RV_EF"].append((got.rv.ef_percent, ref.rv.ef_percent))
        errs["LV_EDV_rel"].append((got.lv.edv_ml - ref.lv.edv_ml) / ref.lv.edv_ml)
        errs["LV_ESV_rel"].append((got.lv.esv_ml - ref.lv.esv_ml) / ref.lv.esv_ml)
        errs["RV_EDV_rel"].append((got.rv.edv_ml - ref.rv.edv_ml) / ref.rv.edv_ml)
        errs["Myo_mass_rel"].append((got.myo_mass_g - ref.myo_mass_g) / ref.myo_mass_g)
    for key, values in pairs.items():
        errs[key] = [g - r for g, r in values]
    out = {"patients": len(patients)}
    for key, values in errs.items():
        v = np.asarray(values)
        scale = 100.0 if key.endswith("_rel") else 1.0  # relative errors in percent
        name = key.removesuffix("_rel")
        unit = "_pct" if key.endswith("_rel") else "_points"
        out[f"{name}_mae{unit}"] = round(float(np.abs(v).mean() * scale), 2)
        out[f"{name}_bias{unit}"] = round(float(v.mean() * scale), 2)
    for key, values in pairs.items():
        out[f"{key}_corr"] = round(float(np.corrcoef(np.asarray(values).T)[0, 1]), 3)
    return out


def _scores(labels: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict:
    from training.evaluation.metrics import score_case, summarize

    names = ["RV", "Myo", "LV"]
    summary = summarize([score_case(labels[n], truth[n], 4) for n in truth], names)
    out = {"dice": round(summary["mean"]["dice"], 4), "hd95_px": round(summary["mean"]["hd95"], 3)}
    for name in names:
        row = summary["per_class"][name]
        out[f"{name}_dice"], out[f"{name}_hd95_px"] = round(row["dice"], 4), round(row["hd95"], 3)
    return out


def _rv_by_position(labels: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict:
    parts: dict[str, dict[str, float]] = {p: {"inter": 0, "pred": 0, "true": 0, "slices": 0,
                                              "missed": 0} for p in ("base", "mid", "apex")}
    for name, t in truth.items():
        heart = np.flatnonzero((t > 0).any(axis=(1, 2)))
        if heart.size == 0:
            continue
        first, last = heart[0], heart[-1]
        for z in heart:
            rel = (z - first) / max(1, last - first)
            part = "base" if rel < 0.25 else "apex" if rel > 0.75 else "mid"
            p, g = labels[name][z] == 1, t[z] == 1
            row = parts[part]
            row["inter"] += int((p & g).sum())
            row["pred"] += int(p.sum())
            row["true"] += int(g.sum())
            if g.any():
                row["slices"] += 1
                row["missed"] += int(not p.any())
    return {part: {"RV_dice": round(2 * r["inter"] / max(1, r["pred"] + r["true"]), 4),
                   "RV_pred_over_true": round(r["pred"] / max(1, r["true"]), 3),
                   "slices_with_RV": r["slices"], "slices_RV_missed": r["missed"]}
            for part, r in parts.items()}


def _basal_reviewed(labels: dict[str, np.ndarray], truth: dict[str, np.ndarray],
                    count: int) -> dict[str, np.ndarray]:
    """``labels`` with the experts' labels on the basal slices the reader is pointed to."""
    from training.evaluation.measure import CardiacClasses, basal_slices

    out = {name: lab.copy() for name, lab in labels.items()}
    for p in sorted({n.split("_")[0] for n in labels}):
        ed, es = f"{p}_frame01", f"{p}_frame02"
        found = basal_slices(labels[ed], labels[es], CardiacClasses(lv=3, rv=1, myo=2), count)
        for name, slices in ((ed, found.ed if found else ()), (es, found.es if found else ())):
            out[name][list(slices)] = truth[name][list(slices)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" /
                                          "data" / "acdc" / "val_volumes"))
    p.add_argument("--checkpoint", default=str(Path(__file__).resolve().parents[1] /
                   "napari_l2gnet" / "resources" / "acdc_cine_mri_l2gnet.safetensors"))
    p.add_argument("--no-tta", action="store_true", help="skip the flip TTA variant")
    p.add_argument("--device", default="cpu")
    p.add_argument("--review", type=int, default=2,
                   help="basal slices per volume replaced by the experts' (basal_reviewed)")
    p.add_argument("--ensemble-with", help="a second checkpoint to average with")
    args = p.parse_args(argv)

    import torch

    from src_model import load_checkpoint
    from training.data.readers import read_h5_volumes
    from training.inference import predict_volume
    from training.inference.postprocess import apply_postprocessing

    torch.manual_seed(0)
    model, meta = load_checkpoint(args.checkpoint)
    meta_none = {**meta, "normalization": {"kind": "none"}}  # the h5 volumes are in [0, 1]
    cases = read_h5_volumes(args.data)
    truth = {c.name: c.label for c in cases}
    variants: dict[str, dict[str, np.ndarray]] = {k: {} for k in (
        "raw", "default", "nearest_raw", "nearest_default", "basal_reviewed")
        + (() if args.no_tta else ("tta_flip",)) + (("ensemble",) if args.ensemble_with
                                                    else ())}
    second = load_checkpoint(args.ensemble_with) if args.ensemble_with else None
    start = time.perf_counter()
    for case in cases:
        run = dict(metadata=meta_none, device=args.device, postprocess=False)
        raw = predict_volume(case.image, model, return_probabilities=not args.no_tta
                             or second is not None, **run)
        variants["raw"][case.name] = raw.labels
        variants["default"][case.name] = apply_postprocessing(raw.labels, meta)
        if second is not None:
            other = predict_volume(case.image, second[0], return_probabilities=True, **{
                **run, "metadata": {**second[1], "normalization": {"kind": "none"}}})
            probs = raw.probabilities.astype(np.float32) + other.probabilities
            variants["ensemble"][case.name] = apply_postprocessing(
                probs.argmax(0).astype(np.uint8), meta)
        near = predict_volume(case.image, model, resize_back="nearest", **run).labels
        variants["nearest_raw"][case.name] = near
        variants["nearest_default"][case.name] = apply_postprocessing(near, meta)
        if not args.no_tta:
            flipped = predict_volume(case.image[:, :, ::-1].copy(), model,
                                     return_probabilities=True, **run).probabilities
            probs = raw.probabilities.astype(np.float32) + flipped[..., ::-1].astype(np.float32)
            variants["tta_flip"][case.name] = apply_postprocessing(
                probs.argmax(0).astype(np.uint8), meta)
    seconds = time.perf_counter() - start
    variants["basal_reviewed"] = _basal_reviewed(variants["default"], truth, args.review)
    post = meta.postprocessing.largest_component if meta.postprocessing else ()
    for name, labels in variants.items():
        print(json.dumps({"variant": name, "volumes": len(labels), **_scores(labels, truth),
                          **_indices(labels, truth),
                          "postprocess": list(post) if name != "raw" and "raw" not in name
                          else []}))
    for name in ("raw", "default"):
        print(json.dumps({"variant": name, "rv_by_position": _rv_by_position(variants[name],
                                                                             truth)}))
    print(json.dumps({"checkpoint": Path(args.checkpoint).name, "data": args.data,
                      "device": args.device, "seconds": round(seconds, 1),
                      "voxel_mm": [1.5625, 1.5625, 10.0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
