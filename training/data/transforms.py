"""TransUNet's training augmentation and resizing (its ``RandomGenerator``), on numpy slices.

Half the time a random rot90 + flip, else half the time a rotation within +-20 degrees; then
resize to the model input (image cubic, labels nearest). scipy.ndimage does the work.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def random_rot_flip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
    k = int(rng.integers(0, 4))
    axis = int(rng.integers(0, 2))
    image, label = np.rot90(image, k), np.rot90(label, k)
    return np.flip(image, axis).copy(), np.flip(label, axis).copy()


def random_rotate(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                  max_degrees: float = 20.0):
    angle = float(rng.uniform(-max_degrees, max_degrees))
    image = ndimage.rotate(image, angle, order=1, reshape=False, mode="nearest")
    label = ndimage.rotate(label, angle, order=0, reshape=False, mode="constant", cval=0)
    return image, label


def resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int]):
    """Image with cubic, labels with nearest interpolation, to ``size`` (H, W)."""
    if image.shape == tuple(size):
        return image, label
    factors = (size[0] / image.shape[0], size[1] / image.shape[1])
    image = ndimage.zoom(image, factors, order=3, mode="nearest", grid_mode=True)
    label = ndimage.zoom(label, factors, order=0, mode="nearest", grid_mode=True)
    return np.clip(image, 0.0, 1.0), label


AUGMENTATIONS = ("transunet", "rotate", "none")


def augment_pair(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                 mode: str = "transunet"):
    """``transunet``: rot90+flip or a small rotation or nothing (each as TransUNet draws them);
    ``rotate``: only the small rotation (keeps left and right apart, e.g. the two kidneys);
    ``none``: unchanged."""
    if mode == "none":
        return image, label
    if mode == "rotate":
        return random_rotate(image, label, rng) if rng.random() > 0.5 else (image, label)
    if rng.random() > 0.5:
        return random_rot_flip(image, label, rng)
    if rng.random() > 0.5:
        return random_rotate(image, label, rng)
    return image, label
