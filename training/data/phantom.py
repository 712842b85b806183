"""A CT-like abdominal phantom with ground truth: the sample scan and the demo's training data.

Eight organs with the Synapse class names and order (TransUNet's label map), placed in an
elliptical body with fat, muscle wall, spine and bowel gas; each organ is a smooth, randomly
deformed ellipsoid with a plausible contrast-enhanced Hounsfield value, soft texture,
partial-volume edges (the HU image is blurred before the noise) and scanner noise. Voxels are
anisotropic and the affine is a typical CT one (LPS-like: i towards the patient's left,
j posterior, k superior). Deterministic for a seed.

Arrays are in display order ``(k, j, i)`` = (slice, row, column), the order the napari reader
shows a NIfTI file in; ``to_nifti_order`` gives nibabel's ``(i, j, k)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

SYNAPSE_CLASSES: tuple[str, ...] = (
    "background", "aorta", "gallbladder", "left_kidney", "right_kidney",
    "liver", "pancreas", "spleen", "stomach",
)
# Colours as TransUNet/Synapse figures draw them (r, g, b in 0..1); background unused.
SYNAPSE_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 1.0),
    (1.0, 0.0, 1.0), (1.0, 1.0, 0.0), (0.5, 0.0, 1.0), (1.0, 0.5, 0.0),
)


@dataclass(frozen=True)
class _Organ:
    """An organ as a deformed ellipsoid in normalised coordinates.

    ``u`` runs from the patient's right (0) to left (1) across columns, ``v`` from anterior (0)
    to posterior (1) down rows, ``z`` from inferior (0) to superior (1) over slices.
    """

    label: int
    centre: tuple[float, float, float]  # (u, v, z)
    radii: tuple[float, float, float]
    angle: float  # in-plane rotation, degrees
    hu: float
    texture: float = 8.0


# Drawn in this order; later organs win where two overlap (small ones last).
_ORGANS: tuple[_Organ, ...] = (
    _Organ(5, (0.30, 0.42, 0.72), (0.20, 0.20, 0.42), 20.0, 105.0, 10.0),   # liver
    _Organ(8, (0.64, 0.36, 0.78), (0.12, 0.09, 0.22), -25.0, 35.0, 12.0),   # stomach
    _Organ(7, (0.76, 0.60, 0.74), (0.06, 0.10, 0.20), 30.0, 120.0, 8.0),    # spleen
    _Organ(4, (0.33, 0.70, 0.40), (0.055, 0.085, 0.22), -15.0, 170.0, 15.0),  # right kidney
    _Organ(3, (0.67, 0.70, 0.45), (0.055, 0.085, 0.22), 15.0, 170.0, 15.0),   # left kidney
    _Organ(6, (0.55, 0.55, 0.52), (0.15, 0.035, 0.12), -10.0, 90.0, 10.0),  # pancreas
    _Organ(2, (0.38, 0.43, 0.50), (0.045, 0.06, 0.12), 10.0, 12.0, 4.0),    # gallbladder
    _Organ(1, (0.53, 0.66, 0.50), (0.035, 0.035, 0.60), 0.0, 220.0, 5.0),   # aorta
)


@dataclass
class Phantom:
    """One generated scan. ``image`` int16 HU and ``labels`` uint8 in (slice, row, col) order."""

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]  # mm, (slice, row, col) order
    affine: np.ndarray  # 4x4 voxel (i, j, k) -> world (mm), NIfTI order
    seed: int
    class_names: tuple[str, ...] = SYNAPSE_CLASSES
    class_colors: tuple[tuple[float, float, float], ...] = field(default=SYNAPSE_COLORS)

    def to_nifti_order(self, array: np.ndarray) -> np.ndarray:
        """(k, j, i) display order -> nibabel's (i, j, k)."""
        return np.ascontiguousarray(array.transpose(2, 1, 0))


def phantom_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]):
    """A CT scanner's affine for a (k, j, i) array: i -> patient left, j -> posterior, k up.

    In RAS+ world coordinates (NIfTI's) that is ``diag(-di, -dj, dk)``, centred on the origin.
    """
    dk, dj, di = spacing
    nk, nj, ni = shape
    affine = np.diag([-di, -dj, dk, 1.0])
    affine[:3, 3] = [di * (ni - 1) / 2, dj * (nj - 1) / 2, -dk * (nk - 1) / 2]
    return affine


