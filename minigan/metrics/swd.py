"""Sliced Wasserstein distance between Laplacian-pyramid patch distributions.

The recipe of Karras et al. 2018, "Progressive Growing of GANs for Improved
Quality, Stability, and Variation" (appendix D, and its reference code
``metrics/sliced_wasserstein.py``):

1. Build a Laplacian pyramid of every image with the 5x5 binomial filter
   ([1, 4, 6, 4, 1] / 16, outer product), from the full resolution down to
   16x16: for 64x64 images the levels are 64 and 32 (band-pass details) and 16
   (the coarsest Gaussian level itself).
2. From each level take ``patches_per_image`` random 7x7x3 neighbourhoods per
   image: the *descriptors*, 147 numbers each.
3. Normalise each descriptor set per colour channel: subtract the mean and
   divide by the standard deviation over the whole set (all descriptors, all 49
   positions of that channel). Each set is normalised with its own statistics.
4. Sliced Wasserstein distance between the real and fake sets (equal counts):
   for each of ``n_repeats`` repeats draw ``n_directions`` random unit vectors,
   project both sets on them, sort each direction's projections, and average
   |sorted_real - sorted_fake|: the exact 1-d Wasserstein-1 distance per
   direction. Average over repeats.
5. Report each level's distance times 1e3 and their mean. Lower is better; the
   finest level measures texture and edges, the coarsest colour and layout.

Layers of the API (each testable alone):

    pyr_down / pyr_up / laplacian_pyramid / reconstruct_laplacian_pyramid
    draw_swd_randomness(...)        every random choice, drawn from one seed
    extract_descriptors(level, owners, corners)    (M, 147) patches
    normalize_descriptors(desc)     step 3, in place
    sliced_wasserstein_distance(a, b, directions)  step 4 on descriptor sets
    sliced_wasserstein(real, fake, seed)           everything, on images

Unequal set sizes: both sets give M = patches_per_image * min(N_real, N_fake)
descriptors, spread evenly over each set's images (every image owns
floor or ceil(M / N) of them), so the sliced distances compare equal counts.

Cost (10k vs 10k at 64x64, the defaults): M = 1.28M descriptors per set and
level. The projections are 24 matmuls (K, 147) @ (147, M), 1.16 TFLOP, and the
sorts 24 x 128 rows of 1.28M floats; they are laid out (K, M), so each
direction's projections are contiguous and sort several times faster than a
strided sort along axis 0 of (M, K). About 35 CPU-seconds in all, ~18 s on two
idle cores; memory ~4 GB (pyramids 0.65 GB and descriptors 0.75 GB per set, two
0.65 GB projection buffers, allocated once and reused by every level).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from minigan.backend import array_module, to_numpy
from minigan.metrics.features import (array_module_of, as_float_images, canonical_order, chunks,
                                      for_blocks)

PATCH_SIZE = 7                      # 7x7 neighbourhoods, as in ProGAN
MIN_RESOLUTION = 16                 # the pyramid stops at 16x16
PYRAMID_CHUNK = 128                 # images per block when building pyramids
GATHER_CHUNK = 1 << 12              # descriptors per block of the patch gather
NORMALIZE_CHUNK = 1 << 13           # descriptors per block of the normalisation (~5 MB)
BINOMIAL = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)  # the 1-d filter; 5x5 = outer product


# ----------------------------------------------------------------------------
# The Laplacian pyramid. The 5x5 filter is separable, and every 1-d step
# (blur-and-decimate, zero-stuff-and-blur) is a linear map of a row: a small
# matrix built once per size, straight from the definition. A 2-d step is then
# two matmuls, M_H @ x @ M_W^T: BLAS-fast on the CPU, batched GEMMs on the GPU.
# Borders are mirrored without repeating the edge sample (d c b | a b c d), as
# OpenCV's pyrDown/pyrUp and ProGAN's scipy.ndimage "mirror" mode do.
# ----------------------------------------------------------------------------

def _mirror(i: int, n: int) -> int:
    """Index i of a length-n signal mirrored at both ends: -1 -> 1, n -> n - 2."""
    return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)


@functools.lru_cache(maxsize=None)
def _down_matrix(n: int) -> np.ndarray:
    """(n/2, n): blur a length-n signal with [1, 4, 6, 4, 1] / 16, keep the even samples."""
    m = np.zeros((n // 2, n))
    for i in range(n // 2):
        for k, tap in enumerate(BINOMIAL):
            m[i, _mirror(2 * i + k - 2, n)] += tap
    return m


@functools.lru_cache(maxsize=None)
def _up_matrix(n: int) -> np.ndarray:
    """(2n, n): put a zero after every sample, then blur with 2 * [1, 4, 6, 4, 1] / 16
    (the mirror applies to the zero-stuffed signal; 2 per axis keeps the mean)."""
    m = np.zeros((2 * n, n))
    for j in range(2 * n):
        for k, tap in enumerate(BINOMIAL):
            source = _mirror(j + k - 2, 2 * n)
            if source % 2 == 0:          # odd samples of the stuffed signal are zeros
                m[j, source // 2] += 2 * tap
    return m


def _separable(x, rows, cols):
    """rows (H', H) and cols (W', W) applied to x (N, C, H, W): rows @ x @ cols^T."""
    xp = array_module(x)
    rows, cols = xp.asarray(rows, dtype=x.dtype), xp.asarray(cols, dtype=x.dtype)
    return xp.matmul(rows, x @ cols.T)               # (N, C, H', W')


def pyr_down(x):
    """Gaussian pyramid step (OpenCV pyrDown): (N, C, H, W) -> (N, C, H/2, W/2)."""
    if x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"pyr_down needs even sizes; got {x.shape[2]}x{x.shape[3]}.")
    return _separable(x, _down_matrix(x.shape[2]), _down_matrix(x.shape[3]))


def pyr_up(x):
    """Upsampling step of the pyramid (OpenCV pyrUp): (N, C, h, w) -> (N, C, 2h, 2w)."""
    return _separable(x, _up_matrix(x.shape[2]), _up_matrix(x.shape[3]))


def pyramid_resolutions(size: int, min_resolution: int = MIN_RESOLUTION) -> list[int]:
    """Level sizes from ``size`` halving down to ``min_resolution``: 64 -> [64, 32, 16]."""
    if size < min_resolution or size % min_resolution or (size // min_resolution) & (
            size // min_resolution - 1):
        raise ValueError(f"the SWD pyramid needs square images whose size is {min_resolution} "
                         f"times a power of two (16, 32, 64, 128...); got {size}x{size}.")
    sizes = [size]
    while sizes[-1] > min_resolution:
        sizes.append(sizes[-1] // 2)
    return sizes


def laplacian_pyramid(x, min_resolution: int = MIN_RESOLUTION) -> list:
    """(N, C, S, S) -> [detail S, detail S/2, ..., Gaussian min_resolution].

    level_i = G_i - pyr_up(G_{i+1}) with G_0 = x and G_{i+1} = pyr_down(G_i); the
    last entry is the coarsest Gaussian level itself, so the pyramid is lossless
    (:func:`reconstruct_laplacian_pyramid` inverts it exactly up to rounding).
    """
    pyramid = [x]
    for _ in pyramid_resolutions(x.shape[2], min_resolution)[1:]:
        coarser = pyr_down(pyramid[-1])
        pyramid[-1] = pyramid[-1] - pyr_up(coarser)
        pyramid.append(coarser)
    return pyramid


def reconstruct_laplacian_pyramid(pyramid: list):
    """Invert :func:`laplacian_pyramid`: start from the coarsest level, upsample, add detail."""
    x = pyramid[-1]
    for detail in pyramid[-2::-1]:
        x = pyr_up(x) + detail
    return x


def _pyramid_of_set(x, resolutions: list[int]) -> list:
    """The pyramid of a whole image set, built in blocks of images to bound temporaries."""
    xp = array_module(x)
    n, c = x.shape[:2]
    levels = [xp.empty((n, c, r, r), dtype=xp.float32) for r in resolutions]

    def build(rows):
        for store, level in zip(levels, laplacian_pyramid(x[rows], resolutions[-1])):
            store[rows] = level

    for_blocks(xp, chunks(n, PYRAMID_CHUNK), build)
    return levels


# ----------------------------------------------------------------------------
# The random choices, all from one numpy Generator, in a documented order.
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class LevelDraws:
    """Every random choice the SWD makes at one pyramid level.

    Descriptor j of a set of N images belongs to the image of canonical rank
    ``descriptor_owners(N, M)[j]`` (see :func:`minigan.metrics.features.canonical_order`).
    """
    resolution: int
    real_corners: np.ndarray   # (M, 2) int64: top-left (y, x) of each real patch
    fake_corners: np.ndarray   # (M, 2) int64
    directions: np.ndarray     # (n_repeats, n_directions, D) float32, unit rows


def descriptor_owners(n_images: int, n_descriptors: int) -> np.ndarray:
    """Image rank of each descriptor: (M,) int64, non-decreasing; every image owns
    floor(M / N) or ceil(M / N) descriptors."""
    return (np.arange(n_descriptors, dtype=np.int64) * n_images) // n_descriptors


def random_directions(rng: np.random.Generator, n_repeats: int, n_directions: int,
                      dim: int) -> np.ndarray:
    """Uniform random unit vectors, normalised Gaussians: (n_repeats, n_directions, dim) f32."""
    d = rng.standard_normal((n_repeats, n_directions, dim))
    d /= np.sqrt((d * d).sum(axis=2, keepdims=True))
    return d.astype(np.float32)


def draw_swd_randomness(seed: int, n_real: int, n_fake: int, resolutions: list[int],
                        patches_per_image: int = 128, n_directions: int = 128,
                        n_repeats: int = 4, patch_size: int = PATCH_SIZE) -> list[LevelDraws]:
    """All random choices of one SWD evaluation, level by level.

    From ``np.random.default_rng(seed)``, for each resolution in order: the real
    patches' corners (M, 2), the fake patches' corners (M, 2), then the directions.
    Corners are uniform over the positions where a whole patch fits.
    """
    rng = np.random.default_rng(seed)
    m = patches_per_image * min(n_real, n_fake)
    dim = 3 * patch_size * patch_size
    draws = []
    for r in resolutions:
        real_corners = rng.integers(0, r - patch_size + 1, size=(m, 2))
        fake_corners = rng.integers(0, r - patch_size + 1, size=(m, 2))
        directions = random_directions(rng, n_repeats, n_directions, dim)
        draws.append(LevelDraws(r, real_corners, fake_corners, directions))
    return draws


# ----------------------------------------------------------------------------
# Descriptors and the sliced distance.
# ----------------------------------------------------------------------------

def extract_descriptors(level, owners, corners, patch_size: int = PATCH_SIZE, out=None):
    """Gather patches: level (N, C, R, R), owners (M,) image index, corners (M, 2) (y, x).

    returns float32 (M, C * patch_size**2), each row the patch in (c, dy, dx) order,
    written into ``out`` if given. One gather per block of descriptors: no Python
    loop over patches.
    """
    xp = array_module(level)
    n, c, r, _ = level.shape
    flat = xp.ascontiguousarray(level).reshape(-1)
    owners = xp.asarray(owners, dtype=xp.int64)
    corners = xp.asarray(corners, dtype=xp.int64)
    # Flat index of (img, 0, y0, x0) per descriptor, plus the offset of every
    # (c, dy, dx) inside a patch: flat[(img*C + c)*R*R + (y0 + dy)*R + x0 + dx].
    base = (owners * c * r + corners[:, 0]) * r + corners[:, 1]                  # (M,)
    offsets = ((xp.arange(c)[:, None, None] * r + xp.arange(patch_size)[None, :, None]) * r
               + xp.arange(patch_size)[None, None, :]).reshape(-1)              # (D,)
    if out is None:
        out = xp.empty((base.shape[0], offsets.shape[0]), dtype=xp.float32)     # (M, D)

    def gather(rows):  # blocks small enough for their (b, D) index array to stay in cache
        xp.take(flat, base[rows, None] + offsets[None, :], out=out[rows])

    for_blocks(xp, chunks(base.shape[0], GATHER_CHUNK), gather)
    return out


def normalize_descriptors(desc, channels: int = 3):
    """In place: per colour channel, subtract the set's mean and divide by its std.

    desc (M, channels * P) with each row in (c, dy, dx) order. Statistics are over
    all M descriptors and all P positions of a channel. A constant channel (std 0)
    is only centred. Returns ``desc``.

    Two passes over blocks of rows small enough to stay in cache: one sums
    (d - k) and (d - k)^2 (float32 within a block, float64 across blocks; the
    shift k, the first descriptor's channel mean, keeps the variance accurate when
    the mean is large), one applies (d - mean) / std.
    """
    xp = array_module(desc)
    m, dim = desc.shape
    per_position = dim // channels
    shift = xp.repeat(desc[0].reshape(channels, per_position).mean(axis=1), per_position)  # (D,)

    def sums(rows):                                                        # float64 (2, D)
        block = desc[rows] - shift                                         # (b, D)
        return xp.stack([block.sum(axis=0), (block * block).sum(axis=0)]).astype(xp.float64)

    s1, s2 = sum(for_blocks(xp, chunks(m, NORMALIZE_CHUNK), sums))       # sums of d-k, (d-k)^2
    count = m * per_position
    centred_mean = s1.reshape(channels, per_position).sum(axis=1) / count  # (C,) E[d - k]
    var = s2.reshape(channels, per_position).sum(axis=1) / count - centred_mean ** 2
    std = xp.sqrt(xp.maximum(var, 0.0))
    std = xp.where(std > 0, std, 1.0)
    mean = shift + xp.repeat(centred_mean, per_position).astype(xp.float32)  # (D,)
    scale = xp.repeat(1.0 / std, per_position).astype(xp.float32)            # (D,)

    def apply(rows):
        block = desc[rows]   # a view: the updates land in desc
        block -= mean
        block *= scale

    for_blocks(xp, chunks(m, NORMALIZE_CHUNK), apply)
    return desc


def sliced_wasserstein_distance(a, b, directions, buffers=None) -> float:
    """Sliced Wasserstein-1 distance between equal-size descriptor sets.

    a, b (M, D) (normalised descriptors), directions (n_repeats, K, D) unit rows.
    Per repeat: project both sets on the K directions (one matmul each, (K, D) @
    (D, M)), sort each direction's M projections, take the mean of
    |sorted_a - sorted_b| over directions and ranks; return the mean over repeats.
    ``buffers``: two float32 (K, M) arrays to project into (else allocated here).
    """
    if a.shape != b.shape:
        raise ValueError(f"sliced Wasserstein needs equal-size sets; got {a.shape} and {b.shape}.")
    xp = array_module(a)
    directions = xp.asarray(directions, dtype=xp.float32)
    k, m = directions.shape[1], a.shape[0]
    if buffers is None:
        buffers = [xp.empty((k, m), dtype=xp.float32) for _ in range(2)]
    proj_a, proj_b = buffers                     # (K, M) each, reused across repeats

    def sorted_gaps(rows):   # sum over these directions and all ranks of |a_(i) - b_(i)|
        pa, pb = proj_a[rows], proj_b[rows]
        pa.sort(axis=-1)
        pb.sort(axis=-1)
        pa -= pb
        return float(to_numpy(xp.abs(pa, out=pa).sum(dtype=xp.float64)))

    # A few directions per block on the CPU (a block's rows stay in cache from the
    # sort to the sum, and the cores share the blocks); all of them at once on a GPU.
    per_block = 4 if xp is np else k
    total = 0.0
    for dirs in directions:                      # (K, D)
        xp.matmul(dirs, a.T, out=proj_a)
        xp.matmul(dirs, b.T, out=proj_b)
        total += sum(for_blocks(xp, chunks(k, per_block), sorted_gaps)) / (k * m)
    return total / directions.shape[0]


def sliced_wasserstein(real, fake, seed: int = 0, patches_per_image: int = 128,
                       n_directions: int = 128, n_repeats: int = 4,
                       min_resolution: int = MIN_RESOLUTION) -> dict:
    """ProGAN's SWD between two image sets (see the module docstring for the recipe).

    real, fake: uint8 (N, H, W, 3) or float (N, 3, H, W) in [-1, 1], square, same
    size, on the same device; the size must be 16 times a power of two.
    returns {"levels": {resolution: SWD * 1e3}, "mean": mean over levels}.
    Deterministic for a seed and independent of the order of the images.
    """
    array_module_of(real, fake)
    x, y = as_float_images(real), as_float_images(fake)
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"real and fake images differ in size: {x.shape[1:]} vs {y.shape[1:]}.")
    resolutions = pyramid_resolutions(x.shape[2], min_resolution)
    draws = draw_swd_randomness(seed, x.shape[0], y.shape[0], resolutions,
                                patches_per_image, n_directions, n_repeats)
    return sliced_wasserstein_from_draws(x, y, draws)


def sliced_wasserstein_from_draws(x, y, draws: list[LevelDraws]) -> dict:
    """:func:`sliced_wasserstein` with its random choices given (see :func:`draw_swd_randomness`).

    x, y: float32 (N, 3, S, S) in [-1, 1]. The draws refer to canonical ranks, which
    are mapped to positions here; that makes the result order-independent.
    """
    xp = array_module(x)
    resolutions = [d.resolution for d in draws]
    n_descriptors = draws[0].real_corners.shape[0]

    def prepare(images):  # -> (owner image index per descriptor (M,), pyramid levels)
        ranks = descriptor_owners(images.shape[0], n_descriptors)
        owners = xp.asarray(canonical_order(images)[ranks])
        return owners, _pyramid_of_set(images, resolutions)

    (owners_x, pyramid_x), (owners_y, pyramid_y) = prepare(x), prepare(y)
    # Every level has the same number of descriptors: allocate the big arrays once
    # (fresh memory costs a page fault per 4 KB the first time it is written).
    dim = 3 * PATCH_SIZE * PATCH_SIZE
    desc_x, desc_y = (xp.empty((n_descriptors, dim), dtype=xp.float32) for _ in range(2))
    buffers = [xp.empty((draws[0].directions.shape[1], n_descriptors), dtype=xp.float32)
               for _ in range(2)]
    levels = {}
    for d, level_x, level_y in zip(draws, pyramid_x, pyramid_y):
        normalize_descriptors(extract_descriptors(level_x, owners_x, d.real_corners, out=desc_x))
        normalize_descriptors(extract_descriptors(level_y, owners_y, d.fake_corners, out=desc_y))
        levels[d.resolution] = 1e3 * sliced_wasserstein_distance(desc_x, desc_y, d.directions,
                                                                 buffers)
    return {"levels": levels, "mean": float(np.mean(list(levels.values())))}
