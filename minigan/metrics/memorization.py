"""Memorisation: how close does each generated image come to a training image?

On ~100 training images a GAN can reproduce training images instead of making
new ones, and none of SWD, precision/recall or NDB would notice (a copy of the
training set scores perfectly). The check that does: for every generated image,
the distance to its nearest training image in pixel space,

    d(g) = min_t ||g - t||_2 / sqrt(3 H W)      (images as float in [-1, 1])

i.e. the root-mean-square per-pixel difference, in [0, 2]; 0 is an exact copy,
and 0.1 is about 13 grey levels (of 255) RMS. Reported: min, median and mean of
d over the generated images and the fraction with d below a threshold, plus a
figure of generated images above their nearest training images to look at.
"""
from __future__ import annotations

import numpy as np

from minigan.backend import array_module, to_numpy
from minigan.imageio import make_grid, save_png, to_uint8
from minigan.metrics.features import (array_module_of, as_float_images, canonical_rows, chunks,
                                      nearest_neighbour_search)

DEFAULT_THRESHOLD = 0.1   # RMS per-pixel distance, [-1, 1] units (~13/255)


def _flat(images):
    """Images -> float32 (N, 3 * H * W) in [-1, 1], on their device."""
    x = as_float_images(images)
    return x.reshape(x.shape[0], -1)


def _rows(x, indices):
    """x[indices] with host indices, on x's device."""
    return x[array_module(x).asarray(indices)]


def nearest_neighbours(train, generated):
    """Nearest training image of every generated image, in pixel space.

    train (N, ...), generated (M, ...): uint8 (N, H, W, 3) or float (N, 3, H, W).
    returns (indices int64 (M,) into train, distances float64 (M,)) as NumPy arrays,
    distances normalised per pixel (RMS, see the module docstring).

    The search is exact, brute force over blocks of generated rows with the
    float32 ||a||^2 - 2ab + ||b||^2 trick; the distance of each chosen pair is then
    recomputed directly as sqrt(sum (g - t)^2), so an exact copy reports 0.0.
    """
    array_module_of(train, generated)
    t, g = _flat(train), _flat(generated)                           # (N, D), (M, D)
    if t.shape[1] != g.shape[1]:
        raise ValueError("training and generated images differ in size.")
    indices = nearest_neighbour_search(g, t)[0][:, 0]               # (M,)
    distances = np.empty(g.shape[0], dtype=np.float64)
    for rows in chunks(g.shape[0], 256):
        diff = g[rows] - t[indices[rows]]                           # (b, D)
        distances[rows] = to_numpy((diff * diff).sum(axis=1, dtype=np.float64))
    return to_numpy(indices), np.sqrt(distances / g.shape[1])


def memorization(train, generated, threshold: float = DEFAULT_THRESHOLD,
                 max_generated: int | None = None, seed: int = 0) -> dict:
    """Summary of nearest-training-image distances of the generated images.

    max_generated: if given and there are more generated images, a random subset of
    that many (chosen by ``seed``, independent of order) is measured against *all*
    training images (the cost is N_train x N_generated x 3HW).
    returns {"min", "median", "mean": distance stats, "fraction_below": share of
    generated images closer than ``threshold``, "threshold"}.
    """
    generated = as_float_images(generated)
    if max_generated is not None and generated.shape[0] > max_generated:
        generated = canonical_rows(generated, max_generated, seed)
    d = np.sort(nearest_neighbours(train, generated)[1])   # sorted: the mean is order-free
    return {"min": float(d.min()), "median": float(np.median(d)), "mean": float(d.mean()),
            "fraction_below": float((d < threshold).mean()), "threshold": float(threshold)}


def memorization_figure(train, generated, path, n: int = 8) -> np.ndarray:
    """Save a PNG: the ``n`` generated images closest to the training set in the top
    row (closest first), each one's nearest training image under it.

    Returns the uint8 grid that was saved: (2 (H + 2) + 2, n (W + 2) + 2, 3).
    """
    indices, distances = nearest_neighbours(train, generated)
    closest = np.argsort(distances, kind="stable")[:n]                       # (n,)
    top = to_uint8(_rows(as_float_images(generated), closest))               # (n, H, W, 3)
    bottom = to_uint8(_rows(as_float_images(train), indices[closest]))       # (n, H, W, 3)
    grid = make_grid(np.concatenate([top, bottom]), nrow=len(closest))
    save_png(grid, path)
    return grid
