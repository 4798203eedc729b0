"""Metrics: how good, how varied and how original are the generated images?

    sliced_wasserstein(real, fake)   SWD on Laplacian-pyramid patches (ProGAN):
                                     texture (finest level) to layout (16x16)
    precision_recall(real, fake)     improved precision/recall (k = 3): realism, coverage
    ndb(train, generated)            number of statistically different bins: mode collapse
    memorization(train, generated)   nearest-training-image distances: copying
    evaluate(real, fake)             all four, one flat dict of floats
    format_table(results)            that dict as an aligned text table

Every metric takes image sets as uint8 (N, H, W, 3) or float (N, 3, H, W) in
[-1, 1], NumPy or CuPy (it computes on the device the images are on); takes its
randomness from an explicit ``seed``; and gives the same result whatever order
the images come in. Precision/recall and NDB work on 16x16 thumbnails
(:mod:`minigan.metrics.features` says why), memorisation in pixel space.
"""
from __future__ import annotations

import time

from minigan.metrics.features import (array_module_of, as_float_images, canonical_order,
                                      canonical_rows, thumbnail_features)
from minigan.metrics.memorization import (memorization, memorization_figure,
                                          nearest_neighbours)
from minigan.metrics.ndb import jensen_shannon, kmeans, ndb, ndb_features, two_proportion_z_test
from minigan.metrics.precision_recall import precision_recall, precision_recall_features
from minigan.metrics.swd import (laplacian_pyramid, reconstruct_laplacian_pyramid,
                                 sliced_wasserstein)

__all__ = ["as_float_images", "canonical_order", "evaluate", "format_table", "jensen_shannon",
           "kmeans", "laplacian_pyramid", "memorization", "memorization_figure", "ndb",
           "ndb_features", "nearest_neighbours", "precision_recall", "precision_recall_features",
           "reconstruct_laplacian_pyramid", "sliced_wasserstein", "thumbnail_features",
           "two_proportion_z_test"]

MAX_NN_GENERATED = 1000   # evaluate() measures memorisation on at most this many generated images


def evaluate(real, fake, seed: int = 0, max_pr_images: int | None = None,
             max_nn_generated: int | None = MAX_NN_GENERATED,
             nn_threshold: float = 0.1, timings: dict | None = None) -> dict:
    """All four metrics of ``fake`` against ``real`` (the training set), as one flat dict.

    real, fake: uint8 (N, H, W, 3) or float (N, 3, H, W) in [-1, 1], same size,
    square, 16 times a power of two (16, 32, 64, 128), same device.

    Subsampling (the rest always uses every image):
    * ``max_pr_images``: precision/recall on at most this many images per set
      (None: all; 10k x 10k takes a few seconds on a CPU).
    * ``max_nn_generated``: the memorisation distances of at most this many
      generated images (default 1000, chosen by ``seed``), each against *every*
      training image: the search is 3HW-dimensional, and 10k x 10k at 64x64 would
      be 2.5 TFLOP (~30 CPU-seconds). The median/mean/fraction are estimates from
      that subset and ``nn_dist_min`` is the minimum over it. None measures all.

    returns floats: swd_<resolution> for each pyramid level (e.g. swd_64, swd_32,
    swd_16) and swd_mean (x 1e3, lower is better); precision, recall (higher is
    better); ndb, ndb_ratio, ndb_js (nats), ndb_bins; nn_dist_min, nn_dist_median,
    nn_dist_mean, nn_frac_below (share of generated images within ``nn_threshold``
    RMS of a training image).
    If ``timings`` is a dict, it receives the wall-clock seconds of each step
    ("features", "swd", "precision_recall", "ndb", "memorization", "total") and,
    under "<step>_cpu", the CPU seconds of this process (all threads) in it.
    """
    array_module_of(real, fake)
    timings = {} if timings is None else timings
    start = (time.perf_counter(), time.process_time())

    def timed(name, fn, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        timings[name] = time.perf_counter() - wall
        timings[name + "_cpu"] = time.process_time() - cpu
        return out

    def features():
        images = as_float_images(real), as_float_images(fake)
        return images, tuple(thumbnail_features(x) for x in images)

    (real, fake), (real_feats, fake_feats) = timed("features", features)
    swd = timed("swd", sliced_wasserstein, real, fake, seed=seed)
    pr = timed("precision_recall", precision_recall_features,
               canonical_rows(real_feats, max_pr_images, seed),
               canonical_rows(fake_feats, max_pr_images, seed + 1))
    bins = timed("ndb", ndb_features, real_feats, fake_feats, seed=seed)
    nn = timed("memorization", memorization, real, fake, threshold=nn_threshold,
               max_generated=max_nn_generated, seed=seed)
    timings["total"] = time.perf_counter() - start[0]
    timings["total_cpu"] = time.process_time() - start[1]

    results = {f"swd_{r}": v for r, v in swd["levels"].items()}
    results.update(swd_mean=swd["mean"], precision=pr["precision"], recall=pr["recall"],
                   ndb=float(bins["ndb"]), ndb_ratio=bins["ndb_ratio"], ndb_js=bins["js"],
                   ndb_bins=float(bins["n_bins"]), nn_dist_min=nn["min"],
                   nn_dist_median=nn["median"], nn_dist_mean=nn["mean"],
                   nn_frac_below=nn["fraction_below"])
    return {k: float(v) for k, v in results.items()}


def format_table(results: dict, title: str | None = None) -> str:
    """A dict of numbers as an aligned two-column text table (4 significant digits)."""
    rows = [(str(k), f"{v:.4g}" if isinstance(v, (int, float)) else str(v))
            for k, v in results.items()]
    rows.insert(0, ("metric", "value"))
    key_w = max(len(k) for k, _ in rows)
    val_w = max(len(v) for _, v in rows)
    lines = [f"{k:<{key_w}}  {v:>{val_w}}" for k, v in rows]
    lines.insert(1, "-" * (key_w + 2 + val_w))
    if title:
        lines.insert(0, title)
    return "\n".join(lines)
