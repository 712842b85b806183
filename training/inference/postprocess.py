"""3-D post-processing of label maps: keep each chosen class's largest connected component.

A slice-by-slice model leaves stray islands (a few voxels of "LV" in the liver, a blob on a
far slice); an organ or a cardiac chamber is one connected piece. nnU-Net's answer, used
here: per class, keep only the largest 3-D connected component (face connectivity, scipy's
default), and do it only for the classes where it helps on validation data
(``training.evaluation.postprocess_choice``), because for a class that really is in several
pieces it would delete true voxels. The choice is stored in the checkpoint
(``src_model.checkpoint_meta.PostProcessing``) and applied by ``predict_volume`` unless
``postprocess=False``. numpy/scipy only (no torch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from src_model.checkpoint_meta import PostProcessing

__all__ = ["keep_largest_component", "largest_component_labels", "apply_postprocessing"]


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
