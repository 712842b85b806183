"""L2GMapper vs one self-attention transformer layer: forward+backward time and peak memory vs n.

docs/design.md claims O(n*t) memory per reference for the L2GMapper against self-attention's
O(n^2); this measures it instead of assuming it. For each device present (cpu always, cuda
if available), width and token count n = s*s (s = 14, 28, 56, 112 by default), it prints one
JSON line to stdout:

    {"bench": "bottleneck_scaling", "bottleneck": ..., "n": ..., "dim": ..., "device": ...,
     "fwd_bwd_ms": ..., "peak_mem_mb": ..., "torch": ..., ...}

Bottlenecks:
    l2g_mapper        src_model.blocks.L2GMapper(dim) with its defaults (q=4, t=16, k=256,
                      10 Sinkhorn iterations), input (B, dim, s, s).
    transformer       TransUNet's block: pre-norm nn.TransformerEncoderLayer (LayerNorm +
                      nn.MultiheadAttention + 4*dim GELU MLP, dropout 0, batch_first),
                      dim // 64 heads, input (B, n, dim). torch picks the attention kernel
                      (fused flash/memory-efficient kernels where it can).
    transformer_math  the same layer with attention forced to the math backend, which
                      materialises the n x n attention matrix as TransUNet's own code does.

What is timed: the median over ``--repeats`` runs of one forward + ``backward()`` of the mean
output (input requires grad), after one warm-up run; CUDA is synchronised around each run.

What "peak_mem_mb" is: the extra memory one forward+backward needs above what was allocated
before it (parameters and input excluded; activations, gradients and workspaces included).
    cuda: torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated() before the run.
    cpu:  the process's peak resident set size (VmHWM, reset through /proc/self/clear_refs)
          minus its resident size before the run, after a warm-up, with glibc told to return
          every block over 128 KiB to the system (MALLOC_MMAP_THRESHOLD_) so that freed memory
          is not silently reused. tracemalloc cannot see torch's allocations. Where
          clear_refs is not writable it falls back to ru_maxrss growth on the cold first run
          ("mem_measure" says which).

Each case runs in its own subprocess, so one that dies does not stop the others. A case whose
estimated need exceeds ``--mem-fraction`` of the device's free memory is not run: its line
carries "skipped" and the reason, as does a case whose subprocess fails (out of memory).

    .venv/bin/python benchmarks/bottleneck_scaling.py --ns 196 784 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BOTTLENECKS = ("l2g_mapper", "transformer", "transformer_math")
DEFAULT_NS = (196, 784, 3136, 12544)
DEFAULT_DIM = {"cpu": 256, "cuda": 1024}
MAPPER_DEFAULTS = dict(num_refs=4, ref_size=16, num_anchors=256, sinkhorn_iters=10)


def heads_for(dim: int) -> int:
    """ViT/TransUNet head width 64 (768 / 12)."""
    return max(1, dim // 64)


def estimate_bytes(bottleneck: str, n: int, dim: int, batch: int) -> int:
    """A deliberately generous guess of one forward+backward's need, in bytes (float32)."""
    f = 4 * batch
    linear = f * n * dim * 40  # activations of norms, projections, MLP and their gradients
    if bottleneck == "l2g_mapper":
        q, t, k, iters = (MAPPER_DEFAULTS[key] for key in
                          ("num_refs", "ref_size", "num_anchors", "sinkhorn_iters"))
        return f * q * n * t * (4 * iters + 12) + f * n * (dim * 8 + q * k * 8)
    if bottleneck == "transformer":
        return linear
    return linear + f * heads_for(dim) * n * n * 5  # scores, probs, their grads, a spare


