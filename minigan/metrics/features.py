"""What every metric shares: image normalisation, a canonical image order, the
thumbnail feature space, and chunked squared distances.

Image sets come in two layouts (the two the rest of minigan uses):

* uint8 ``(N, H, W, 3)`` -- what :mod:`minigan.data` loads and
  :func:`minigan.imageio.to_uint8` writes;
* float ``(N, 3, H, W)`` in ``[-1, 1]`` -- what a generator outputs (a NumPy or
  CuPy array, or a :class:`minigan.Tensor`).

:func:`as_float_images` turns either into float32 ``(N, 3, H, W)`` in ``[-1, 1]``
on the device the images are on; every metric starts with it.

Order independence. The metrics draw random numbers (patch positions, k-means++
seeds, subsets), and a random draw tied to "image number i" would make a result
depend on the order of the images. :func:`canonical_order` ranks images by a hash
of their exact contents, and the metrics draw their random numbers for ranks,
not for positions: a permuted input gives bit-identical results.

The feature space (:func:`thumbnail_features`). Precision/recall and NDB need a
space where Euclidean distance means "looks alike". The papers use Inception or
VGG embeddings; minigan is written from scratch and downloads nothing, so it uses
the image itself at 16x16: area-average each 3-channel image down to 16x16 and
flatten, 768 numbers in ``[-1, 1]``. This is the space Richardson & Weiss (2018)
use for NDB (raw pixels of small images), and for the data minigan is made for
(icons, logos, cartoon faces at 32-128 px) it captures what mode collapse
destroys: layout, silhouette and colour. It ignores fine texture on purpose
(texture is the SWD's finest pyramid level) and makes distances cheap (10k x 10k
in about a second). Figures in it are not comparable with published
Inception-space figures; compare runs with each other.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np

from minigan.backend import array_module, to_numpy
from minigan.tensor import Tensor

FEATURE_SIZE = 16          # thumbnails are FEATURE_SIZE x FEATURE_SIZE x 3
DISTANCE_BLOCK_BYTES = 16 << 20   # a pairwise-distance block stays under 16 MB (see distance_rows)
_HASH_SEED = 0x5EED        # fixed: the canonical order must not depend on any user seed


def as_float_images(images) -> "np.ndarray":
    """uint8 (N, H, W, 3) or float (N, 3, H, W) in [-1, 1] -> float32 (N, 3, H, W) in [-1, 1].

    Stays on the images' device (NumPy or CuPy); a float32 NCHW input comes back
    unchanged (no copy). uint8 is mapped exactly as :func:`minigan.imageio.to_float`
    does (``v / 127.5 - 1``).
    """
    a = _unwrap(images)
    xp = array_module(a)
    a = xp.asarray(a)
    if a.ndim != 4:
        raise ValueError(f"an image set must be a 4-d array (N, H, W, 3) uint8 or (N, 3, H, W) "
                         f"float; got shape {tuple(a.shape)}.")
    if a.dtype == np.uint8:
        if a.shape[3] != 3:
            raise ValueError(f"uint8 images must be (N, H, W, 3); got shape {tuple(a.shape)}.")
        x = xp.ascontiguousarray(a.transpose(0, 3, 1, 2), dtype=xp.float32)  # one copy
        x /= 127.5
        x -= 1.0
        return x
    if a.dtype.kind != "f":
        raise ValueError(f"images must be uint8 (N, H, W, 3) or float (N, 3, H, W); "
                         f"got dtype {a.dtype}.")
    if a.shape[1] != 3:
        raise ValueError(f"float images must be (N, 3, H, W) in [-1, 1]; got shape "
                         f"{tuple(a.shape)} (convert uint8 NHWC with minigan.imageio.to_float).")
    if a.dtype == xp.float32 and a.flags.c_contiguous:
        return a
    return xp.ascontiguousarray(a, dtype=xp.float32)


def _unwrap(images):
    """The array inside a minigan Tensor; anything else unchanged."""
    return images.data if isinstance(images, Tensor) else images


def canonical_order(x) -> np.ndarray:
    """Indices that sort the rows of ``x`` (N, ...) by a hash of their exact contents.

    ``x[canonical_order(x)]`` is the same array whatever order the rows came in
    (rows that compare equal are interchangeable). The hash is exact integer
    arithmetic on the float32 bit patterns, sum_j w_j * bits_j mod 2**64 with fixed
    random odd weights w, so it cannot depend on a row's position (a BLAS dot
    product could). Returns a NumPy int64 array (N,).
    """
    xp = array_module(x)
    flat = xp.ascontiguousarray(x, dtype=xp.float32).reshape(x.shape[0], -1)  # (N, D)
    weights = np.random.default_rng(_HASH_SEED).integers(
        1, 2**63, size=flat.shape[1], dtype=np.uint64) | np.uint64(1)
    weights = xp.asarray(weights)                                             # (D,)

    def hash_rows(rows):                                                      # (b,) uint64
        bits = flat[rows].view(xp.uint32).astype(xp.uint64)  # (b, D); products wrap mod 2**64
        bits *= weights
        return to_numpy(bits.sum(axis=1, dtype=xp.uint64))

    keys = np.concatenate(for_blocks(xp, chunks(flat.shape[0], 256), hash_rows))  # (N,)
    return np.argsort(keys, kind="stable")


def area_downsample(x, size: int):
    """Average non-overlapping blocks: (N, C, H, W) -> (N, C, size, size).

    H and W must be multiples of ``size`` (64 -> 16 averages 4x4 blocks).
    """
    n, c, h, w = x.shape
    if h % size or w % size:
        raise ValueError(f"images of {h}x{w} cannot be area-averaged to {size}x{size}: "
                         f"use sizes that are multiples of {size}.")
    return x.reshape(n, c, size, h // size, size, w // size).mean(axis=(3, 5))


def thumbnail_features(images, size: int = FEATURE_SIZE):
    """The metrics' feature space: area-average to ``size`` x ``size``, flatten.

    images: uint8 (N, H, W, 3) or float (N, 3, H, W) in [-1, 1]
    returns float32 (N, 3 * size * size) in [-1, 1] (768 dims for size 16), on the
    images' device. See the module docstring for why this space.
    """
    x = as_float_images(images)                           # (N, 3, H, W)
    feats = area_downsample(x, size)                      # (N, 3, size, size)
    return feats.reshape(x.shape[0], -1).astype(array_module(x).float32)


def cpu_threads() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def for_blocks(xp, blocks, work) -> list:
    """[work(block) for block in blocks], in order.

    On the CPU the blocks are spread over the cores: NumPy releases the GIL inside
    ufuncs, sorts, fancy indexing and matmuls, so plain threads run them in
    parallel. (Big matmuls are threaded by BLAS already and stay outside; small
    per-image ones, like the pyramid's, run one thread each and gain from this.)
    On the GPU (CuPy) the blocks are queued in order. ``work`` must write only to
    its own block.
    """
    blocks = list(blocks)
    threads = min(cpu_threads(), len(blocks))
    if xp is not np or threads < 2:
        return [work(block) for block in blocks]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, blocks))


def chunks(n: int, size: int):
    """Consecutive slices covering range(n), ``size`` rows each (the last may be shorter)."""
    for lo in range(0, n, size):
        yield slice(lo, min(lo + size, n))


def distance_rows(n_columns: int) -> int:
    """Rows per block of an (rows, n_columns) float32 distance computation.

    Blocks of at most 16 MB: small enough that the allocator reuses their memory
    from one block to the next (glibc returns blocks over 32 MB to the system on
    free, and touching fresh pages again costs more than the matmul at these
    sizes), large enough for an efficient matmul. 10k columns -> 419 rows.
    """
    return max(16, min(4096, DISTANCE_BLOCK_BYTES // (4 * max(n_columns, 1))))


def squared_norms(a):
    """Row-wise squared norms (N, D) -> (N,), accumulated in float32."""
    return (a * a).sum(axis=1)


def squared_distances(a, b, a_sq=None, b_sq=None):
    """||a_i - b_j||^2 for all pairs: a (n, D), b (m, D) -> float32 (n, m), clamped at 0.

    Uses ||a||^2 - 2 a.b + ||b||^2, one float32 matmul: fast, but the difference of
    large numbers loses precision for near-identical rows, hence the clamp. Callers
    keep n to a block of rows (:func:`distance_rows`) so an (n, m) block stays small; pass
    precomputed ``a_sq`` / ``b_sq`` (:func:`squared_norms`) to avoid recomputing them.
    """
    xp = array_module(a)
    a_sq = squared_norms(a) if a_sq is None else a_sq    # (n,)
    b_sq = squared_norms(b) if b_sq is None else b_sq    # (m,)
    d = a @ b.T                                          # (n, m)
    d *= -2.0
    d += a_sq[:, None]
    d += b_sq[None, :]
    return xp.maximum(d, 0.0, out=d)


def nearest_neighbour_search(queries, database, k: int = 1, exclude_self: bool = False):
    """The k nearest database rows of every query row (exact, chunked brute force).

    queries (n, D), database (m, D), same device.
    returns (indices int64 (n, k), squared distances float32 (n, k)), nearest first.
    With ``exclude_self`` (queries *are* the database) a row is not its own neighbour.
    """
    xp = array_module(queries)
    if k > database.shape[0] - int(exclude_self):
        raise ValueError(f"asked for {k} nearest neighbours among {database.shape[0]} rows.")
    db_sq = squared_norms(database)                                   # (m,)
    indices = xp.empty((queries.shape[0], k), dtype=xp.int64)         # (n, k)
    dists = xp.empty((queries.shape[0], k), dtype=xp.float32)         # (n, k)
    for rows in chunks(queries.shape[0], distance_rows(database.shape[0])):
        d = squared_distances(queries[rows], database, b_sq=db_sq)    # (b, m)
        if exclude_self:
            local = xp.arange(rows.stop - rows.start)
            d[local, local + rows.start] = xp.inf
        if k == 1:
            idx = d.argmin(axis=1)[:, None]                           # (b, 1)
        else:
            part = xp.argpartition(d, k - 1, axis=1)[:, :k]           # (b, k) unordered
            order = xp.argsort(xp.take_along_axis(d, part, axis=1), axis=1)
            idx = xp.take_along_axis(part, order, axis=1)
        indices[rows] = idx
        dists[rows] = xp.take_along_axis(d, idx, axis=1)
    return indices, dists


def array_module_of(*arrays) -> ModuleType:
    """The array module all ``arrays`` share; a clear error if they are on different devices."""
    modules = {array_module(_unwrap(a)) for a in arrays}
    if len(modules) > 1:
        raise ValueError("the image sets are on different devices (NumPy and CuPy): move "
                         "both to the same one with minigan.backend.to_device.")
    return modules.pop()


def canonical_rows(x, max_n: int | None = None, seed: int = 0):
    """The rows of ``x`` in canonical order (:func:`canonical_order`), optionally subsampled.

    If ``max_n`` is given and ``x`` has more rows, keep a random ``max_n`` of them,
    chosen by ``seed`` among the canonical ranks (so by content, not position).
    The result is the same array for any permutation of ``x``: metrics computed
    from it are bit-for-bit order independent, even where a BLAS result could
    depend on a row's position.
    """
    order = canonical_order(x)                                            # (N,)
    if max_n is not None and x.shape[0] > max_n:
        ranks = np.random.default_rng(seed).choice(x.shape[0], size=max_n, replace=False)
        order = order[np.sort(ranks)]                                     # (max_n,)
    return x[array_module(x).asarray(order)]
