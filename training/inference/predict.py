"""Segment a whole volume slice by slice: the one inference path for the plugin and the CLI.

docs/design.md "Inference on a volume": normalise as the checkpoint says, resize each slice to
the model's input size (or, for a checkpoint with a target pixel size and a volume with a
voxel size, resample it to that pixel size and fit it to the input without changing its
scale: ``training.data.physical_scale``, docs/design.md "Physical scale"), run batches on the
device (AMP on CUDA), resize the logits back, and keep everything volume-sized on the host.
On CUDA out-of-memory the batch is halved and retried, then the work falls back to the CPU
with a warning.

``SliceInferer`` holds a model and its ``InferenceSettings``; its pieces are ``SliceForward``
(one batch) and ``OutOfMemoryFallback`` (the batch-halving / CPU fallback), in the spirit of
MONAI's ``SliceInferer`` and ``SlidingWindowInfererAdapt``. ``predict_volume`` and
``iter_predict_volume`` are thin wrappers kept for the plugin's widgets.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.nn import functional as F

from scan_io.checks import replace_non_finite
from src_model import CheckpointMeta
from src_model.checkpoint_meta import DEFAULT_INPUT_SIZE

from ..data.cases import with_context
from ..data.normalization import IntensityNormalization, normalize
from ..data.physical_scale import SliceGeometry, in_plane_spacing, plan_geometry
from .model_handle import open_model
from .postprocess import apply_postprocessing

T = TypeVar("T")
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
    the scan with napari's scale/translate. ``bucket_votes``: (q, t, C) each bucket's learned
    class logits, added to the output through the plans (L2GNet ``plan_vote``), else None.
    """

    plans: np.ndarray | None
    buckets: np.ndarray | None
    codes: np.ndarray | None
    grid_scale: tuple[float, float]
    bucket_votes: np.ndarray | None = None


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
    reference = DEFAULT_INPUT_SIZE[0] * DEFAULT_INPUT_SIZE[1]
    per_slice = 400e6 * (input_size[0] * input_size[1]) / reference  # R50 L2GNet, fp16, fwd
    return int(max(1, min(64, free * 0.6 // per_slice)))


def load_for_inference(
    model_or_checkpoint: torch.nn.Module | str | Path,
    metadata: CheckpointMeta | Mapping[str, Any] | None = None,
) -> tuple[torch.nn.Module, CheckpointMeta | Mapping[str, Any]]:
    """A model and its metadata, from a model or a checkpoint path (the one place that does).

    A checkpoint's ``CheckpointMeta`` is returned as it is, or as a dict with ``metadata``'s
    entries laid over it when some are given.
    """
    if isinstance(model_or_checkpoint, str | Path):
        handle = open_model(model_or_checkpoint)  # cached: header read and model built once
        meta = handle.meta
        return handle.model(), ({**meta, **metadata} if metadata else meta)
    return model_or_checkpoint, (metadata if metadata is not None else {})


def _fit_to_stride(size: tuple[int, int], stride: int) -> tuple[int, int]:
    return tuple(max(stride, int(math.ceil(s / stride)) * stride) for s in size)  # type: ignore


@dataclass(frozen=True)
class InferenceSettings:
    """How a volume is segmented; every field has the plugin's and the CLI's default.

    ``axis``: the slicing axis. ``batch_size``: slices per forward pass, or ``"auto"`` (from
    free GPU memory). ``normalization``/``input_size``: override the metadata's.
    ``resize_back``: ``"logits"`` resizes logits bilinearly, then argmax (smoother);
    ``"nearest"`` takes the argmax at input size and resizes labels with nearest (TransUNet's
    test protocol, used for the papers' tables). ``amp``: float16 autocast on CUDA.
    ``postprocess``: apply the checkpoint's post-processing chosen on validation (keep the
    largest 3-D component of some classes, ``training.inference.postprocess``) to a volume's labels;
    probabilities are left as the model gave them.
    """

    axis: int = 0
    batch_size: int | str = "auto"
    device: str | torch.device = "auto"
    normalization: IntensityNormalization | None = None
    input_size: tuple[int, int] | None = None
    return_probabilities: bool = False
    explain: bool = False
    resize_back: str = "logits"
    amp: bool = True
    postprocess: bool = True

    def __post_init__(self) -> None:
        if self.resize_back not in ("logits", "nearest"):
            raise ValueError(f"resize_back must be 'logits' or 'nearest', got "
                             f"{self.resize_back!r}")
        if self.batch_size != "auto" and (isinstance(self.batch_size, str)
                                          or int(self.batch_size) < 1):
            raise ValueError(f"batch_size must be >= 1 or 'auto', got {self.batch_size}")


@dataclass
class BatchOutput:
    """One batch's results on the host: labels (B, H, W) at the slice size, and the rest."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    aux: dict[str, Any]


class SliceForward:
    """One batch of slices through the model: bicubic resize in (or, with a ``geometry``,
    resample to the model's pixel size and fit to its input: ``training.data.physical_scale``),
    forward (AMP on CUDA), resize out as ``resize_back`` says. Stateless apart from its
    settings."""

    def __init__(self, model: torch.nn.Module, size: tuple[int, int],
                 slice_size: tuple[int, int], settings: InferenceSettings,
                 geometry: SliceGeometry | None = None) -> None:
        self.model, self.size, self.slice_size, self.settings = model, size, slice_size, settings
        self.geometry = geometry

    @torch.no_grad()
    def __call__(self, batch: np.ndarray, device: torch.device) -> BatchOutput:
        model, size, orig, cfg = self.model, self.size, self.slice_size, self.settings
        geo = self.geometry
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
        x = x[:, None] if x.ndim == 3 else x  # (B, H, W) slices, or (B, 3, H, W) with context
        if geo is not None:
            x = geo.windows(geo.to_canvas(x))
        elif tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        if x.shape[1] == 1:
            x = x.expand(-1, model.in_channels, -1, -1)
        with torch.autocast(device.type, dtype=torch.float16,
                            enabled=cfg.amp and device.type == "cuda"):
            out = model(x)
        logits = out.logits.float()
        if geo is not None:  # windows -> the resampled slice (the resize below goes back)
            logits = geo.stitch(logits)
            out.aux = _stitch_explanation(out.aux, geo) if cfg.explain else {}
        resized = tuple(logits.shape[-2:]) != tuple(orig)
        if cfg.resize_back == "nearest" or not resized:
            pred = logits.argmax(1, keepdim=True).float()
            if resized:
                pred = F.interpolate(pred, size=orig, mode="nearest")
            labels = pred[:, 0].to(torch.int64)
            if cfg.return_probabilities and resized:
                logits = F.interpolate(logits, size=orig, mode="bilinear", align_corners=False)
        else:
            logits = F.interpolate(logits, size=orig, mode="bilinear", align_corners=False)
            labels = logits.argmax(1)
        probs = None
        if cfg.return_probabilities:
            probs = logits.softmax(1).transpose(0, 1).cpu().numpy().astype(np.float16)
        return BatchOutput(labels.cpu().numpy(), probs, out.aux)


CPU_OUT_OF_MEMORY = ("can't allocate memory",  # torch's DefaultCPUAllocator
                     "Cannot allocate memory",  # ENOMEM, e.g. mapping a checkpoint
                     "could not create a primitive")  # oneDNN failing to allocate its buffers


def is_cpu_out_of_memory(err: BaseException) -> bool:
    """The CPU running out: ``MemoryError`` (numpy, OpenBLAS), torch's allocator failing, or
    oneDNN failing to set up a convolution (what a short machine gives mid-run)."""
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and any(m in str(err) for m in CPU_OUT_OF_MEMORY))


class OutOfMemoryFallback:
    """Runs batches; on CUDA out-of-memory halves the batch and retries, and at batch size 1
    moves the model to the CPU (with a warning each time), like MONAI's
    ``SlidingWindowInfererAdapt``. On CPU out-of-memory it halves the batch too, and at batch
    size 1 raises a one-line ``MemoryError``. ``batch_size`` and ``device`` show what is in
    use now."""

    def __init__(self, model: torch.nn.Module, batch_size: int, device: torch.device) -> None:
        self.model, self.batch_size, self.device = model, batch_size, device

    def run(self, step: Callable[[int, torch.device], T]) -> T:
        """``step(batch_size, device)`` until it fits; returns its result."""
        while True:
            try:
                return step(self.batch_size, self.device)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if self.batch_size > 1:
                    self.batch_size //= 2
                    warnings.warn(f"CUDA out of memory: retrying with batch size "
                                  f"{self.batch_size}", stacklevel=3)
                else:
                    warnings.warn("CUDA out of memory even at batch size 1: continuing on the "
                                  "CPU (slower)", stacklevel=3)
                    self.device = torch.device("cpu")
                    self.model.to(self.device)
            except (RuntimeError, MemoryError) as err:
                if not is_cpu_out_of_memory(err):
                    raise
                if self.batch_size <= 1:
                    raise MemoryError("CPU out of memory even at batch size 1") from None
                self.batch_size //= 2
                warnings.warn(f"CPU out of memory: retrying with batch size {self.batch_size}",
                              stacklevel=3)


def _stitch_explanation(aux: dict[str, Any], geo: SliceGeometry) -> dict[str, Any]:
    """Per-window codes (B*T, n) and plans (B*T, q, n, t) -> per slice on the cells over the
    resampled slice: codes (B, n'), plans (B, q, n', t)."""
    gh, gw = (i // geo.stride for i in geo.input_size)
    out: dict[str, Any] = {}
    if "codes" in aux:
        codes = aux["codes"].reshape(-1, gh, gw)
        out["codes"] = geo.stitch_cells(codes).flatten(1)
    if "plans" in aux:
        p = aux["plans"]
        bt, q, _, t = p.shape
        p = p.reshape(bt, q, gh, gw, t).permute(0, 1, 4, 2, 3)
        p = geo.stitch_cells(p)  # (B, q, t, h, w)
        out["plans"] = p.flatten(3).transpose(2, 3)
    return out


class _ExplanationBuffer:
    """Collects the bottleneck's codes and transport plans batch by batch (host memory)."""

    def __init__(self, n: int, grid: tuple[int, int],
                 cell_size: tuple[float, float] | None = None) -> None:
        self.n, (self.h, self.w) = n, grid
        self.cell_size = cell_size
        self.plans = self.buckets = self.codes = None

    def add(self, start: int, stop: int, aux: dict[str, Any]) -> None:
        n, h, w = self.n, self.h, self.w
        if "codes" in aux:
            if self.codes is None:
                self.codes = np.zeros((n, h, w), np.int32)
            self.codes[start:stop] = aux["codes"].reshape(-1, h, w).cpu().numpy()
        if "plans" in aux:
            p = aux["plans"].float()  # (B, q, n_tok, t)
            b, q, _, t = p.shape
            p = p.reshape(b, q, h, w, t)
            if self.plans is None:
                self.plans = np.zeros((n, q, h, w, t), np.float16)
                self.buckets = np.zeros((n, q, h, w), np.uint8 if t <= 256 else np.uint16)
            self.plans[start:stop] = p.cpu().numpy().astype(np.float16)
            self.buckets[start:stop] = p.argmax(-1).cpu().numpy()

    def result(self, slice_size: tuple[int, int], model: torch.nn.Module) -> Explanation:
        scale = self.cell_size or (slice_size[0] / self.h, slice_size[1] / self.w)
        votes = getattr(getattr(model, "bottleneck", None), "bucket_votes", None)
        if votes is not None:
            votes = votes.detach().float().cpu().numpy()
        return Explanation(self.plans, self.buckets, self.codes, scale, votes)


def _metadata_entry(meta: CheckpointMeta | Mapping[str, Any], name: str) -> Any:
    if isinstance(meta, CheckpointMeta):
        return getattr(meta, name)
    return meta.get(name)


def run_to_end(gen: Generator[tuple[int, int], None, VolumePrediction],
               progress: ProgressFn | None = None) -> VolumePrediction:
    """Drive a per-batch prediction generator to its result, reporting ``(done, total)``."""
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)


class SliceInferer:
    """Segments volumes slice by slice with one model and one set of ``InferenceSettings``.

    The steps, each its own piece: normalise as the metadata says, cut slices along ``axis``,
    run them in batches through ``SliceForward`` under ``OutOfMemoryFallback``, collect the
    labels (and probabilities, explanation) on the host, put the axis back. A model passed in
    (not a checkpoint path) is left on the device used (moving it back would cost a copy per
    call) and in the train/eval mode it had.
    """

    def __init__(self, model_or_checkpoint: torch.nn.Module | str | Path,
                 metadata: CheckpointMeta | Mapping[str, Any] | None = None,
                 settings: InferenceSettings | None = None) -> None:
        self.model, self.metadata = load_for_inference(model_or_checkpoint, metadata)
        self.settings = settings or InferenceSettings()

    def __call__(self, volume: np.ndarray, *, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None,
                 spacing: Sequence[float] | None = None) -> VolumePrediction:
        """Segment ``volume``; ``progress(done, total)`` after each batch. ``spacing``: the
        voxel size in mm (3 numbers in the volume's axis order, or the slices' 2 in-plane
        ones), or None when unknown (see ``iterate``)."""
        return run_to_end(self.iterate(volume, cancel=cancel, spacing=spacing), progress)

    def iterate(self, volume: np.ndarray, *, cancel: CancelFn | None = None,
                spacing: Sequence[float] | None = None,
                ) -> Generator[tuple[int, int], None, VolumePrediction]:
        """Generator form: yields ``(done, total)`` slices after each batch, returns the
        prediction. ``cancel()`` returning True stops between batches with
        ``PredictionCancelled`` (napari's generator ``thread_worker`` drives this).

        With a ``spacing`` and a checkpoint that records ``target_spacing_mm``, each slice is
        resampled to that pixel size and fitted to the input (``training.data.physical_scale``);
        otherwise it is resized to the input size, as checkpoints without it always were."""
        model, cfg = self.model, self.settings
        was_training = model.training
        model.eval()
        try:
            vol, axis, single = self._as_volume(volume)
            vol = replace_non_finite(vol, "the volume")  # one NaN would blank a slice
            norm = cfg.normalization or IntensityNormalization.from_metadata(
                _metadata_entry(self.metadata, "normalization"))
            slices = np.moveaxis(normalize(vol, norm), axis, 0)
            n, height, width = slices.shape
            stride = getattr(model, "output_stride", 16)
            size = tuple(cfg.input_size or _metadata_entry(self.metadata, "input_size")
                         or (height, width))
            size = _fit_to_stride(size, stride)
            geometry = self._geometry(spacing, vol.ndim if not single else 2, axis,
                                      (height, width), size, stride)
            dev = resolve_device(cfg.device)
            bs = auto_batch_size(dev, size) if cfg.batch_size == "auto" else int(cfg.batch_size)
            if geometry is not None and cfg.batch_size == "auto":
                bs = max(1, bs // len(geometry.tiles))
            model.to(dev)
            forward = SliceForward(model, size, (height, width), cfg, geometry)
            context = int(_metadata_entry(self.metadata, "slice_context") or 0)

            def batch_of(start: int, stop: int) -> np.ndarray:
                """Slices start..stop; with slice context each between its neighbours (a
                lone 2-D slice is its own neighbour)."""
                return with_context(slices, start, stop) if context else slices[start:stop]

            fallback = OutOfMemoryFallback(model, bs, dev)

            num_classes = model.num_classes
            labels = np.zeros((n, height, width), np.uint8 if num_classes <= 256 else np.uint16)
            probs = (np.zeros((num_classes, n, height, width), np.float16)
                     if cfg.return_probabilities else None)
            explanation = (_ExplanationBuffer(n, (size[0] // stride, size[1] // stride))
                           if geometry is None else
                           _ExplanationBuffer(n, geometry.grid, geometry.cell_size))
            start = 0
            while start < n:
                if cancel is not None and cancel():
                    raise PredictionCancelled(f"Prediction cancelled after {start} of {n} slices")
                stop, out = fallback.run(lambda b, d, s=start: (
                    min(n, s + b), forward(batch_of(s, min(n, s + b)), d)))
                labels[start:stop] = out.labels
                if probs is not None:
                    probs[:, start:stop] = out.probabilities
                if cfg.explain:
                    explanation.add(start, stop, out.aux)
                start = stop
                yield start, n

            if cfg.postprocess and not single:  # 3-D components need a volume
                labels = apply_postprocessing(labels, self.metadata)
            if single:  # a 2-D slice in: 2-D labels and (C, H, W) probabilities out
                labels, probs = labels[0], None if probs is None else probs[:, 0]
            else:
                labels = np.moveaxis(labels, 0, axis)
                probs = None if probs is None else np.moveaxis(probs, 1, axis + 1)
            return VolumePrediction(
                labels=labels, probabilities=probs,
                explanation=explanation.result((height, width), model) if cfg.explain else None,
                device=str(fallback.device), batch_size=fallback.batch_size, axis=axis,
                metadata=self.metadata)
        finally:
            model.train(was_training)

    def _geometry(self, spacing: Sequence[float] | None, ndim: int, axis: int,
                  slice_size: tuple[int, int], size: tuple[int, int],
                  stride: int) -> SliceGeometry | None:
        """The physical-scale plan, when both the slices' and the model's pixel size are
        known; else None (the plain resize)."""
        target = _metadata_entry(self.metadata, "target_spacing_mm")
        plane = in_plane_spacing(spacing, axis, ndim)
        if target is None or plane is None:
            return None
        return plan_geometry(slice_size, plane, tuple(target), size, stride)

    def _as_volume(self, volume: np.ndarray) -> tuple[np.ndarray, int, bool]:
        vol, axis = np.asarray(volume), self.settings.axis
        single = vol.ndim == 2
        if single:
            vol, axis = vol[None], 0
        if vol.ndim != 3:
            raise ValueError(f"Expected a 3-D volume (or one 2-D slice), got shape {vol.shape}")
        if not -3 <= axis < 3:
            raise ValueError(f"axis must be 0, 1 or 2 for a 3-D volume, got {axis}")
        if min(vol.shape) == 0:
            raise ValueError(f"The volume is empty (shape {vol.shape})")
        return vol, axis % 3, single


_SETTING_NAMES = {f.name for f in fields(InferenceSettings)}


def iter_predict_volume(
    volume: np.ndarray,
    model_or_checkpoint: torch.nn.Module | str | Path,
    *,
    metadata: CheckpointMeta | Mapping[str, Any] | None = None,
    cancel: CancelFn | None = None,
    spacing: Sequence[float] | None = None,
    **settings: Any,
) -> Generator[tuple[int, int], None, VolumePrediction]:
    """``SliceInferer(model, metadata, InferenceSettings(**settings)).iterate(volume)``.

    Kept for callers of the earlier function API (the widgets); see ``InferenceSettings``.
    ``spacing``: the volume's voxel size in mm (its axis order) or the slices' in-plane
    size, for checkpoints that work at a physical pixel size (``SliceInferer.iterate``).
    """
    unknown = sorted(set(settings) - _SETTING_NAMES)
    if unknown:
        raise TypeError(f"unknown inference option(s) {unknown}; accepted: "
                        f"{', '.join(sorted(_SETTING_NAMES))}")
    inferer = SliceInferer(model_or_checkpoint, metadata, InferenceSettings(**settings))
    return inferer.iterate(volume, cancel=cancel, spacing=spacing)


def predict_volume(
    volume: np.ndarray,
    model_or_checkpoint: torch.nn.Module | str | Path,
    *,
    progress: ProgressFn | None = None,
    **kwargs: Any,
) -> VolumePrediction:
    """Segment ``volume`` slice by slice along ``axis``; see ``InferenceSettings``.

    ``spacing=``: the voxel size in mm (volume axis order) or the slices' in-plane pixel size;
    used when the checkpoint records ``target_spacing_mm`` (``SliceInferer.iterate``).
    ``progress(done, total)`` is called after each batch; ``cancel()`` returning True stops the
    work between batches with ``PredictionCancelled``.
    """
    return run_to_end(iter_predict_volume(volume, model_or_checkpoint, **kwargs), progress)