def free_bytes(device: str) -> int:
    """Memory the case may use: MemAvailable on cpu, free device memory on cuda."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("cannot read MemAvailable from /proc/meminfo")


# ---- the child: one case -------------------------------------------------------------------

def _build(bottleneck: str, dim: int, device: str):
    import torch
    from torch import nn

    if bottleneck == "l2g_mapper":
        from src_model.blocks import L2GMapper

        return L2GMapper(dim, **MAPPER_DEFAULTS).to(device)
    return nn.TransformerEncoderLayer(
        dim, heads_for(dim), dim_feedforward=4 * dim, dropout=0.0, activation="gelu",
        batch_first=True, norm_first=True, device=torch.device(device),
    )


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Build, measure memory on one run, then time ``repeats`` runs. Runs in the child."""
    import contextlib
    import gc

    import torch

    torch.manual_seed(0)
    device, dim, n, batch = case["device"], case["dim"], case["n"], case["batch"]
    side = int(round(n**0.5))
    module = _build(case["bottleneck"], dim, device)
    if case["bottleneck"] == "l2g_mapper":
        x = torch.randn(batch, dim, side, side, device=device, requires_grad=True)
    else:
        x = torch.randn(batch, side * side, dim, device=device, requires_grad=True)
    if case["bottleneck"] == "transformer_math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def attention() -> contextlib.AbstractContextManager:
            return sdpa_kernel(SDPBackend.MATH)
    else:
        attention = contextlib.nullcontext
    cuda = device == "cuda"

    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        with attention():
            out = module(x)
            out = out[0] if isinstance(out, tuple) else out
            out.float().mean().backward()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def clean() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    if cuda:
        step()  # warm-up (kernel selection, cuBLAS workspaces)
        sync()
        clean()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        sync()
        peak, measure = torch.cuda.max_memory_allocated() - base, "cuda_max_allocated_delta"
    else:
        cold = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        step()  # warm-up, and the fallback measurement
        cold_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - cold
        clean()
        if _reset_peak_rss():
            base = _status_kib("VmRSS") * 1024
            step()
            peak, measure = _status_kib("VmHWM") * 1024 - base, "rss_peak_delta"
        else:
            peak, measure = cold_peak, "ru_maxrss_delta_cold"
    clean()
    times = []
    for _ in range(case["repeats"]):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    params = sum(p.numel() for p in module.parameters())
    return {
        "fwd_bwd_ms": round(statistics.median(times), 3),
        "peak_mem_mb": round(max(peak, 0) / 2**20, 2),
        "mem_measure": measure,
        "params": params,
        "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
    }


# ---- the parent: every case, one subprocess each ------------------------------------------

def _line(case: dict[str, Any], torch_version: str, **extra: Any) -> str:
    record = {
        "bench": "bottleneck_scaling",
        "bottleneck": case["bottleneck"],
        "n": case["n"],
        "dim": case["dim"],
        "device": case["device"],
        "fwd_bwd_ms": None,
        "peak_mem_mb": None,
        "torch": torch_version,
        "batch": case["batch"],
        "grid": [int(round(case["n"] ** 0.5))] * 2,
        "repeats": case["repeats"],
    }
    if case["bottleneck"] != "l2g_mapper":
        record["heads"] = heads_for(case["dim"])
    else:
        record.update(MAPPER_DEFAULTS)
    record.update(extra)
    return json.dumps(record)


def _run_in_child(case: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(case)],
            capture_output=True, text=True, env=env, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"skipped": f"took longer than --case-timeout {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        why = "killed (out of memory?)" if proc.returncode < 0 else "failed"
        if "out of memory" in tail[0].lower():
            why = "out of memory"
        return {"skipped": f"{why}: rc={proc.returncode} {tail[0][:200]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=None,
                        help="widths (default: 256 on cpu, 1024 on cuda)")
    parser.add_argument("--ns", type=int, nargs="+", default=list(DEFAULT_NS),
                        help="token counts, each a perfect square (default: 196 784 3136 12544)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--batch", type=int, default=1, help="images per forward")
    parser.add_argument("--bottlenecks", nargs="+", choices=BOTTLENECKS, default=list(BOTTLENECKS))
    parser.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), default=None,
                        help="default: cpu, and cuda when available")
    parser.add_argument("--mem-fraction", type=float, default=0.5,
                        help="skip a case whose estimated need exceeds this share of free memory")
    parser.add_argument("--case-timeout", type=float, default=1800.0, help="seconds per case")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        print(json.dumps(run_case(json.loads(args.child))))
        return 0

    import torch

    for n in args.ns:
        if int(round(n**0.5)) ** 2 != n:
            parser.error(f"--ns must be perfect squares (square token grids), got {n}")
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print(json.dumps({"bench": "bottleneck_scaling", "device": "cuda",
                              "torch": torch.__version__, "skipped": "no CUDA device"}))
            continue
        for dim in args.dims or [DEFAULT_DIM[device]]:
            for bottleneck in args.bottlenecks:
                for n in args.ns:
                    case = {"bottleneck": bottleneck, "n": n, "dim": dim, "device": device,
                            "batch": args.batch, "repeats": args.repeats}
                    need = estimate_bytes(bottleneck, n, dim, args.batch)
                    budget = args.mem_fraction * free_bytes(device)
                    if need > budget:
                        result = {"skipped": f"estimated {need / 2**30:.1f} GiB > "
                                             f"{budget / 2**30:.1f} GiB allowed "
                                             f"(--mem-fraction {args.mem_fraction})"}
                    else:
                        result = _run_in_child(case, args.case_timeout)
                    print(_line(case, torch.__version__, **result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
