"""Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""
from __future__ import annotations

import numpy as np

from minigan import backend
from minigan.tensor import Function


class Dropout(Function):
    """``mask`` is drawn by the caller (a seeded host generator), so runs are reproducible."""

    @staticmethod
    def forward(ctx, x, mask):
        ctx.save(mask)
        return x * mask

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved
        return g * mask, None


def dropout(x, p, rng: np.random.Generator, training=True):
    if not training or p == 0:
        return x
    keep = (rng.random(x.shape) >= p).astype(x.dtype) / (1.0 - p)
    mask = backend.to_device(keep, x.device)
    return Dropout.apply(x, mask)
