"""The generated abdominal CT phantom: deterministic, all organs, plausible HU, a CT affine."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.phantom import SYNAPSE_CLASSES, SYNAPSE_COLORS, make_phantom, phantom_affine

SMALL = (8, 48, 48)


@pytest.fixture(scope="module")
def default_phantom():
    return make_phantom(0)


def test_same_seed_gives_identical_arrays():
    a, b = make_phantom(7, shape=SMALL), make_phantom(7, shape=SMALL)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.seed == b.seed == 7


def test_different_seeds_differ():
    a, b = make_phantom(1, shape=SMALL), make_phantom(2, shape=SMALL)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.labels, b.labels)


def test_dtypes_and_shapes():
    p = make_phantom(3, shape=SMALL)
    assert p.image.dtype == np.int16
    assert p.labels.dtype == np.uint8
    assert p.image.shape == p.labels.shape == SMALL
    assert p.class_names == SYNAPSE_CLASSES
    assert len(p.class_names) == 9 and p.class_names[0] == "background"
    assert len(p.class_colors) == len(SYNAPSE_COLORS) == 9


def test_default_shape_has_all_eight_organs(default_phantom):
    p = default_phantom
    assert p.image.shape == (40, 160, 160)
    present = set(np.unique(p.labels).tolist())
    assert present == set(range(9))
    # Each organ is more than a few stray voxels.
    counts = np.bincount(p.labels.ravel(), minlength=9)
    assert (counts[1:] > 200).all(), counts
    # Liver is the largest organ, as in real abdominal CT.
    assert counts[5] == counts[1:].max()


def test_small_shape_still_has_all_organs():
    assert set(np.unique(make_phantom(1, shape=SMALL).labels).tolist()) == set(range(9))


def _mean_hu(p, label: int) -> float:
    return float(p.image[p.labels == label].astype(np.float64).mean())


def test_plausible_hounsfield_values(default_phantom):
    p = default_phantom
    assert 60 <= _mean_hu(p, 5) <= 160  # liver
    assert _mean_hu(p, 1) > 150  # aorta (contrast enhanced)
    assert 100 <= _mean_hu(p, 3) <= 250 and 100 <= _mean_hu(p, 4) <= 250  # kidneys
    assert 70 <= _mean_hu(p, 7) <= 170  # spleen
    assert -20 <= _mean_hu(p, 2) <= 60  # gallbladder: bile, near water
    assert 30 <= _mean_hu(p, 6) <= 140  # pancreas
    # Outside the body: air. The corners of every slice are outside the elliptical body.
    corners = p.image[:, :4, :4]
    assert corners.mean() < -900
    assert p.image.min() >= -1024 and p.image.max() <= 3071
    # The spine is bone: the brightest structure in the image.
    assert p.image.max() > 400


def test_affine_matches_spacing_and_ct_convention():
    spacing = (3.0, 2.2, 1.5)
    p = make_phantom(0, shape=SMALL, spacing=spacing)
    assert p.spacing == spacing
    assert p.affine.shape == (4, 4)
    dk, dj, di = spacing
    # i (columns) -> patient left = -x in RAS, j (rows) -> posterior = -y, k -> superior = +z.
    np.testing.assert_allclose(np.diag(p.affine), [-di, -dj, dk, 1.0])
    off = p.affine[:3, :3] - np.diag(np.diag(p.affine)[:3])
    assert not off.any()
    # Centred on the origin: the centre voxel maps to (0, 0, 0).
    nk, nj, ni = SMALL
    centre = p.affine @ np.array([(ni - 1) / 2, (nj - 1) / 2, (nk - 1) / 2, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    np.testing.assert_array_equal(p.affine, phantom_affine(SMALL, spacing))


def test_to_nifti_order_transposes():
    p = make_phantom(0, shape=(6, 40, 48))
    img = p.to_nifti_order(p.image)
    lab = p.to_nifti_order(p.labels)
    assert img.shape == lab.shape == (48, 40, 6)
    assert img.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(img, p.image.transpose(2, 1, 0))
    assert img[5, 7, 3] == p.image[3, 7, 5]
    assert lab.dtype == np.uint8 and img.dtype == np.int16


def test_noise_is_controllable():
    a = make_phantom(4, shape=SMALL, noise_hu=0.0)
    b = make_phantom(4, shape=SMALL, noise_hu=30.0)
    np.testing.assert_array_equal(a.labels, b.labels)
    liver_a = a.image[a.labels == 5].astype(float)
    liver_b = b.image[b.labels == 5].astype(float)
    assert liver_b.std() > liver_a.std()
