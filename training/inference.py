"""Segment a whole volume slice by slice: the one inference path for the plugin and the CLI.

DESIGN.md "Inference on a volume": normalise as the checkpoint says, resize each slice to the
model's input size, run batches on the device (AMP on CUDA), resize the logits back, and keep
everything volume-sized on the host. On CUDA out-of-memory the batch is halved and retried,
then the work falls back to the CPU with a warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from src_model import load_checkpoint

from .normalization import IntensityNormalization, normalize

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


class PredictionCancelled(RuntimeError):
    """Raised by ``predict_volume`` when ``cancel()`` returned True between two batches."""


@dataclass
class Explanation:
    """What the bottleneck decided, per slice, at bottleneck resolution (never upsampled).

    ``plans``: (S, q, h, w, t) transport plans T[:, r, :, j] reshaped onto the token grid;
    ``buckets``: (S, q, h, w) argmax over the t buckets; ``codes``: (S, h, w) VQ indices.
    ``grid_scale``: (sy, sx) size of one bottleneck cell in slice pixels, to place the maps over
    the scan with napari's scale/translate.
    """

    plans: np.ndarray | None
    buckets: np.ndarray | None
    codes: np.ndarray | None
    grid_scale: tuple[float, float]


@dataclass
class VolumePrediction:
    """Labels on the input's grid (same shape, same axis order) and what produced them."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    explanation: Explanation | None
    device: str
    batch_size: int
    axis: int
    metadata: dict[str, Any]


