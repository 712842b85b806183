"""Choose, per class, whether keeping the largest connected component helps (validation data).

The post-processing itself is ``training.inference.postprocess`` (applied by ``predict_volume``);
this is the decision behind it, made by scoring validation predictions with and without it,
as nnU-Net does. The result is stored in the checkpoint as a
``src_model.checkpoint_meta.PostProcessing`` (``benchmarks/choose_postprocessing.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from src_model.checkpoint_meta import PostProcessing

from ..inference.postprocess import keep_largest_component
from .metrics import score_case, summarize

__all__ = ["choose_largest_component"]


def choose_largest_component(
    predictions: Sequence[np.ndarray], truths: Sequence[np.ndarray],
    class_names: Sequence[str], *, chosen_on: str | None = None, tolerance: float = 1e-4,
) -> PostProcessing:
    """Per class, whether keeping the largest component helps on these validation volumes.

    Kept for a class when its mean Dice (TransUNet protocol) does not drop by more than
    ``tolerance`` and its mean HD95 (voxels) or Dice improves, as nnU-Net decides it. The
    figures with and without go to ``measured``.
    """
    num_classes = len(class_names)
    fg = list(class_names[1:])
    raw = summarize([score_case(p, t, num_classes) for p, t in zip(predictions, truths,
                                                                   strict=True)], fg)
    measured: dict[str, Any] = {}
    chosen = []
    for c, name in enumerate(fg, start=1):
        kept = [keep_largest_component(p, [c]) for p in predictions]
        post = summarize([score_case(p, t, num_classes) for p, t in zip(kept, truths,
                                                                        strict=True)], fg)
        before, after = raw["per_class"][name], post["per_class"][name]
        d0, d1 = before["dice"] or 0.0, after["dice"] or 0.0
        h0, h1 = before["hd95"] or 0.0, after["hd95"] or 0.0
        use = d1 >= d0 - tolerance and (d1 > d0 + 1e-12 or h1 < h0 - 1e-12)
        measured[name] = {"dice": round(d0, 5), "dice_kept": round(d1, 5),
                          "hd95": round(h0, 4), "hd95_kept": round(h1, 4), "chosen": use}
        if use:
            chosen.append(name)
    measured["protocol"] = "transunet (Dice, HD95 in voxels); each class tested alone"
    return PostProcessing(tuple(chosen), chosen_on, measured)
