"""Parameters and FLOPs of every registered system (default config, num_classes=9).

Prints one JSON line per model to stdout:

    {"bench": "model_table", "name": ..., "params_m": ..., "gflops": ..., "input": [1, 3, 224, 224],
     "torch": ...}

params_m: all parameters of ``build_model(name, 9)`` (no overrides: the papers' R50 defaults),
in millions.

gflops: one forward pass of a 1x3x224x224 input in eval mode, counted by
``torch.utils.flop_counter.FlopCounterMode(display=False)``. It counts matrix products and
convolutions only (2 FLOPs per multiply-add, so GFLOPs = 2 x GMACs; papers often quote GMACs
as "FLOPs"); elementwise ops, norms, softmax and pooling are not counted. The forward runs with
autograd enabled and attention on the math backend, because the fused kernels (the
``TransformerEncoderLayer`` inference fast path, CPU flash attention) hide their matrix
products from the counter.

    .venv/bin/python benchmarks/model_table.py > benchmarks/model_table.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src_model import build_model, list_models  # noqa: E402


def measure(name: str, num_classes: int, size: tuple[int, int]) -> dict:
    """Parameter count (millions) and forward GFLOPs of ``name``'s default config."""
    torch.manual_seed(0)
    model = build_model(name, num_classes).eval()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(1, 3, *size)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        model(x)
    return {
        "bench": "model_table",
        "name": name,
        "params_m": round(params / 1e6, 2),
        "gflops": round(counter.get_total_flops() / 1e9, 2),
        "input": [1, 3, *size],
        "num_classes": num_classes,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=None, help="default: every registered")
    parser.add_argument("--num-classes", type=int, default=9)
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224))
    args = parser.parse_args(argv)
    for name in args.models or list(list_models()):
        print(json.dumps(measure(name, args.num_classes, tuple(args.size))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
