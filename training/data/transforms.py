"""TransUNet's training augmentation and resizing (its ``RandomGenerator``), on numpy slices.

Half the time a random rot90 + flip, else half the time a rotation within +-20 degrees; then
resize to the model input (image cubic, labels nearest). scipy.ndimage does the work.

Images are (H, W) or a (C, H, W) stack (a slice between its neighbours, for models with
slice context): every channel gets the same in-plane transform.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def random_rot_flip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
    k = int(rng.integers(0, 4))
    axis = int(rng.integers(0, 2))
    image, label = np.rot90(image, k, axes=(-2, -1)), np.rot90(label, k)
    return np.flip(image, axis - 2).copy(), np.flip(label, axis).copy()


def random_rotate(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                  max_degrees: float = 20.0):
    angle = float(rng.uniform(-max_degrees, max_degrees))
    image = ndimage.rotate(image, angle, axes=(image.ndim - 1, image.ndim - 2), order=1,
                           reshape=False, mode="nearest")
    label = ndimage.rotate(label, angle, order=0, reshape=False, mode="constant", cval=0)
    return image, label


def resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int]):
    """Image with cubic, labels with nearest interpolation, to ``size`` (H, W)."""
    if image.shape[-2:] == tuple(size):
        return image, label
    factors = (size[0] / label.shape[0], size[1] / label.shape[1])
    image = ndimage.zoom(image, (1,) * (image.ndim - 2) + factors, order=3, mode="nearest",
                         grid_mode=True)
    label = ndimage.zoom(label, factors, order=0, mode="nearest", grid_mode=True)
    return np.clip(image, 0.0, 1.0), label


SCALE_RANGE = (0.8, 1.25)  # zoom factors of the scale augmentation (log-uniform)


def random_zoom(rng: np.random.Generator, low: float = SCALE_RANGE[0],
                high: float = SCALE_RANGE[1]) -> float:
    """A zoom factor drawn log-uniformly in [low, high] (> 1 enlarges)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def zoom_about_centre(image: np.ndarray, label: np.ndarray, factor: float):
    """Enlarge (``factor`` > 1) or shrink the content about the slice centre, same shape:
    image linear (edges repeated), labels nearest (0 outside)."""
    centre = (np.asarray(label.shape, float) - 1) / 2
    matrix = np.eye(2) / factor
    offset = centre - matrix @ centre
    label = ndimage.affine_transform(label, matrix, offset, order=0, mode="constant", cval=0)
    lead = image.ndim - 2  # a (C, H, W) stack: the channel axis maps to itself
    image = ndimage.affine_transform(image, np.diag([1.0] * lead + [1 / factor] * 2),
                                     np.r_[np.zeros(lead), offset], order=1, mode="nearest")
    return image, label


def random_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast x[0.75, 1.25] about the mean, brightness +-0.1, gamma [0.7, 1.5] (nnU-Net's
    kinds of intensity augmentation), on a [0, 1] image; the result is clipped to [0, 1]."""
    image = np.asarray(image, np.float32)
    mean = float(image.mean())
    image = (image - mean) * rng.uniform(0.75, 1.25) + mean + rng.uniform(-0.1, 0.1)
    image = np.clip(image, 0.0, 1.0)
    return (image ** rng.uniform(0.7, 1.5)).astype(np.float32)


AUGMENTATIONS = ("transunet", "transunet_scale_intensity", "rotate", "rotate_scale_intensity",
                 "none")
# modes that draw a zoom (``random_zoom``)
SCALED = frozenset({"rotate_scale_intensity", "transunet_scale_intensity"})
# modes that flip, swapping left and right organs (never when fine-tuning on a few slices:
# ``l2gnet finetune --augment`` offers the others)
FLIPS = frozenset({"transunet", "transunet_scale_intensity"})


def augment_pair(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                 mode: str = "transunet", *, zoom: bool = True):
    """``transunet``: rot90+flip or a small rotation or nothing (each as TransUNet draws them);
    ``rotate``: only the small rotation (keeps left and right apart, e.g. the two kidneys);
    ``rotate_scale_intensity`` (fine-tuning): each half the time, the small rotation, a zoom
    in ``SCALE_RANGE`` (skipped with ``zoom=False``: the caller folds it into its resampling)
    and contrast/brightness/gamma; ``transunet_scale_intensity``: TransUNet's draw, then
    each half the time the zoom and contrast/brightness/gamma (a model trained with
    ``transunet`` keeps its orientation invariance and sees more sizes); ``none``:
    unchanged."""
    if mode == "none":
        return image, label
    if mode == "rotate":
        return random_rotate(image, label, rng) if rng.random() > 0.5 else (image, label)
    if mode == "rotate_scale_intensity":
        if rng.random() > 0.5:
            image, label = random_rotate(image, label, rng)
        if zoom and rng.random() > 0.5:
            image, label = zoom_about_centre(image, label, random_zoom(rng))
        if rng.random() > 0.5:
            image = random_intensity(image, rng)
        return image, label
    if mode == "transunet_scale_intensity":
        image, label = augment_pair(image, label, rng, "transunet")
        if zoom and rng.random() > 0.5:
            image, label = zoom_about_centre(image, label, random_zoom(rng))
        if rng.random() > 0.5:
            image = random_intensity(image, rng)
        return image, label
    if rng.random() > 0.5:
        return random_rot_flip(image, label, rng)
    if rng.random() > 0.5:
        return random_rotate(image, label, rng)
    return image, label
