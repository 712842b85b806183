"""``SliceDataset``: 2-D slices -> (3, H, W) float tensors and (H, W) long targets.

Two ways to the model's input size: a slice without a pixel size (or a run without a target
pixel size) is resized to it, as TransUNet does; a slice with one, in a run with
``target_spacing``, is resampled to that pixel size (``training.data.physical_scale.resample``,
as inference does) and a window of the input size is cut from it, or it is padded into one
(docs/design.md, "Physical scale"). The window is centred on a voxel of a foreground class
``foreground_oversample`` of the time (nnU-Net's foreground oversampling; the class drawn
uniformly among those present, so a rare class is centred as often as a large one).

With ``slice_context`` the input is the slice between its neighbours (channels: the slice
before, the slice, the slice after; docs/design.md, "Slice context"), every channel
transformed alike; the neighbours swap places half the time when augmenting, so the model
does not learn which way the stack runs (scans open with their slices in either order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .cases import Slice
from .physical_scale import resample, resampled_size
from .transforms import SCALED, augment_pair, random_zoom, resize_pair


def fit_window(image: np.ndarray, label: np.ndarray, size: tuple[int, int],
               rng: np.random.Generator | None, focus: tuple[int, int] | None = None):
    """A ``size`` window of a slice: cut (around ``focus`` when given, else at random; the
    centre without ``rng``) where the slice is larger, padded with 0 (placed at random; in
    the middle without ``rng``) where it is smaller."""
    out_img = np.zeros((*image.shape[:-2], *size), np.float32)
    out_lab = np.zeros(size, label.dtype)
    src, dst = [], []
    for n, w, f in zip(label.shape, size, focus or (None, None), strict=True):
        if n <= w:
            start = (w - n) // 2 if rng is None else int(rng.integers(0, w - n + 1))
            src.append(slice(0, n))
            dst.append(slice(start, start + n))
        else:
            if f is not None:
                jitter = 0 if rng is None else int(rng.integers(-w // 4, w // 4 + 1))
                start = int(np.clip(f - w // 2 + jitter, 0, n - w))
            else:
                start = (n - w) // 2 if rng is None else int(rng.integers(0, n - w + 1))
            src.append(slice(start, start + w))
            dst.append(slice(0, w))
    out_img[(..., *dst)] = image[(..., *src)]
    out_lab[tuple(dst)] = label[tuple(src)]
    return out_img, out_lab


def foreground_focus(label: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """A random voxel of a foreground class drawn uniformly among those present (None: no
    foreground)."""
    classes = np.unique(label)
    classes = classes[classes > 0]
    if not classes.size:
        return None
    ys, xs = np.nonzero(label == rng.choice(classes))
    k = int(rng.integers(0, ys.size))
    return int(ys[k]), int(xs[k])


class SliceDataset(Dataset):
    """Augments (optionally), resizes to ``input_size`` and repeats the grey slice to channels
    (with ``slice_context``: stacks it between its neighbours).

    Augmentation draws from a generator seeded by ``(seed, epoch, index)`` so a run is
    reproducible whatever the worker count; call ``set_epoch`` each epoch.
    """

    def __init__(self, slices: Sequence[Slice], input_size: tuple[int, int],
                 augment: str = "transunet", in_channels: int = 3, seed: int = 0,
                 target_spacing: tuple[float, float] | None = None,
                 foreground_oversample: float = 0.33, slice_context: bool = False):
        if not slices:
            raise ValueError("No training slices: give at least one annotated slice")
        self.slices = list(slices)
        self.input_size = tuple(input_size)
        self.augment = augment
        self.in_channels = in_channels
        self.seed = seed
        self.target_spacing = None if target_spacing is None else tuple(target_spacing)
        self.foreground_oversample = foreground_oversample
        self.slice_context = slice_context
        if slice_context and in_channels != 3:
            raise ValueError(f"slice context needs a 3-channel model, this one takes "
                             f"{in_channels}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.slices[index]
        image, label = self._image(s, index), s.label
        if self.target_spacing is not None and s.spacing is not None:
            image, label = self._physical(s, image, index)
        else:
            if self.augment != "none":
                rng = np.random.default_rng((self.seed, self.epoch, index))
                image, label = augment_pair(image, label, rng, self.augment)
            image, label = resize_pair(image, label, self.input_size)
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        x = x if x.ndim == 3 else x[None].expand(self.in_channels, -1, -1)
        return x.contiguous(), torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))

    def _image(self, s: Slice, index: int) -> np.ndarray:
        """The slice, or (with slice context) the (3, H, W) stack around it, the neighbours
        swapped half the time when augmenting."""
        if not self.slice_context:
            return s.image
        before, after = s.neighbours or (s.image, s.image)
        if self.augment != "none" and np.random.default_rng(
                (self.seed, self.epoch, index, 1)).random() < 0.5:
            before, after = after, before
        return np.stack([before, s.image, after]).astype(np.float32, copy=False)

    def _physical(self, s: Slice, image: np.ndarray,
                  index: int) -> tuple[np.ndarray, np.ndarray]:
        """Resample to the target pixel size (times the scale augmentation's zoom), augment,
        and cut or pad an input-sized window (module docstring)."""
        rng = np.random.default_rng((self.seed, self.epoch, index))
        zoom = random_zoom(rng) if self.augment in SCALED and rng.random() > 0.5 else 1.0
        size = resampled_size(s.image.shape, s.spacing, self.target_spacing, zoom)
        stack = np.ascontiguousarray(image, np.float32).reshape(-1, *s.image.shape)
        image = resample(torch.from_numpy(stack)[None], size)[0].numpy()
        image = image if image.shape[0] > 1 else image[0]
        label = resample(torch.from_numpy(np.ascontiguousarray(s.label).astype(np.int64))[
            None, None], size, labels=True)[0, 0].numpy().astype(s.label.dtype)
        if self.augment != "none":
            image, label = augment_pair(image, label, rng, self.augment, zoom=False)
        focus = (foreground_focus(label, rng) if rng.random() < self.foreground_oversample
                 else None)
        return fit_window(image, label, self.input_size,
                          None if self.augment == "none" else rng, focus)
