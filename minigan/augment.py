"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for
Data-Efficient GAN Training"): augment real *and* generated images with the
same random, differentiable transforms before D sees them, in both the D and
the G step. D can then no longer memorise a ~100-image training set, and G
still gets gradients through the augmentation.

The transforms follow the authors' ``DiffAugment_pytorch.py`` exactly, per
sample of x (N, C, H, W):

* ``color``:  brightness  x + U(-0.5, 0.5)
              saturation  (x - mean_c(x)) * U(0, 2) + mean_c(x)       mean over channels, per pixel
              contrast    (x - mean_chw(x)) * U(0.5, 1.5) + mean_chw(x) mean over the whole image
* ``translation``: shift by integers in [-H/8, H/8] rows and [-W/8, W/8]
  columns, zeros filling in: ``out[i, j] = x[i + dy, j + dx]``.
* ``cutout``: zero a square half the image's size centred anywhere in
  [0, H] x [0, W] (so it may hang over the border).

All random numbers are drawn on the host from a ``numpy.random.Generator``,
so an augmentation is reproducible and the same on the CPU and the GPU. The
means in ``color`` are part of the graph (as in the authors' code), so the
gradient flows through them too.
"""
from __future__ import annotations

import numpy as np

import minigan.ops as F
from minigan import backend, random
from minigan.tensor import Function, Tensor


def _per_sample(values, x) -> Tensor:
    """Host values (N,) as a constant (N, 1, 1, 1) Tensor on x's device, in x's dtype."""
    return Tensor(backend.to_device(np.asarray(values, dtype=x.dtype).reshape(-1, 1, 1, 1), x.device))


def brightness(x, rng: np.random.Generator):
    return x + _per_sample(rng.uniform(-0.5, 0.5, x.shape[0]), x)


def saturation(x, rng: np.random.Generator):
    mean = F.mean(x, axis=1, keepdims=True)  # (N, 1, H, W): each pixel's grey level
    return (x - mean) * _per_sample(rng.uniform(0.0, 2.0, x.shape[0]), x) + mean


def contrast(x, rng: np.random.Generator):
    mean = F.mean(x, axis=(1, 2, 3), keepdims=True)  # (N, 1, 1, 1)
    return (x - mean) * _per_sample(rng.uniform(0.5, 1.5, x.shape[0]), x) + mean


def _shift(a, shifts):
    """out[n, :, i, j] = a[n, :, i + dy_n, j + dx_n], zero outside; shifts (N, 2) ints (dy, dx)."""
    out = backend.array_module(a).zeros_like(a)
    h, w = a.shape[-2:]
    for n, (dy, dx) in enumerate(shifts):
        if abs(dy) >= h or abs(dx) >= w:
            continue  # shifted out entirely
        out[n, :, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
            a[n, :, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out


class Translate(Function):
    """Per-sample integer translation with zero fill; x (N, C, H, W), shifts (N, 2) host ints.

    The map is linear, and its adjoint is the opposite shift: the pixel that
    moved from (i + dy, j + dx) to (i, j) sends its gradient back.
    """

    @staticmethod
    def forward(ctx, x, shifts):
        ctx.shifts = np.asarray(shifts, dtype=np.int64)
        return _shift(x, ctx.shifts)

    @staticmethod
    def backward(ctx, g):
        return _shift(g, -ctx.shifts)


def translate(x, shifts):
    return Translate.apply(x, shifts=np.asarray(shifts, dtype=np.int64))


def random_shifts(n, h, w, rng: np.random.Generator, ratio: float = 0.125) -> np.ndarray:
    """(N, 2) host ints (dy, dx), uniform in [-H*ratio, H*ratio] x [-W*ratio, W*ratio] (rounded); all dy drawn first."""
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = rng.integers(-max_dy, max_dy + 1, n)
    dx = rng.integers(-max_dx, max_dx + 1, n)
    return np.stack([dy, dx], axis=1)


def translation(x, rng: np.random.Generator, ratio: float = 0.125):
    n, _, h, w = x.shape
    return translate(x, random_shifts(n, h, w, rng, ratio))


def cutout_mask(n, h, w, rng: np.random.Generator, ratio: float = 0.5) -> np.ndarray:
    """(N, 1, H, W) float64 mask: 1, with one square of 0 per sample (clipped to the image)."""
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # the square's centre, as in the authors' code: [0, H] for an even square, [0, H) for an odd one
    cy = rng.integers(0, h + (1 - size_y % 2), n)
    cx = rng.integers(0, w + (1 - size_x % 2), n)
    top, left = cy - size_y // 2, cx - size_x // 2  # may be negative; the far edge is always > 0
    mask = np.ones((n, 1, h, w))
    for i in range(n):
        mask[i, :, max(top[i], 0):top[i] + size_y, max(left[i], 0):left[i] + size_x] = 0
    return mask


def cutout(x, rng: np.random.Generator, ratio: float = 0.5):
    n, _, h, w = x.shape
    mask = cutout_mask(n, h, w, rng, ratio).astype(x.dtype)
    return x * Tensor(backend.to_device(mask, x.device))


AUGMENTATIONS = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def diff_augment(x, policy: str = "color,translation,cutout", rng: np.random.Generator | None = None,
                 p: float = 1.0):
    """Apply the comma-separated ``policy`` to x (N, C, H, W), in order; differentiable in x.

    ``rng`` defaults to minigan's seeded generator (:func:`minigan.random.get_rng`).
    ``p < 1`` (adaptive augmentation, ADA): each transform is applied to each sample with
    probability p, independently (``m t(x) + (1 - m) x``, m in {0, 1} per sample); p = 1 draws
    exactly what it always did.
    """
    rng = random.get_rng() if rng is None else rng
    for name in (p_.strip() for p_ in policy.split(",")):
        if not name:
            continue
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown DiffAugment policy {name!r}: use a comma-separated list of "
                             f"{', '.join(AUGMENTATIONS)}.")
        for transform in AUGMENTATIONS[name]:
            if p >= 1.0:
                x = transform(x, rng)
                continue
            chosen = rng.uniform(size=x.shape[0]) < p  # drawn first, then the transform's own numbers
            y = transform(x, rng)
            if chosen.any():  # exact: m * t(x) + (1 - m) * x is t(x) or x, not x + (t(x) - x)
                x = y * _per_sample(chosen, x) + x * _per_sample(~chosen, x)
    return x


def consistency_view(a, rng: np.random.Generator, ratio: float = 0.125):
    """bCR's transform T (Zhao et al. 2021) of an array a (N, C, H, W): each sample flipped left-right with
    probability 1/2, then shifted by integers in [-H/8, H/8] x [-W/8, W/8] with zero fill (the paper's flip and
    few-pixel translation). Not part of any graph: bCR only needs D's gradient at the transformed images."""
    n, _, h, w = a.shape
    flipped = np.flatnonzero(rng.uniform(size=n) < 0.5)  # a NumPy index array: CuPy copies it over
    a = a.copy()
    a[flipped] = a[flipped][..., ::-1]
    return _shift(a, random_shifts(n, h, w, rng, ratio))
