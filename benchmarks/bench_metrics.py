"""Time minigan.metrics.evaluate() on two large image sets (default 10,000 vs 10,000 at 64x64).

    python benchmarks/bench_metrics.py                   # 10k vs 10k, 64x64, CPU
    python benchmarks/bench_metrics.py --n 2000 --size 32 --runs 3

The images are "random-ish": 2-5 soft coloured blobs per image on a coloured
background plus a little pixel noise, uint8 (N, 64, 64, 3) like a loaded image
folder; the fake set draws its blobs a bit larger and more saturated, so every
metric has something to measure. Prints seconds per metric (best of --runs) with
napkin math: the floating-point work of the three big computations (SWD
projections, the k-NN distance blocks, the pixel-space nearest neighbours) and
the rate achieved, next to the time. Then the metric values, as a table.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from minigan.metrics import MAX_NN_GENERATED, evaluate, format_table
from minigan.metrics.features import FEATURE_SIZE, cpu_threads
from minigan.metrics.swd import PATCH_SIZE, pyramid_resolutions


def random_blobs(n: int, size: int, seed: int, blob_scale: float = 1.0,
                 saturation: float = 1.0) -> np.ndarray:
    """n images of 2-5 soft coloured blobs: uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(seed)
    coords = np.arange(size, dtype=np.float32)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for lo in range(0, n, 500):  # blocks of 500 images keep the temporaries small
        b = min(500, n - lo)
        canvas = np.broadcast_to(rng.uniform(0, 0.6, (b, 1, 1, 3)).astype(np.float32),
                                 (b, size, size, 3)).copy()
        n_blobs = rng.integers(2, 6, size=b)
        for k in range(5):
            cy, cx = (rng.uniform(0.15, 0.85, (2, b, 1, 1)) * size).astype(np.float32)
            radius = (blob_scale * rng.uniform(0.06, 0.2, (b, 1, 1)) * size).astype(np.float32)
            colour = (saturation * rng.uniform(0, 1, (b, 1, 1, 3))).astype(np.float32)
            r2 = (coords[None, :, None] - cy) ** 2 + (coords[None, None, :] - cx) ** 2
            alpha = np.exp(-r2 / (2 * radius ** 2)) * (k < n_blobs)[:, None, None]  # (b, S, S)
            canvas += alpha[..., None] * (colour - canvas)
        canvas += rng.normal(0, 0.02, canvas.shape).astype(np.float32)
        images[lo:lo + b] = np.clip(canvas * 255 + 0.5, 0, 255).astype(np.uint8)
    return images


def napkin_gflop(n_real: int, n_fake: int, size: int, n_nn: int) -> dict:
    """Floating-point work (GFLOP) of the three dominant computations.

    SWD: per level, set and repeat one (128, 147) @ (147, M) projection.
    precision/recall: the real-real, fake-fake and fake-real distance matmuls.
    memorisation: n_nn generated images against every training image, 3HW dims.
    """
    levels = len(pyramid_resolutions(size))
    m = 128 * min(n_real, n_fake)                       # descriptors per set and level
    swd = levels * 2 * 4 * 2 * m * 3 * PATCH_SIZE ** 2 * 128
    feat = 3 * FEATURE_SIZE ** 2
    knn = 2 * feat * (n_real ** 2 + n_fake ** 2 + n_real * n_fake)
    nn = 2 * 3 * size * size * n_real * n_nn
    return {"swd": swd / 1e9, "precision_recall": knn / 1e9, "memorization": nn / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="images per set")
    parser.add_argument("--size", type=int, default=64, help="image side (16 x a power of 2)")
    parser.add_argument("--runs", type=int, default=1, help="report the best of this many")
    args = parser.parse_args()

    t0 = time.perf_counter()
    real = random_blobs(args.n, args.size, seed=1)
    fake = random_blobs(args.n, args.size, seed=2, blob_scale=1.3, saturation=0.8)
    print(f"made 2 x {args.n} images of {args.size}x{args.size} in "
          f"{time.perf_counter() - t0:.1f} s")

    best: dict = {}
    load_before = os.getloadavg()[0]
    for _ in range(args.runs):
        timings: dict = {}
        results = evaluate(real, fake, seed=0, timings=timings)
        best = {k: min(v, best.get(k, np.inf)) for k, v in timings.items()}

    work = napkin_gflop(args.n, args.n, args.size, min(args.n, MAX_NN_GENERATED))
    print(f"\nevaluate() on {args.n} vs {args.n} images, {args.size}x{args.size} "
          f"(best of {args.runs}):")
    print(f"  {'step':<17} {'wall':>8} {'CPU':>8}   (CPU: this process, all threads)")
    for name in ("features", "swd", "precision_recall", "ndb", "memorization", "total"):
        wall, cpu = best[name], best[name + "_cpu"]
        note = ""
        if name in work:  # napkin math: the rate per CPU-second, against ~100 GFLOP/s per core
            note = f"  {work[name]:7.1f} GFLOP  {work[name] / cpu:5.1f} GFLOP per CPU-s"
        print(f"  {name:<17} {wall:7.2f}s {cpu:7.2f}s{note}")
    print(f"  {cpu_threads()} cores; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (other processes stretch the wall-clock times)")
    print()
    print(format_table(results, title="metric values (real blobs vs larger, paler blobs)"))


if __name__ == "__main__":
    main()