def _smooth_field(rng: np.random.Generator, shape, sigma) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise: the organs' shape and texture variation."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (f - f.mean()) / (f.std() + 1e-8)


def make_phantom(
    seed: int = 0,
    shape: tuple[int, int, int] = (40, 160, 160),
    spacing: tuple[float, float, float] = (3.0, 2.2, 2.2),
    noise_hu: float = 12.0,
) -> Phantom:
    """Generate an abdominal CT phantom and its 8-organ truth, deterministic for ``seed``.

    Args:
        seed: random seed; the shipped checkpoint was trained on seeds >= 100, the sample is 0.
        shape: (slices, rows, columns).
        spacing: voxel size in mm, same order (anisotropic like clinical CT: thick slices).
        noise_hu: standard deviation of the scanner noise in HU.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    z, v, u = np.meshgrid(
        (np.arange(nz) + 0.5) / nz, (np.arange(ny) + 0.5) / ny, (np.arange(nx) + 0.5) / nx,
        indexing="ij",
    )
    # Physical aspect: keep organs round in mm whatever the grid.
    aspect = (shape[2] * spacing[2]) / (shape[1] * spacing[1])
    coarse = (max(nz // 4, 2), max(ny // 8, 2), max(nx // 8, 2))
    shape_noise = [
        ndimage.zoom(_smooth_field(rng, coarse, 1.0), np.divide(shape, coarse), order=1)
        for _ in range(3)
    ]

    hu = np.full(shape, -1000.0, dtype=np.float32)  # air
    labels = np.zeros(shape, dtype=np.uint8)
    body_r = (0.44 + rng.uniform(-0.02, 0.02), 0.34 / aspect + rng.uniform(-0.02, 0.02))
    body = ((u - 0.5) / body_r[0]) ** 2 + ((v - 0.52) / body_r[1]) ** 2 + 0.03 * shape_noise[0]
    hu[body < 1.0] = -100.0  # subcutaneous fat
    hu[body < 0.86] = 50.0  # muscle wall
    hu[body < 0.78] = 5.0 + 15.0 * shape_noise[1][body < 0.78]  # mesenteric soft tissue

    # Bowel gas pockets and fat between the organs.
    gas = _smooth_field(rng, shape, (1.0, 4.0, 4.0))
    hu[(body < 0.7) & (gas > 2.0)] = -850.0
    hu[(body < 0.7) & (gas < -1.6)] = -90.0

    # Spine: vertebral body with a brighter cortex, behind the aorta.
    spine = ((u - 0.5) / 0.07) ** 2 + ((v - 0.79) / (0.07 * aspect)) ** 2
    hu[spine < 1.0] = 700.0
    hu[spine < 0.6] = 250.0

    for organ in _ORGANS:
        jitter = rng.uniform(-0.025, 0.025, 3)
        cu, cv, cz = np.add(organ.centre, jitter)
        ru, rv, rz = np.multiply(organ.radii, rng.uniform(0.88, 1.12, 3))
        rv /= aspect
        theta = np.deg2rad(organ.angle + rng.uniform(-8, 8))
        du, dv = u - cu, v - cv
        a = (du * np.cos(theta) + dv * np.sin(theta)) / ru
        b = (-du * np.sin(theta) + dv * np.cos(theta)) / rv
        wobble = 0.18 if organ.label != 1 else 0.03  # the aorta stays a tube
        f = a**2 + b**2 + ((z - cz) / rz) ** 2 + wobble * shape_noise[organ.label % 3]
        mask = (f < 1.0) & (body < 0.76)
        texture = organ.texture * _smooth_field(rng, shape, (0.8, 1.5, 1.5))
        hu[mask] = organ.hu + rng.uniform(-10, 10) + texture[mask]
        labels[mask] = organ.label
        if organ.label == 8:  # gas cap in the stomach's anterior part, still stomach
            cap = mask & (b < -0.65)
            hu[cap] = -800.0

    # Partial-volume edges (blur, thicker across slices), then quantum noise.
    hu = ndimage.gaussian_filter(hu, sigma=(0.6, 0.7, 0.7))
    hu += noise_hu * rng.standard_normal(shape).astype(np.float32)
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return Phantom(
        image=image,
        labels=labels,
        spacing=tuple(float(s) for s in spacing),
        affine=phantom_affine(shape, spacing),
        seed=seed,
    )
