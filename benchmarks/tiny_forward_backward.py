"""Forward + backward time of every registered system's tiny test config; JSON lines.

The test suite builds each model with ``src_model.testing.tiny_config(name)`` and runs one
forward and backward pass on small inputs (tests/src_model/test_baselines.py). How long that
takes is a property of the machine, not of the code, so it is measured here instead of
asserted there. One JSON line per (model, input shape), median of ``--repeats`` runs:

    {"bench": "tiny_forward_backward", "name": ..., "shape": [1, 3, 64, 64],
     "seconds_median": ..., "seconds_max": ..., "threads": ..., "torch": ...}

    python benchmarks/tiny_forward_backward.py                  # every model, 2 shapes
    python benchmarks/tiny_forward_backward.py --models l2gnet --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src_model import build_model, list_models  # noqa: E402
from src_model.testing import tiny_config  # noqa: E402

SHAPES = ((1, 3, 64, 64), (2, 3, 64, 48))


def measure(name: str, shape: tuple[int, ...], repeats: int) -> dict:
    """Seconds for one forward + backward of ``name``'s tiny config on ``shape``."""
    torch.manual_seed(0)
    model = build_model(name, 4, **tiny_config(name))
    times = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = model(torch.randn(shape))
        (out.logits.square().mean() + out.aux["quant_loss"]).backward()
        times.append(time.perf_counter() - start)
    return {
        "bench": "tiny_forward_backward",
        "name": name,
        "shape": list(shape),
        "seconds_median": round(statistics.median(times), 4),
        "seconds_max": round(max(times), 4),
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=None, help="default: every registered")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.models or sorted(list_models()):
        for shape in SHAPES:
            print(json.dumps(measure(name, shape, args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
