"""Segment a CT-sized volume end to end and print one JSON line per (model, device).

normalise (CT window) -> resize each slice to the model input -> model -> resize logits back
-> argmax, through ``training.inference.predict_volume``: what the plugin and the CLI run.
Each (model, device) runs in its own process so that its peak host memory is its own; models
run one after another in the same invocation, so their ratio is measured side by side.

    python benchmarks/predict_volume.py                       # paper configs, 512x512x200
    python benchmarks/predict_volume.py --slices 40 --models l2gnet   # quicker
Targets (issue 4): under 1.5 s on one H100, under 90 s on 2 CPU cores, for l2gnet.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def run_one(model_name: str, device: str, shape: tuple[int, int, int], input_size: int,
            batch_size: str) -> dict:
    import numpy as np
    import torch

    from src_model import build_model
    from training.inference import predict_volume

    torch.manual_seed(0)
    model = build_model(model_name, 9).eval()
    meta = {"normalization": {"kind": "ct_window", "low": -125, "high": 275},
            "input_size": [input_size, input_size]}
    rng = np.random.default_rng(0)
    volume = rng.integers(-1000, 1500, size=shape, dtype=np.int16)  # HU, slices first
    warm = volume[:2]
    predict_volume(warm, model, metadata=meta, device=device, batch_size=2)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    pred = predict_volume(volume, model, metadata=meta, device=device,
                          batch_size=batch_size if batch_size == "auto" else int(batch_size))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "bench": "predict_volume",
        "model": model_name,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda")
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "shape": list(shape),
        "input_size": input_size,
        "batch_size": pred.batch_size,
        "seconds": round(seconds, 3),
        "slices_per_second": round(shape[0] / seconds, 2),
        "peak_host_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if device.startswith("cuda") else None,
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["l2gnet", "transunet"])
    parser.add_argument("--devices", nargs="+", help="default: cpu, and cuda when present")
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (args.slices, args.size, args.size)
    if args.one:
        print(json.dumps(run_one(*args.one, shape, args.input_size, args.batch_size)))
        return
    devices = args.devices
    if devices is None:
        import torch

        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for model in args.models:
            cmd = [sys.executable, __file__, "--one", model, device, "--slices",
                   str(args.slices), "--size", str(args.size), "--input-size",
                   str(args.input_size), "--batch-size", args.batch_size]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else None
            if out.returncode or line is None:
                line = json.dumps({"bench": "predict_volume", "model": model, "device": device,
                                   "error": out.stderr.strip().splitlines()[-1:]})
            print(line, flush=True)


if __name__ == "__main__":
    main()
