"""3-D post-processing of label maps: keep each chosen class's largest connected component.

A slice-by-slice model leaves stray islands (a few voxels of "LV" in the liver, a blob on a
far slice); an organ or a cardiac chamber is one connected piece. nnU-Net's answer, used
here: per class, keep only the largest 3-D connected component (face connectivity, scipy's
default), and do it only for the classes where it helps on validation data
(``choose_largest_component``), because for a class that really is in several pieces it
would delete true voxels. The choice is stored in the checkpoint
(``src_model.checkpoint_meta.PostProcessing``) and applied by ``predict_volume`` unless
``postprocess=False``. numpy/scipy only (no torch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from src_model.checkpoint_meta import PostProcessing

from .metrics import score_case, summarize

__all__ = ["keep_largest_component", "largest_component_labels", "apply_postprocessing",
           "choose_largest_component"]


def keep_largest_component(labels: np.ndarray, classes: Iterable[int]) -> np.ndarray:
    """A copy of ``labels`` where each class in ``classes`` keeps only its largest connected
    component (face connectivity in every dimension); the rest becomes background (0)."""
    out = np.array(labels, copy=True)
    for c in classes:
        mask = out == c
        components, n = ndimage.label(mask)
        if n > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            out[mask & (components != int(sizes.argmax()))] = 0
    return out


def largest_component_labels(post: PostProcessing | None,
                             class_names: Sequence[str]) -> list[int]:
    """The label values ``post`` names (classes it names that the model lacks are ignored)."""
    if post is None:
        return []
    index = {name: i for i, name in enumerate(class_names) if i > 0}
    return [index[n] for n in post.largest_component if n in index]


def apply_postprocessing(labels: np.ndarray, metadata: Mapping[str, Any] | Any) -> np.ndarray:
    """``labels`` with the checkpoint's post-processing applied (unchanged when it has none).

    ``metadata``: a ``CheckpointMeta`` or its dict form (what ``predict_volume`` holds).
    """
    raw = getattr(metadata, "postprocessing", None)
    if raw is None and isinstance(metadata, Mapping):
        raw = metadata.get("postprocessing")
    names = getattr(metadata, "class_names", None)
    if names is None and isinstance(metadata, Mapping):
        names = metadata.get("class_names")
    classes = largest_component_labels(PostProcessing.from_metadata(raw), list(names or []))
    return keep_largest_component(labels, classes) if classes else labels


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
