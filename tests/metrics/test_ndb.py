"""Number of statistically different bins: the z-test, JS, k-means and the metric."""
import math

import numpy as np
import pytest

from minigan.metrics.ndb import default_bins, jensen_shannon, kmeans, ndb, two_proportion_z_test
from tests.metrics.synthetic import blobs, collapsed, stripes

N = 200
PALETTE = (0.0, 0.45)
TRAIN = blobs(N, seed=1, palette=PALETTE)


def test_z_test_hand_computed():
    # 30/100 vs 50/100: pooled p = 0.4, se = sqrt(0.4 * 0.6 * (1/100 + 1/100)) = 0.069282,
    # z = -0.2 / se = -2.886751, two-sided p = erfc(2.886751 / sqrt 2) = 0.0038924.
    z, p = two_proportion_z_test([30], 100, [50], 100)
    assert z[0] == pytest.approx(-2.886751, abs=1e-6)
    assert p[0] == pytest.approx(0.0038924, abs=1e-7)
    # 10/100 vs 10/200: pooled 20/300, se = sqrt(p (1 - p) (1/100 + 1/200)) = 0.030551,
    # z = 0.05 / se = 1.636634, p = 0.10171 (normal tables): not significant at 0.05.
    z, p = two_proportion_z_test([10], 100, [10], 200)
    assert z[0] == pytest.approx(1.636634, abs=1e-6) and p[0] == pytest.approx(0.10171, abs=1e-5)
    # Zero variance (both 0 %, both 100 %): no evidence of a difference, not a division by 0.
    z, p = two_proportion_z_test([0, 100], 100, [0, 50], 50)
    np.testing.assert_array_equal(z, [0, 0])
    np.testing.assert_array_equal(p, [1, 1])


def test_jensen_shannon_hand_computed():
    # P = (1/2, 1/2), Q = (1, 0), M = (3/4, 1/4):
    # KL(P||M) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3), KL(Q||M) = ln(4/3) -> JS = 3/4 ln(4/3).
    assert jensen_shannon([1, 1], [2, 0]) == pytest.approx(0.75 * math.log(4 / 3), abs=1e-12)
    assert jensen_shannon([2, 0], [1, 1]) == pytest.approx(0.75 * math.log(4 / 3), abs=1e-12)
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(math.log(2), abs=1e-12)  # nats
    assert jensen_shannon([3, 5, 2], [6, 10, 4]) == pytest.approx(0.0, abs=1e-12)


def test_default_bins():
    assert [default_bins(n) for n in (5, 20, 100, 499, 10_000)] == [2, 2, 10, 49, 50]


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(0)
    truth = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    labels_true = rng.integers(0, 3, 300)
    x = (truth[labels_true] + rng.normal(0, 0.5, (300, 2))).astype(np.float32)
    centres, labels = kmeans(x, 3, seed=1)
    # Each true cluster is exactly one k-means cluster, and the centres are its mean.
    mapping = {t: set(labels[labels_true == t].tolist()) for t in range(3)}
    assert all(len(m) == 1 for m in mapping.values())
    assert len(set.union(*mapping.values())) == 3
    for t, (label,) in mapping.items():
        np.testing.assert_allclose(centres[label], x[labels_true == t].mean(axis=0), atol=1e-4)
    same_centres, same_labels = kmeans(x, 3, seed=1)
    np.testing.assert_array_equal(same_labels, labels)
    np.testing.assert_array_equal(same_centres, centres)


def test_kmeans_with_fewer_distinct_points_than_clusters():
    x = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]], np.float32), 10, axis=0)
    centres, labels = kmeans(x, 4, seed=0)
    assert centres.shape == (4, 2) and np.isfinite(centres).all()
    assert len(set(labels[:10].tolist())) == 1 and labels[0] != labels[-1]


def test_same_distribution_has_few_different_bins():
    result = ndb(TRAIN, blobs(N, seed=2, palette=PALETTE))
    assert result["n_bins"] == 20
    assert result["ndb_ratio"] <= 0.2 and result["js"] < 0.1


def test_disjoint_and_collapsed_sets_differ_in_most_bins():
    same = ndb(TRAIN, blobs(N, seed=2, palette=PALETTE))
    disjoint = ndb(TRAIN, stripes(N, seed=3, palette=(0.55, 1.0)))
    one = collapsed(blobs(N, seed=2, palette=PALETTE)[0], N)
    mode_collapse = ndb(TRAIN, one)
    for result in (disjoint, mode_collapse):
        assert result["ndb_ratio"] >= 0.6
        assert result["js"] > 5 * same["js"]
        assert result["ndb"] == round(result["ndb_ratio"] * result["n_bins"])


def test_order_invariance_and_determinism():
    gen = blobs(N, seed=2, palette=PALETTE)
    rng = np.random.default_rng(0)
    ref = ndb(TRAIN, gen, seed=3)
    assert ndb(TRAIN[rng.permutation(N)], gen[rng.permutation(N)], seed=3) == ref
    assert ndb(TRAIN, gen, seed=3) == ref
    assert ndb(TRAIN, gen, n_bins=7, seed=3)["n_bins"] == 7