class DeviceError(ValueError, RuntimeError):
    """An unknown device name, or one this machine does not have (one line, with the fix)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; a device this machine lacks is an error."""
    text = str(device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {text!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device={text!r} was asked for but this machine has no usable "
                              "CUDA GPU; use device='cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device={text!r} does not exist: this machine has "
                              f"{torch.cuda.device_count()} CUDA GPU(s), cuda:0.."
                              f"cuda:{torch.cuda.device_count() - 1}")
    elif dev.type != "cpu":
        raise DeviceError(f"device {text!r} is not supported: use auto, cpu, cuda or cuda:N")
    return dev


def auto_batch_size(device: torch.device, input_size: tuple[int, int]) -> int:
    """A batch size that fits: from free GPU memory on CUDA (a rough per-slice cost), 4 on CPU."""
    if device.type != "cuda":
        return 4
    free, _ = torch.cuda.mem_get_info(device)
    per_slice = 400e6 * (input_size[0] * input_size[1]) / (224 * 224)  # R50 L2GNet, fp16, fwd
    return int(max(1, min(64, free * 0.6 // per_slice)))


def load_for_inference(
    model_or_checkpoint: torch.nn.Module | str | Path, metadata: dict[str, Any] | None = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A model in eval mode and its metadata, from a model or a checkpoint path."""
    if isinstance(model_or_checkpoint, str | Path):
        model, meta = load_checkpoint(model_or_checkpoint)
        meta = {**meta, **(metadata or {})}
    else:
        model, meta = model_or_checkpoint, dict(metadata or {})
    return model.eval(), meta


def _fit_to_stride(size: tuple[int, int], stride: int) -> tuple[int, int]:
    return tuple(max(stride, int(math.ceil(s / stride)) * stride) for s in size)  # type: ignore


def iter_predict_volume(
    volume: np.ndarray,
    model_or_checkpoint: torch.nn.Module | str | Path,
    *,
    axis: int = 0,
    batch_size: int | str = "auto",
    device: str | torch.device = "auto",
    metadata: dict[str, Any] | None = None,
    normalization: IntensityNormalization | None = None,
    input_size: tuple[int, int] | None = None,
    return_probabilities: bool = False,
    explain: bool = False,
    resize_back: str = "logits",
    amp: bool = True,
    cancel: CancelFn | None = None,
) -> Generator[tuple[int, int], None, VolumePrediction]:
    """Generator form of ``predict_volume``: yields ``(done, total)`` slices after each batch.

    napari's generator ``thread_worker`` drives it, so quitting the worker stops the work at
    the next batch. ``resize_back="logits"`` resizes logits bilinearly, then argmax (smoother);
    ``"nearest"`` takes the argmax at input size and resizes labels with nearest (TransUNet's
    test protocol, used for the papers' tables).

    A model passed in (not a checkpoint path) is left on the device used (moving it back
    would cost a copy per call) and in the train/eval mode it had.
    """
    if resize_back not in ("logits", "nearest"):
        raise ValueError(f"resize_back must be 'logits' or 'nearest', got {resize_back!r}")
    was_training = getattr(model_or_checkpoint, "training", False)
    model, meta = load_for_inference(model_or_checkpoint, metadata)
    try:
        vol = np.asarray(volume)
        single = vol.ndim == 2
        if single:
            vol = vol[None]
            axis = 0
        if vol.ndim != 3:
            raise ValueError(f"Expected a 3-D volume (or one 2-D slice), got shape {vol.shape}")
        if not -3 <= axis < 3:
            raise ValueError(f"axis must be 0, 1 or 2 for a 3-D volume, got {axis}")
        axis %= 3
        if min(vol.shape) == 0:
            raise ValueError(f"The volume is empty (shape {vol.shape})")
        norm = normalization or IntensityNormalization.from_metadata(meta.get("normalization"))
        slices = np.moveaxis(normalize(vol, norm), axis, 0)
        n, height, width = slices.shape
        stride = getattr(model, "output_stride", 16)
        size = tuple(input_size or meta.get("input_size") or (height, width))
        size = _fit_to_stride(size, stride)
        num_classes = model.num_classes
        dev = resolve_device(device)
        bs = auto_batch_size(dev, size) if batch_size == "auto" else int(batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1 or 'auto', got {batch_size}")
        model.to(dev)

        label_dtype = np.uint8 if num_classes <= 256 else np.uint16
        labels = np.zeros((n, height, width), dtype=label_dtype)
        probs = (np.zeros((num_classes, n, height, width), np.float16)
                 if return_probabilities else None)
        h, w = size[0] // stride, size[1] // stride
        plans = buckets = codes = None

        start = 0
        while start < n:
            if cancel is not None and cancel():
                raise PredictionCancelled(f"Prediction cancelled after {start} of {n} slices")
            stop = min(n, start + bs)
            try:
                out = _predict_batch(model, slices[start:stop], size, (height, width), dev, amp,
                                     resize_back, return_probabilities)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if bs > 1:
                    bs //= 2
                    warnings.warn(f"CUDA out of memory: retrying with batch size {bs}",
                                  stacklevel=2)
                else:
                    warnings.warn("CUDA out of memory even at batch size 1: continuing on the CPU "
                                  "(slower)", stacklevel=2)
                    dev = torch.device("cpu")
                    model.to(dev)
                continue
            labels[start:stop] = out["labels"]
            if probs is not None:
                probs[:, start:stop] = out["probabilities"]
            aux = out["aux"]
            if explain:
                if "codes" in aux:
                    if codes is None:
                        codes = np.zeros((n, h, w), np.int32)
                    codes[start:stop] = aux["codes"].reshape(-1, h, w).cpu().numpy()
                if "plans" in aux:
                    p = aux["plans"].float()  # (B, q, n_tok, t)
                    b, q, _, t = p.shape
                    p = p.reshape(b, q, h, w, t)
                    if plans is None:
                        plans = np.zeros((n, q, h, w, t), np.float16)
                        buckets = np.zeros((n, q, h, w), np.uint8 if t <= 256 else np.uint16)
                    plans[start:stop] = p.cpu().numpy().astype(np.float16)
                    buckets[start:stop] = p.argmax(-1).cpu().numpy()
            start = stop
            yield start, n

        explanation = None
        if explain:
            explanation = Explanation(plans, buckets, codes, (height / h, width / w))
        if single:  # a 2-D slice in: 2-D labels and (C, H, W) probabilities out
            labels, probs = labels[0], None if probs is None else probs[:, 0]
        else:
            labels = np.moveaxis(labels, 0, axis)
            probs = None if probs is None else np.moveaxis(probs, 1, axis + 1)
        return VolumePrediction(
            labels=labels,
            probabilities=probs,
            explanation=explanation,
            device=str(dev),
            batch_size=bs,
            axis=axis,
            metadata=meta,
        )
    finally:
        model.train(was_training)


@torch.no_grad()
def _predict_batch(model, batch: np.ndarray, size, orig_size, dev, amp, resize_back, want_probs):
    """One batch: resize in (bicubic), forward, resize out; returns host arrays."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(dev)[:, None]
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    x = x.expand(-1, model.in_channels, -1, -1)
    with torch.autocast(dev.type, dtype=torch.float16, enabled=amp and dev.type == "cuda"):
        out = model(x)
    logits = out.logits.float()
    resized = tuple(logits.shape[-2:]) != tuple(orig_size)
    if resize_back == "nearest" or not resized:
        pred = logits.argmax(1, keepdim=True).float()
        if resized:
            pred = F.interpolate(pred, size=orig_size, mode="nearest")
        labels = pred[:, 0].to(torch.int64)
        if want_probs and resized:
            logits = F.interpolate(logits, size=orig_size, mode="bilinear", align_corners=False)
    else:
        logits = F.interpolate(logits, size=orig_size, mode="bilinear", align_corners=False)
        labels = logits.argmax(1)
    result = {"labels": labels.cpu().numpy(), "aux": out.aux}
    if want_probs:
        result["probabilities"] = (
            logits.softmax(1).transpose(0, 1).cpu().numpy().astype(np.float16)
        )
    return result


def predict_volume(
    volume: np.ndarray,
    model_or_checkpoint: torch.nn.Module | str | Path,
    *,
    progress: ProgressFn | None = None,
    **kwargs: Any,
) -> VolumePrediction:
    """Segment ``volume`` slice by slice along ``axis``; see ``iter_predict_volume``'s options.

    ``progress(done, total)`` is called after each batch; ``cancel()`` returning True stops the
    work between batches with ``PredictionCancelled``.
    """
    gen = iter_predict_volume(volume, model_or_checkpoint, **kwargs)
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)
