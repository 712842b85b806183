"""Physical scale: slices go to the model at a fixed pixel size (mm), and back.

A checkpoint with ``target_spacing_mm`` (the in-plane pixel size of its training data, the
median, as nnU-Net plans it) sees every slice resampled to that pixel size, so a structure's
size in pixels no longer depends on the field of view (docs/design.md, "Physical scale").
The resampled slice is then *fitted* to the model's input without changing its scale:

- smaller than the input: padded (with 0, the normalised background) into one input-sized
  window, placed near the centre on the model's stride grid;
- larger: padded up to the stride and covered by input-sized windows overlapping by about
  half (a sliding window, as nnU-Net), whose logits are averaged.

Labels come back on the original grid: the logits of the resampled region are resized
(bilinear) to the slice's size. Data without a voxel size, and checkpoints without a target
spacing, keep the plain resize to the input size (``SliceGeometry`` is then not used).

The same resampling function (``resample``) serves training (``training.data.dataset``) and
inference (``training.inference``), so both see the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["SliceGeometry", "fill_spacing", "in_plane_spacing", "median_spacing",
           "plan_geometry", "resample", "resampled_size"]


def in_plane_spacing(spacing: Sequence[float] | None, axis: int = 0,
                     ndim: int = 3) -> tuple[float, float] | None:
    """The two in-plane pixel sizes (mm) of slices cut along ``axis``.

    ``spacing`` is either the volume's voxel size in its axis order (3 numbers: the slicing
    axis is dropped) or already the slices' in-plane size (2 numbers). ``None``, or any size
    that is not a positive finite number (a plain array's unit scale is passed as ``None`` by
    callers), gives ``None``: unknown, so the plain resize is used.
    """
    if spacing is None:
        return None
    values = [float(s) for s in spacing]
    if len(values) == 3 and ndim == 3:
        values = [v for i, v in enumerate(values) if i != axis % 3]
    elif len(values) == 3 and ndim == 2:
        values = values[1:]
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        return None
    return values[0], values[1]


def median_spacing(spacings: Sequence[tuple[float, float] | None]) -> tuple[float, float] | None:
    """The median in-plane pixel size over slices that have one (None: none has)."""
    known = np.array([s for s in spacings if s is not None], dtype=float)
    if not known.size:
        return None
    med = np.median(known.reshape(-1, 2), axis=0)
    return round(float(med[0]), 4), round(float(med[1]), 4)


def fill_spacing(shapes: Sequence[Sequence[int]], spacings: Sequence[tuple[float, float] | None],
                 input_size: Sequence[int]) -> tuple[float, float] | None:
    """The pixel size (mm, the same along both axes) at which the median slice's field of
    view just fills the model's input (its longer side).

    The median pixel size alone (nnU-Net's choice for a patch that is planned around it)
    leaves a fixed 224-pixel input mostly padding for a 3 mm scan (366 mm in 122 pixels fill
    half of it), so small structures get few pixels and few bottleneck cells; resampled to
    the finer size that fills the input, the same compute sees them about twice as large.
    None when no slice has a pixel size."""
    known = [(tuple(int(n) for n in shape[-2:]), s) for shape, s in
             zip(shapes, spacings, strict=True) if s is not None]
    if not known:
        return None
    extent = np.median(np.array([[n * v for n, v in zip(shape, s, strict=True)]
                                 for shape, s in known]), axis=0)
    size = round(max(float(e) / int(i) for e, i in zip(extent, input_size, strict=True)), 2)
    return size, size


def resampled_size(size: Sequence[int], spacing: Sequence[float],
                   target: Sequence[float], zoom: float = 1.0) -> tuple[int, int]:
    """(H, W) of a slice of ``size`` pixels at ``spacing`` mm once at ``target`` mm
    (``zoom`` > 1 enlarges: the scale augmentation)."""
    return tuple(max(1, int(round(n * s / t * zoom)))  # type: ignore[return-value]
                 for n, s, t in zip(size, spacing, target, strict=True))


def resample(x: torch.Tensor, size: Sequence[int], labels: bool = False) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size): images bicubic (antialiased when shrinking), labels
    nearest. The one resampling used in training and inference."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    if labels:
        return F.interpolate(x.float(), size=size, mode="nearest-exact").to(x.dtype)
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=shrink)


def _starts(canvas: int, window: int, stride: int) -> list[int]:
    """Window starts covering ``canvas``, about half a window apart, on the stride grid."""
    if canvas <= window:
        return [0]
    step = max(stride, (window // 2) // stride * stride)
    starts = list(range(0, canvas - window, step))
    return starts + [canvas - window]


@dataclass(frozen=True)
class SliceGeometry:
    """Where a slice goes on its way to the model: resampled to ``resampled`` pixels, placed
    at ``offset`` in a ``canvas`` (>= the input, a stride multiple), cut into input-sized
    windows at ``tiles`` (top-left corners). All offsets are stride multiples, so bottleneck
    cells of every window line up on one grid (``stride``)."""

    slice_size: tuple[int, int]
    resampled: tuple[int, int]
    canvas: tuple[int, int]
    offset: tuple[int, int]
    tiles: tuple[tuple[int, int], ...]
    input_size: tuple[int, int]
    stride: int

    @property
    def cell_size(self) -> tuple[float, float]:
        """One bottleneck cell in pixels of the original slice."""
        return tuple(self.stride * n / r for n, r in  # type: ignore[return-value]
                     zip(self.slice_size, self.resampled, strict=True))

    @property
    def grid(self) -> tuple[int, int]:
        """Bottleneck cells that cover the resampled slice (the last may overhang)."""
        return tuple(math.ceil(r / self.stride) for r in self.resampled)  # type: ignore

    def to_canvas(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) slices -> (B, 1, *canvas): resampled and placed (zeros around)."""
        x = resample(x, self.resampled)
        (oy, ox), (h, w) = self.offset, self.resampled
        out = x.new_zeros((*x.shape[:2], *self.canvas))
        out[..., oy:oy + h, ox:ox + w] = x
        return out

    def windows(self, canvas: torch.Tensor) -> torch.Tensor:
        """(B, C, *canvas) -> (B * T, C, *input_size), window-major per slice."""
        ih, iw = self.input_size
        parts = [canvas[..., y:y + ih, x:x + iw] for y, x in self.tiles]
        return torch.stack(parts, 1).flatten(0, 1)

    def stitch(self, logits: torch.Tensor) -> torch.Tensor:
        """(B * T, C, *input_size) window logits -> (B, C, *resampled): averaged where
        windows overlap, cut out of the canvas."""
        t = len(self.tiles)
        ih, iw = self.input_size
        b = logits.shape[0] // t
        logits = logits.reshape(b, t, *logits.shape[1:])
        total = logits.new_zeros((b, logits.shape[2], *self.canvas))
        count = logits.new_zeros(self.canvas)
        for k, (y, x) in enumerate(self.tiles):
            total[..., y:y + ih, x:x + iw] += logits[:, k]
            count[y:y + ih, x:x + iw] += 1
        (oy, ox), (h, w) = self.offset, self.resampled
        return (total / count)[..., oy:oy + h, ox:ox + w]

    def stitch_cells(self, values: torch.Tensor) -> torch.Tensor:
        """(B * T, ..., gh, gw) per-window bottleneck maps -> (B, ..., *grid): later windows
        overwrite earlier ones where they overlap; cut to the cells over the slice."""
        t, s = len(self.tiles), self.stride
        b = values.shape[0] // t
        values = values.reshape(b, t, *values.shape[1:])
        gh, gw = values.shape[-2:]
        out = values.new_zeros((b, *values.shape[2:-2], self.canvas[0] // s,
                                self.canvas[1] // s))
        for k, (y, x) in enumerate(self.tiles):
            out[..., y // s:y // s + gh, x // s:x // s + gw] = values[:, k]
        (oy, ox), (h, w) = (self.offset[0] // s, self.offset[1] // s), self.grid
        return out[..., oy:oy + h, ox:ox + w]


def plan_geometry(slice_size: Sequence[int], spacing: Sequence[float],
                  target: Sequence[float], input_size: Sequence[int],
                  stride: int) -> SliceGeometry:
    """The ``SliceGeometry`` of slices of ``slice_size`` at ``spacing`` mm for a model with
    ``input_size`` (stride multiples) trained at ``target`` mm (module docstring)."""
    size = (int(slice_size[0]), int(slice_size[1]))
    inp = (int(input_size[0]), int(input_size[1]))
    res = resampled_size(size, spacing, target)
    canvas = tuple(max(i, math.ceil(r / stride) * stride) for i, r in zip(inp, res, strict=True))
    offset = tuple((c - r) // 2 // stride * stride for c, r in zip(canvas, res, strict=True))
    tiles = tuple((y, x) for y in _starts(canvas[0], inp[0], stride)
                  for x in _starts(canvas[1], inp[1], stride))
    return SliceGeometry(size, res, canvas, offset, tiles, inp, int(stride))  # type: ignore
