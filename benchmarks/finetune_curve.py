"""Fine-tuning on corrections: agreement on the slices the user did NOT touch, per setting.

For a scan with reference labels (the real CT in ../shared/data/ct_abdomen, whose
TotalSegmentator labels stand in for a radiologist's corrections, or the sample phantom with
its truth), "correct" N slices (their reference labels become the corrections), fine-tune
the shipped model through ``training.finetuning.finetune.run_finetune`` (the widget's and the CLI's
path) and score the chosen model against the reference on the uncorrected slices. One JSON
line per run: Dice per organ before and after, the mean, the seconds, the settings.

    nice -n 10 python benchmarks/finetune_curve.py --scan ct --slices 6          # one run
    nice -n 10 python benchmarks/finetune_curve.py --scan ct --slices 2 4 6 10   # the curve
    nice -n 10 python benchmarks/finetune_curve.py --scan ct --slices 6 --pick uncertain
    python benchmarks/finetune_curve.py --scan sample --slices 3 --set keep_weight=0

``--pick even`` corrects evenly spaced slices among those with organs; ``--pick uncertain``
the slices ``training.inference.uncertainty.rank_slices`` puts first (where to correct next).
Targets (issue 13): sample, 3 slices: Dice on uncorrected slices drops <= 0.01; real CT,
6 slices: mean over 8 organs >= 0.70, liver/spleen/kidneys >= 0.80, <= 5 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "ct_abdomen"
CHECKPOINT = ROOT / "napari_l2gnet" / "resources" / "demo_l2gnet.safetensors"


def load_scan(scan: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw volume and reference labels, (S, H, W) as the napari plugin shows them."""
    if scan == "sample":
        from training.data.phantom import make_phantom

        ph = make_phantom(0)
        return ph.image, ph.labels
    from scan_io import load_scan as read_scan

    image = read_scan(DATA / "example_ct_sm.nii.gz")
    truth = read_scan(DATA / "example_seg_synapse8.nii.gz", labels=True)
    return image.data, truth.data


def even_slices(truth: np.ndarray, count: int) -> list[int]:
    """``count`` slices evenly spaced inside the span of slices that hold organs."""
    labelled = np.flatnonzero(truth.reshape(truth.shape[0], -1).any(1))
    pos = np.linspace(0, len(labelled) - 1, count + 2)[1:-1].round().astype(int)
    return sorted({int(labelled[p]) for p in pos})


def organ_dice(pred: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, float]:
    from training.evaluation.metrics import dice

    out = {}
    for c, name in enumerate(names[1:], start=1):
        if (truth == c).any():
            out[name] = round(dice(pred == c, truth == c), 4)
    out["mean"] = round(float(np.mean(list(out.values()))), 4)
    return out


def run(scan: str, count: int, pick: str, overrides: dict, threads: int,
        per_epoch: bool = False) -> dict:
    import torch

    from src_model import read_metadata
    from training.data.normalization import IntensityNormalization, normalize
    from training.finetuning.finetune import CorrectedVolume, FinetuneSettings, run_finetune
    from training.inference import predict_volume

    torch.set_num_threads(threads)
    raw, truth = load_scan(scan)
    meta = read_metadata(CHECKPOINT)
    names = list(meta["class_names"])
    image = normalize(raw, IntensityNormalization.from_metadata(meta["normalization"]))
    if pick == "uncertain":
        from training.inference.uncertainty import rank_slices

        probs = predict_volume(image, str(CHECKPOINT), metadata={"normalization": {
            "kind": "none"}}, return_probabilities=True).probabilities
        corrected = sorted(rank_slices(probs, count, spacing=2))
    else:
        corrected = even_slices(truth, count)
    settings = FinetuneSettings(**overrides)
    untouched = [i for i in range(truth.shape[0]) if i not in set(corrected)]
    plain = {"normalization": {"kind": "none"}}
    start = predict_volume(image, str(CHECKPOINT), metadata=plain).labels
    t0, c0 = time.perf_counter(), time.process_time()
    by_epoch: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:

        def on_epoch(event) -> None:  # agreement on the untouched slices after each epoch
            if event.kind == "epoch" and event.epoch > 0 and per_epoch:
                labels = predict_volume(image, str(Path(tmp) / "last.safetensors"),
                                        metadata=plain).labels
                by_epoch.append({"epoch": event.epoch, "seconds": round(event.seconds, 1),
                                 "uncorrected_mean": organ_dice(labels[untouched],
                                                                truth[untouched], names)["mean"]})

        report = run_finetune(CHECKPOINT, [CorrectedVolume(scan, image, truth, corrected)],
                              settings, tmp, callback=on_epoch)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        pred = predict_volume(image, report.checkpoint, metadata=plain).labels
    return {
        "scan": scan, "corrected": count, "pick": pick, "slices": corrected,
        "settings": {k: v for k, v in vars(settings).items()},
        "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "threads": threads,
        "chosen_epoch": report.chosen_epoch, "trust": round(report.trust, 3),
        "kept_bn_stats": report.kept_bn_stats,
        "pseudo_slices": report.pseudo_slices,
        "corrected_dice": [round(report.corrected_dice_before["mean"], 4),
                           round(report.corrected_dice_after["mean"], 4)],
        "uncorrected_before": organ_dice(start[untouched], truth[untouched], names),
        "uncorrected_after": organ_dice(pred[untouched], truth[untouched], names),
        "uncorrected_by_epoch": by_epoch,
        "curve": [{"epoch": r["epoch"], "seconds": round(r["seconds"], 1),
                   "corrected_dice": None if not r.get("val_dice") else
                   round(r["val_dice"]["mean"], 4)} for r in report.history],
    }


def main() -> None:
    from training.commands.train import parse_set

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scan", choices=["ct", "sample"], default="ct")
    p.add_argument("--slices", type=int, nargs="+", default=[2, 4, 6, 10])
    p.add_argument("--pick", choices=["even", "uncertain"], default="even")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="FinetuneSettings override, e.g. --set epochs=20")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--per-epoch", action="store_true",
                   help="also score the untouched slices after every epoch (agreement vs seconds)")
    args = p.parse_args()
    for count in args.slices:
        print(json.dumps(run(args.scan, count, args.pick, parse_set(args.set), args.threads,
                             args.per_epoch)),
              flush=True)


if __name__ == "__main__":
    main()
