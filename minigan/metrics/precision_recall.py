"""Improved precision and recall (Kynkaanniemi et al. 2019, "Improved Precision
and Recall Metric for Assessing Generative Models").

Each set of feature vectors estimates its distribution's support as a union of
balls: around every sample phi, a ball whose radius is the distance from phi to
its k-th nearest neighbour in the same set (excluding phi itself; k = 3 as in the
paper). Then, with f(x, S) = 1 when x lies in some ball of S:

    precision = mean over fake x of f(x, real manifold)   -- are samples realistic?
    recall    = mean over real x of f(x, fake manifold)   -- is every mode covered?

Both lie in [0, 1], higher is better. A collapsed generator (a few distinct
outputs) keeps its precision but its recall falls towards 0: its balls have
radius 0 around the repeated images and cover almost no real sample.

Feature space: 16x16 thumbnails (768 dims), see
:func:`minigan.metrics.features.thumbnail_features` for why not Inception.
All pairwise distances are computed in blocks of rows (float32,
||a||^2 - 2ab + ||b||^2): a 10k x 10k comparison never holds more than a 16 MB
block (about 400 x 10k).
"""
from __future__ import annotations

from minigan.backend import array_module, to_numpy
from minigan.metrics.features import (array_module_of, canonical_rows, chunks, distance_rows,
                                      nearest_neighbour_search, squared_distances, squared_norms,
                                      thumbnail_features)


def manifold_radii(feats, k: int = 3):
    """Squared radius of every sample's ball: squared distance to its k-th nearest
    neighbour in the same set, itself excluded. feats (N, D) -> (N,) float32."""
    _, dists = nearest_neighbour_search(feats, feats, k=k, exclude_self=True)  # (N, k)
    return dists[:, k - 1]


def precision_recall_features(real_feats, fake_feats, k: int = 3) -> dict:
    """Improved precision and recall of feature sets real (N, D) and fake (M, D).

    One pass over blocks of fake rows computes the fake-real distances once and
    uses them both ways: a fake row is inside the real manifold if it is within
    some real radius (precision); a real column is inside the fake manifold if some
    fake row is within that fake's radius (recall).
    """
    xp = array_module(real_feats)
    real_r2 = manifold_radii(real_feats, k)              # (N,)
    fake_r2 = manifold_radii(fake_feats, k)              # (M,)
    real_sq = squared_norms(real_feats)                  # (N,)
    fake_in_real = xp.zeros(fake_feats.shape[0], dtype=bool)   # (M,)
    real_in_fake = xp.zeros(real_feats.shape[0], dtype=bool)   # (N,)
    for rows in chunks(fake_feats.shape[0], distance_rows(real_feats.shape[0])):
        d = squared_distances(fake_feats[rows], real_feats, b_sq=real_sq)  # (b, N)
        fake_in_real[rows] = (d <= real_r2[None, :]).any(axis=1)
        real_in_fake |= (d <= fake_r2[rows, None]).any(axis=0)
    return {"precision": float(to_numpy(fake_in_real.mean())),
            "recall": float(to_numpy(real_in_fake.mean()))}


def precision_recall(real, fake, k: int = 3, max_images: int | None = None,
                     seed: int = 0) -> dict:
    """Improved precision and recall (k-NN manifolds, k = 3) of two image sets.

    real, fake: uint8 (N, H, W, 3) or float (N, 3, H, W) in [-1, 1], sides a
    multiple of 16. Features are 16x16 thumbnails (768 dims).
    max_images: if given, each set larger than this is replaced by a random subset
    of that size (chosen by ``seed``, independent of image order); None uses all.
    The features are put in canonical order first, so the result does not depend on
    the order of the images.
    returns {"precision": float, "recall": float}.
    """
    array_module_of(real, fake)
    real_feats = canonical_rows(thumbnail_features(real), max_images, seed)
    fake_feats = canonical_rows(thumbnail_features(fake), max_images, seed + 1)
    return precision_recall_features(real_feats, fake_feats, k)

