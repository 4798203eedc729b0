"""Memorisation: nearest training images in pixel space, and the figure."""
import numpy as np
import pytest
from PIL import Image

from minigan.imageio import to_float
from minigan.metrics.memorization import memorization, memorization_figure, nearest_neighbours
from tests.metrics.synthetic import blobs

TRAIN = blobs(60, seed=1)


def test_copies_of_training_images_are_at_distance_zero():
    picks = np.array([5, 17, 17, 42, 0])
    indices, distances = nearest_neighbours(TRAIN, TRAIN[picks])
    np.testing.assert_array_equal(indices, picks)
    np.testing.assert_array_equal(distances, 0.0)       # exactly 0, not float32 rounding
    stats = memorization(TRAIN, TRAIN[picks], threshold=0.05)
    assert stats["min"] == stats["median"] == stats["mean"] == 0.0
    assert stats["fraction_below"] == 1.0


def test_matches_brute_force_rms_distance():
    gen = blobs(25, seed=2)
    t, g = to_float(TRAIN).reshape(60, -1).astype(np.float64), to_float(gen).reshape(25, -1)
    rms = np.sqrt(((g[:, None, :] - t[None]) ** 2).mean(axis=2))    # (25, 60)
    indices, distances = nearest_neighbours(TRAIN, gen)
    np.testing.assert_array_equal(indices, rms.argmin(axis=1))
    np.testing.assert_allclose(distances, rms.min(axis=1), rtol=1e-6)
    stats = memorization(TRAIN, gen, threshold=0.25)
    assert stats["median"] == pytest.approx(np.median(rms.min(axis=1)), rel=1e-6)
    assert stats["fraction_below"] == pytest.approx((rms.min(axis=1) < 0.25).mean())
    # A new draw from the same distribution is not a copy.
    assert stats["min"] > 0.05


def test_order_of_training_images_only_relabels():
    gen = blobs(10, seed=2)
    perm = np.random.default_rng(0).permutation(60)
    i1, d1 = nearest_neighbours(TRAIN, gen)
    i2, d2 = nearest_neighbours(TRAIN[perm], gen)
    np.testing.assert_array_equal(perm[i2], i1)
    np.testing.assert_array_equal(d1, d2)


def test_subsampled_generated_set_is_order_independent():
    gen = blobs(40, seed=2)
    perm = np.random.default_rng(1).permutation(40)
    a = memorization(TRAIN, gen, max_generated=15, seed=3)
    assert memorization(TRAIN, gen[perm], max_generated=15, seed=3) == a
    assert memorization(TRAIN, gen, max_generated=15, seed=4) != a


def test_figure(tmp_path):
    gen = np.concatenate([blobs(6, seed=2), TRAIN[[7]]])      # one memorised image
    path = tmp_path / "sub" / "nn.png"
    grid = memorization_figure(TRAIN, gen, path, n=4)
    assert path.exists()
    with Image.open(path) as im:
        assert im.size == (4 * (32 + 2) + 2, 2 * (32 + 2) + 2)
        saved = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(saved, grid)
    # Closest first: the copy of training image 7 sits top-left, its original under it.
    np.testing.assert_array_equal(grid[2:34, 2:34], TRAIN[7])
    np.testing.assert_array_equal(grid[36:68, 2:34], TRAIN[7])
