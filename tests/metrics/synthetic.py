"""Synthetic image sets for the metric tests (tested in test_synthetic_sets.py).

Two families with different structure, both uint8 (N, S, S, 3) like a loaded
folder, each image a function of (seed, image number):

* ``blobs``   1-3 soft-edged coloured discs on a plain background;
* ``stripes`` a sinusoidal grating between two colours, random angle and period.

A ``palette`` range restricts the colours: ``blobs(palette=(0, .45))`` and
``stripes(palette=(.55, 1))`` differ in both structure and colour, so they are
disjoint for every metric (the 16x16 thumbnail features of precision/recall and
NDB are dominated by colour: blobs and stripes in the same palette overlap there).

``collapsed`` repeats one image: what a mode-collapsed generator outputs.
"""
import numpy as np


def _grid(size):
    c = (np.arange(size, dtype=np.float64) + 0.5) / size     # pixel centres in (0, 1)
    return c[None, :, None], c[None, None, :]                 # y (1, S, 1), x (1, 1, S)


def _to_uint8(canvas):
    """float (N, S, S, 3) in [0, 1] -> uint8."""
    return np.clip(canvas * 255 + 0.5, 0, 255).astype(np.uint8)


def blobs(n, size=32, seed=0, palette=(0.0, 1.0)):
    """n images of 1-3 soft coloured discs on a plain coloured background; every
    colour channel uniform in ``palette`` (two sets with disjoint palettes have
    disjoint supports in any space that sees colour)."""
    rng = np.random.default_rng(seed)
    y, x = _grid(size)
    canvas = np.broadcast_to(rng.uniform(*palette, (n, 1, 1, 3)), (n, size, size, 3)).copy()
    count = rng.integers(1, 4, size=n)                        # discs per image
    for k in range(3):
        cy, cx = rng.uniform(0.25, 0.75, (2, n, 1, 1))
        radius = rng.uniform(0.12, 0.3, (n, 1, 1))
        colour = rng.uniform(*palette, (n, 1, 1, 3))
        dist = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)          # (n, S, S)
        alpha = np.clip((radius - dist) * size / 1.5 + 0.5, 0, 1) * (k < count)[:, None, None]
        canvas = canvas * (1 - alpha[..., None]) + colour * alpha[..., None]
    return _to_uint8(canvas)


def stripes(n, size=32, seed=0, palette=(0.0, 1.0)):
    """n sinusoidal gratings between two random colours from ``palette``."""
    rng = np.random.default_rng(seed)
    y, x = _grid(size)
    angle = rng.uniform(0, np.pi, (n, 1, 1))
    cycles = rng.uniform(2, 5, (n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle)) + phase)
    c1, c2 = rng.uniform(*palette, (2, n, 1, 1, 3))
    return _to_uint8(c1 + (c2 - c1) * wave[..., None])


def collapsed(image, n):
    """One image (S, S, 3) repeated n times: (n, S, S, 3)."""
    return np.repeat(np.asarray(image)[None], n, axis=0)
