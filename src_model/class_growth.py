"""Grow a built model by new output classes without changing what it predicts at step 0.

Teaching a structure the model was never trained on (a lesion, a vessel) needs one more
output channel per new class. ``grow_classes(model, k)`` returns a model of the same network
and config with ``num_classes + k`` outputs whose weights are the old model's, and whose new
channels are a copy of the background's minus ``margin``:

- the 1x1 head: the new rows are the background row, the new biases the background's bias
  minus ``margin``;
- an L2GNet with bucket votes (``plan_vote``): each bucket's new vote logits are its
  background vote (no margin there: the head's bias carries it, once).

So every new logit equals the background logit minus ``margin`` at every pixel: the old
classes' logits are bit-for-bit the old model's, no new class can win the argmax (it is always
below the background), and its softmax probability is at most ``exp(-margin)``. Training then
only has to lift it where the user painted it, starting next to the background rather than at
an arbitrary point (docs/new-classes.md).

Every network of the registry shares ``Segmenter`` and its ``head``; a network that carries
class outputs elsewhere that this module does not know is refused with one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .checkpoint import _has_meta_tensors
from .checkpoint_meta import AddedClass, default_class_names
from .config import config_to_dict
from .registry import build_model

MAX_NEW_CLASSES = 8
"""At most this many classes are added at once: more is almost always a mislabelled layer."""

DEFAULT_MARGIN = 5.0
"""New logits start this far below the background's: probability <= exp(-5) ~ 0.7%."""

__all__ = ["DEFAULT_MARGIN", "MAX_NEW_CLASSES", "NEW_CLASS_PALETTE", "ClassGrowthError",
           "grow_classes", "grown_metadata", "new_class_names"]


class ClassGrowthError(ValueError):
    """A model or request this module cannot grow; the message says why and what to do."""


def _class_outputs(model: nn.Module) -> list[str]:
    """Names of the tensors with a class dimension this module knows how to grow."""
    names = ["head.weight", "head.bias"]
    if getattr(getattr(model, "bottleneck", None), "bucket_votes", None) is not None:
        names.append("bottleneck.bucket_votes")
    return names


def _check_growable(model: nn.Module) -> None:
    head = getattr(model, "head", None)
    n = getattr(model, "num_classes", None)
    if (not isinstance(head, nn.Conv2d) or head.out_channels != n or head.bias is None
            or head.kernel_size != (1, 1) or not hasattr(model, "config")):
        raise ClassGrowthError(
            f"{type(model).__name__} has no 1x1 classifier head with one output per class: "
            "new classes cannot be added to it; train a new model with --class-names instead")


def grow_classes(model: nn.Module, new_classes: int, *,
                 margin: float | None = None) -> nn.Module:
    """A copy of ``model`` with ``new_classes`` more output classes (module docstring).

    ``margin`` (default ``DEFAULT_MARGIN``): how far below the background the new logits
    start. The copy is built on the model's device and dtype, in the model's training mode; the
    original is left untouched. ``ClassGrowthError`` (one line) for a count outside
    1..``MAX_NEW_CLASSES``, a negative margin, or a network without a growable head.
    """
    k = int(new_classes)
    if k < 1:
        raise ClassGrowthError(f"new_classes must be >= 1, got {new_classes}")
    if k > MAX_NEW_CLASSES:
        raise ClassGrowthError(
            f"{k} new classes at once is more than {MAX_NEW_CLASSES}: add a few at a time "
            "(check that the labels hold class indices, not intensities)")
    margin = DEFAULT_MARGIN if margin is None else float(margin)
    if not margin >= 0:
        raise ClassGrowthError(f"margin must be >= 0, got {margin}")
    _check_growable(model)
    old_n = model.num_classes
    param = next(model.parameters())
    config = config_to_dict(model.config)
    with torch.device("meta"):  # the skeleton allocates nothing; weights are copied below
        grown = build_model(model.name, old_n + k, **config)
    old_state = model.state_dict()
    new_state = grown.state_dict()
    state = {}
    for name, new in new_state.items():
        old = old_state[name]
        if old.shape == new.shape:
            state[name] = old.detach().clone()
            continue
        if name not in _class_outputs(model):
            # a class output this module does not know: growing only the head would leave
            # the network inconsistent, so it is refused rather than guessed
            raise ClassGrowthError(f"{model.name}: tensor {name} changes shape "
                                   f"{tuple(old.shape)} -> {tuple(new.shape)} with the class "
                                   "count; this version cannot grow it")
        state[name] = _grow_tensor(name, old.detach(), k, margin)
    grown.load_state_dict(state, assign=True)
    if _has_meta_tensors(grown):  # a module keeps tensors outside its state: build for real
        grown = build_model(model.name, old_n + k, **config)
        grown.load_state_dict(state)
    grown.to(device=param.device)
    grown.train(model.training)
    return grown


