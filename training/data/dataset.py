"""``SliceDataset``: 2-D slices -> (3, H, W) float tensors and (H, W) long targets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .cases import Slice
from .transforms import augment_pair, resize_pair


class SliceDataset(Dataset):
    """Augments (optionally), resizes to ``input_size`` and repeats the grey slice to channels.

    Augmentation draws from a generator seeded by ``(seed, epoch, index)`` so a run is
    reproducible whatever the worker count; call ``set_epoch`` each epoch.
    """

    def __init__(self, slices: Sequence[Slice], input_size: tuple[int, int],
                 augment: str = "transunet", in_channels: int = 3, seed: int = 0):
        if not slices:
            raise ValueError("No training slices: give at least one annotated slice")
        self.slices = list(slices)
        self.input_size = tuple(input_size)
        self.augment = augment
        self.in_channels = in_channels
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.slices[index]
        image, label = s.image, s.label
        if self.augment != "none":
            rng = np.random.default_rng((self.seed, self.epoch, index))
            image, label = augment_pair(image, label, rng, self.augment)
        image, label = resize_pair(image, label, self.input_size)
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
        return x.expand(self.in_channels, -1, -1).contiguous(), torch.from_numpy(
            np.ascontiguousarray(label).astype(np.int64))
