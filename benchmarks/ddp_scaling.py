"""Training and batch-prediction throughput with 1, 2, ... ranks (``torchrun``); JSON lines.

Runs ``torchrun --standalone --nproc_per_node N -m training.cli train ...`` for each N on the
same data and reads the history ``l2gnet train`` prints: samples/s is measured between the
end of the first epoch and the end of the last one (start-up and the first epoch's warm-up
left out; the per-epoch checkpoint writes are included, as in a real run). ``--batch-size``
is per rank, so N ranks see N times the samples per step.

On CPU each rank gets ``--threads-per-rank`` threads (1 by default: on a machine shared with
other jobs, more threads than free cores make OpenMP spin and the figures meaningless); with
``--threads-per-rank split`` each rank gets ``cores // N`` (all cores for 1 rank against N
ranks with fewer threads: do processes beat threads on this machine?). On a machine with GPUs use
``--device cuda --ranks 1 2 4 8`` (one GPU per rank, NCCL).

Prediction: ``torchrun ... -m training.cli predict FOLDER`` on ``--scans`` generated phantom
NIfTI scans with the 1-rank run's checkpoint; slices/s is over the whole command (process
start-up included, which is what a user waits for).

    python benchmarks/ddp_scaling.py                      # 1 and 2 ranks on CPU
    python benchmarks/ddp_scaling.py --device cuda --ranks 1 2 4 --input-size 224 --full
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(ranks: int, args: argparse.Namespace, out_dir: str) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    split = max(1, (cores or 1) // ranks)
    threads = split if args.threads_per_rank == "split" else int(args.threads_per_rank)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={ranks}", "-m", "training.cli", "train",
           "--model", args.model, "--data", args.data, "--phantom-shape", *map(str, args.shape),
           "--input-size", str(args.input_size), str(args.input_size),
           "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
           "--device", args.device, "--augment", "transunet", "--out-dir", out_dir]
    if not args.full:
        cmd.append("--tiny")
    if args.device == "cpu":
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"torchrun with {ranks} ranks failed:\n{proc.stderr[-3000:]}")
    history = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    first, last = history[0], history[-1]
    samples = (last["step"] - first["step"]) * ranks * args.batch_size
    seconds = last["seconds"] - first["seconds"]
    return {"benchmark": "ddp_training", "ranks": ranks, "device": args.device,
            "threads_per_rank": threads if args.device == "cpu" else None,
            "model": args.model + ("" if args.full else " (tiny)"),
            "input_size": args.input_size, "batch_per_rank": args.batch_size,
            "steps_measured": last["step"] - first["step"], "samples_measured": samples,
            "seconds": round(seconds, 3), "samples_per_s": round(samples / seconds, 2),
            "wall_s": round(wall, 1)}


def write_scans(folder: Path, count: int, shape: list[int]) -> int:
    """``count`` phantom scans as NIfTI in ``folder``; returns the total number of slices."""
    from scan_io.nifti import save_nifti
    from training.data.phantom import make_phantom

    folder.mkdir(parents=True)
    for seed in range(count):
        ph = make_phantom(seed=100 + seed, shape=tuple(shape))
        save_nifti(folder / f"scan{seed}.nii.gz", ph.to_nifti_order(ph.image), affine=ph.affine)
    return count * shape[0]


def run_predict(ranks: int, args: argparse.Namespace, checkpoint: str, scans: Path,
                slices: int, out_dir: str) -> dict:
    threads = int(args.threads_per_rank) if args.threads_per_rank != "split" else 1
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={ranks}", "-m", "training.cli", "predict", str(scans),
           "--checkpoint", checkpoint, "--out", out_dir, "--device", args.device,
           "--batch-size", "8"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"torchrun predict with {ranks} ranks failed:\n{proc.stderr[-3000:]}")
    return {"benchmark": "ddp_predict", "ranks": ranks, "device": args.device,
            "threads_per_rank": threads if args.device == "cpu" else None,
            "scans": args.scans, "slices": slices, "wall_s": round(wall, 2),
            "slices_per_s": round(slices / wall, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="l2gnet")
    p.add_argument("--full", action="store_true", help="the full model, not the tiny config")
    p.add_argument("--data", default="phantom:1,2,3,4")
    p.add_argument("--shape", type=int, nargs=3, default=[16, 64, 64])
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads-per-rank", default="1", help="a number, or 'split' (see above)")
    p.add_argument("--scans", type=int, default=5, help="phantom scans for the predict runs")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ddp-scaling-") as tmp:
        for n in args.ranks:
            rows.append(run(n, args, str(Path(tmp) / f"ranks{n}")))
            print(json.dumps(rows[-1]), flush=True)
        base = rows[0]["samples_per_s"]
        print(json.dumps({"benchmark": "ddp_training_ratio", "device": args.device,
                          "ratio_vs_first": {r["ranks"]: round(r["samples_per_s"] / base, 3)
                                             for r in rows}}), flush=True)
        checkpoint = str(Path(tmp) / f"ranks{args.ranks[0]}" / "last.safetensors")
        slices = write_scans(Path(tmp) / "scans", args.scans, args.shape)
        preds = []
        for n in args.ranks:
            preds.append(run_predict(n, args, checkpoint, Path(tmp) / "scans", slices,
                                     str(Path(tmp) / f"pred{n}")))
            print(json.dumps(preds[-1]), flush=True)
        base = preds[0]["slices_per_s"]
        print(json.dumps({"benchmark": "ddp_predict_ratio", "device": args.device,
                          "ratio_vs_first": {r["ranks"]: round(r["slices_per_s"] / base, 3)
                                             for r in preds}}))


if __name__ == "__main__":
    main()
