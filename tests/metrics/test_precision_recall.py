"""Improved precision and recall (k-NN manifolds)."""
import numpy as np
import pytest

from minigan.imageio import to_float
from minigan.metrics.precision_recall import (manifold_radii, precision_recall,
                                              precision_recall_features)
from tests.metrics.synthetic import blobs, collapsed, stripes

N = 200
PALETTE = (0.0, 0.45)                      # a disjoint set uses (0.55, 1): see test_synthetic
REAL = blobs(N, seed=1, palette=PALETTE)


def test_hand_computed_one_dimensional_case():
    # Real points 0, 1, 2, 3: with k = 1 every real ball has radius 1.
    # Fakes 0.5 (inside), 5 (2 from the nearest real: outside), 2.9 (inside) -> precision 2/3.
    # Fake radii (k = 1): 0.5 -> 2.4, 5 -> 2.1, 2.9 -> 2.1; every real point lies
    # within 2.4 of 0.5 -> recall 1.
    real = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    fake = np.array([[0.5], [5.0], [2.9]], np.float32)
    np.testing.assert_allclose(manifold_radii(real, k=1), [1, 1, 1, 1], rtol=1e-5)
    np.testing.assert_allclose(manifold_radii(fake, k=1), [2.4 ** 2, 2.1 ** 2, 2.1 ** 2],
                               rtol=1e-5)
    assert precision_recall_features(real, fake, k=1) == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0})
    # Without 0.5: fakes 5 (out) and 2.9 (in) -> precision 1/2; both radii are 2.1, so
    # real 0 (2.9 from the nearest fake) is outside and 1, 2, 3 inside -> recall 3/4.
    assert precision_recall_features(real, fake[1:], k=1) == pytest.approx(
        {"precision": 0.5, "recall": 0.75})
    # k = 3 (the default) needs 4 points per set; radii are then the farthest other point.
    np.testing.assert_allclose(manifold_radii(real, k=3), [9, 4, 4, 9], rtol=1e-5)


def test_same_distribution_scores_high():
    pr = precision_recall(REAL, blobs(N, seed=2, palette=PALETTE))
    assert pr["precision"] > 0.6 and pr["recall"] > 0.6


def test_disjoint_distribution_scores_zero():
    pr = precision_recall(REAL, stripes(N, seed=3, palette=(0.55, 1.0)))
    assert pr["precision"] < 0.05 and pr["recall"] < 0.05


def test_collapse_destroys_recall():
    one = blobs(N, seed=2, palette=PALETTE)[0]
    pr = precision_recall(REAL, collapsed(one, N))
    assert pr["recall"] < 0.05
    # The collapsed set's only image is a plausible one: it would be counted as
    # realistic whenever it falls in the real manifold, i.e. precision is all or nothing.
    assert pr["precision"] in (0.0, 1.0)


def test_order_invariance_subsampling_and_determinism():
    fake = blobs(N, seed=2, palette=PALETTE)
    rng = np.random.default_rng(0)
    ref = precision_recall(REAL, fake, max_images=120, seed=3)
    assert precision_recall(REAL[rng.permutation(N)], fake[rng.permutation(N)],
                            max_images=120, seed=3) == ref
    assert precision_recall(REAL, fake, max_images=120, seed=3) == ref
    assert precision_recall(REAL, fake, max_images=120, seed=4) != ref   # another subset
    assert precision_recall(to_float(REAL), to_float(fake)) == precision_recall(REAL, fake)