def _grow_tensor(name: str, old: torch.Tensor, k: int, margin: float) -> torch.Tensor:
    """The class dimension of ``old`` extended by ``k`` copies of the background's."""
    if name == "head.weight":  # (C, D, 1, 1): classes first
        return torch.cat([old, old[:1].repeat(k, 1, 1, 1)], dim=0).clone()
    if name == "head.bias":  # (C,)
        return torch.cat([old, (old[:1] - margin).repeat(k)]).clone()
    # bucket votes (q, t, C): classes last
    return torch.cat([old, old[..., :1].repeat(1, 1, k)], dim=-1).clone()


# ---------------------------------------------------------------------------- names, metadata
NEW_CLASS_PALETTE: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.55, 0.0), (0.6, 0.25, 1.0), (0.0, 0.8, 0.8), (1.0, 0.2, 0.6),
    (0.5, 1.0, 0.2), (1.0, 0.95, 0.2), (0.2, 0.45, 1.0), (0.65, 0.4, 0.2),
)
"""Colours of new classes when the model has its own colours and none are given."""


def new_class_names(model_names: Sequence[str], names: Sequence[str]) -> list[str]:
    """The names in ``names`` beyond ``model_names`` (none: the same classes).

    ``names`` must start with the model's names, unchanged and in order; the new ones must
    be non-empty, distinct from each other and from the old ones, at most
    ``MAX_NEW_CLASSES``. Anything else is a one-line ``ClassGrowthError``.
    """
    old, names = [str(n) for n in model_names], [str(n).strip() for n in names]
    listed = ",".join(old)
    if len(names) < len(old):
        raise ClassGrowthError(
            f"{len(names)} class names given but the model has {len(old)} classes ({listed}): "
            "give the model's names first, unchanged and in order, then the new ones")
    for i, (given, own) in enumerate(zip(names, old, strict=False)):
        if given != own:
            moved = f" (the model's class {old.index(given)})" if given in old else ""
            raise ClassGrowthError(
                f"class names would rename or reorder the model's classes: name {i} is "
                f"{given!r}{moved} but the model's class {i} is {own!r}; give the model's "
                f"names first, unchanged and in order ({listed}), then the new ones")
    new = names[len(old):]
    if any(not n for n in new):
        raise ClassGrowthError("a new class has an empty name: name every new class")
    dup = sorted({n for n in new if new.count(n) > 1 or n in old})
    if dup:
        raise ClassGrowthError(f"new class name(s) {dup} appear twice or are already the "
                               "model's: give each new class its own name")
    if len(new) > MAX_NEW_CLASSES:
        raise ClassGrowthError(
            f"{len(new)} new classes at once is more than {MAX_NEW_CLASSES}: add a few at a "
            "time (check that the labels hold class indices, not intensities)")
    return new


def grown_metadata(meta: Mapping[str, Any], added: Sequence[AddedClass], *,
                   colors: Sequence[Sequence[float]] | None = None) -> dict[str, Any]:
    """``meta`` (a ``CheckpointMeta`` or its dict) for the model with ``added`` classes.

    ``class_names`` gains the new names; ``class_colors`` gains ``colors`` (one per new class;
    from ``NEW_CLASS_PALETTE`` when the model has colours and none are given; when the model
    has none and colours are given, the old classes need theirs too: pass ``colors`` for all
    classes); ``card.added_classes`` gains ``added``; ``model.num_classes`` the count.
    """
    out = dict(meta.to_dict() if hasattr(meta, "to_dict") else meta)
    old_names = list(out.get("class_names") or [])
    n_old = int((out.get("model") or {}).get("num_classes", len(old_names)))
    if not old_names:
        old_names = list(default_class_names(n_old))
    expected = list(range(n_old, n_old + len(added)))
    if [a.index for a in added] != expected:
        raise ClassGrowthError(f"added classes must take the labels {expected} in order, got "
                               f"{[a.index for a in added]}")
    out["class_names"] = old_names + [a.name for a in added]
    old_colors = out.get("class_colors")
    if colors is not None and len(colors) == len(out["class_names"]):
        out["class_colors"] = [list(c) for c in colors]
    elif colors is not None and len(colors) != len(added):
        raise ClassGrowthError(f"{len(colors)} colours for {len(added)} new classes")
    elif old_colors:
        extra = (list(colors) if colors is not None else
                 [NEW_CLASS_PALETTE[i % len(NEW_CLASS_PALETTE)] for i in range(len(added))])
        out["class_colors"] = [list(c) for c in old_colors] + [list(c) for c in extra]
    elif colors is not None:
        raise ClassGrowthError("the model has no class colours: give colours for every "
                               "class, not only the new ones")
    card = dict(out.get("card") or {})
    card["added_classes"] = [*(card.get("added_classes") or []),
                             *(a.to_dict() for a in added)]
    out["card"] = card
    if isinstance(out.get("model"), Mapping):
        out["model"] = {**out["model"], "num_classes": n_old + len(added)}
    return out
