"""Shared plumbing: image normalisation, canonical order, thumbnails, k-NN search."""
import numpy as np
import pytest

from minigan.imageio import to_float
from minigan.metrics.features import (as_float_images, canonical_order, canonical_rows,
                                      nearest_neighbour_search, squared_distances,
                                      thumbnail_features)
from tests.metrics.synthetic import blobs


def test_uint8_and_float_inputs_agree_exactly():
    u8 = blobs(6, size=16, seed=1)
    x = as_float_images(u8)
    assert x.dtype == np.float32 and x.shape == (6, 3, 16, 16) and x.flags.c_contiguous
    np.testing.assert_array_equal(x, to_float(u8))      # same mapping as minigan.imageio
    assert as_float_images(x) is x                      # float32 NCHW passes through, no copy


@pytest.mark.parametrize("bad, words", [
    (np.zeros((4, 16, 16), np.uint8), "4-d"),
    (np.zeros((4, 3, 16, 16), np.uint8), "(N, H, W, 3)"),
    (np.zeros((4, 16, 16, 3), np.float32), "(N, 3, H, W)"),
    (np.zeros((4, 3, 16, 16), np.int32), "dtype"),
])
def test_bad_layouts_are_named(bad, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        as_float_images(bad)


def test_canonical_order_ignores_input_order():
    x = as_float_images(blobs(50, size=16, seed=2))
    perm = np.random.default_rng(0).permutation(50)
    np.testing.assert_array_equal(x[canonical_order(x)], x[perm][canonical_order(x[perm])])
    # It is a real content order: not the identity on shuffled data.
    assert not np.array_equal(canonical_order(x[perm]), np.arange(50))


def test_canonical_rows_subsample_by_content():
    x = thumbnail_features(blobs(40, size=16, seed=3))
    perm = np.random.default_rng(1).permutation(40)
    a = canonical_rows(x, 10, seed=5)
    np.testing.assert_array_equal(a, canonical_rows(x[perm], 10, seed=5))
    assert a.shape == (10, 768)
    assert not np.array_equal(a, canonical_rows(x, 10, seed=6))           # another subset
    everything = canonical_rows(x)
    np.testing.assert_array_equal(everything, canonical_rows(x[perm], 50, seed=5))
    np.testing.assert_array_equal(everything, x[canonical_order(x)])


def test_thumbnails_are_block_means():
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    f = thumbnail_features(x, size=16)                                     # (2, 768)
    assert f.shape == (2, 768)
    expected = x.reshape(2, 3, 16, 2, 16, 2).mean(axis=(3, 5)).reshape(2, -1)
    np.testing.assert_allclose(f, expected, atol=1e-6)
    assert f[1, 3 * 256 - 1] == pytest.approx(x[1, 2, 30:, 30:].mean(), abs=1e-6)  # last pixel
    with pytest.raises(ValueError, match="multiples of 16"):
        thumbnail_features(np.zeros((1, 3, 24, 24), np.float32))


def test_squared_distances_and_knn_match_brute_force():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((30, 5)).astype(np.float32)
    b = rng.standard_normal((20, 5)).astype(np.float32)
    direct = ((a[:, None, :].astype(np.float64) - b[None]) ** 2).sum(-1)   # (30, 20)
    np.testing.assert_allclose(squared_distances(a, b), direct, rtol=1e-5, atol=1e-5)
    assert squared_distances(a, a).min() >= 0                              # clamped

    idx, d2 = nearest_neighbour_search(a, b, k=3)
    np.testing.assert_array_equal(idx, np.argsort(direct, axis=1)[:, :3])
    np.testing.assert_allclose(d2, np.sort(direct, axis=1)[:, :3], rtol=1e-5, atol=1e-5)

    self_direct = ((a[:, None, :].astype(np.float64) - a[None]) ** 2).sum(-1)
    np.fill_diagonal(self_direct, np.inf)
    idx, _ = nearest_neighbour_search(a, a, k=2, exclude_self=True)
    np.testing.assert_array_equal(idx, np.argsort(self_direct, axis=1)[:, :2])
