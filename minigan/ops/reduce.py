"""Reductions over axes: sum, mean, max.

``axis`` is None (all), an int or a tuple; ``keepdims`` as in NumPy.
"""
from __future__ import annotations

from minigan import backend
from minigan.tensor import Function


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axis)


def _expand(g, shape, axes):
    """Re-insert reduced axes of size 1 so ``g`` broadcasts against ``shape``."""
    kept = [1 if i in axes else n for i, n in enumerate(shape)]
    return g.reshape(kept)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axes = a.shape, _axes(axis, a.ndim)
        return a.sum(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        xp = backend.array_module(g)
        return xp.broadcast_to(_expand(g, ctx.shape, ctx.axes), ctx.shape)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axes = a.shape, _axes(axis, a.ndim)
        count = 1
        for i in ctx.axes:
            count *= a.shape[i]
        ctx.count = count
        return a.mean(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        xp = backend.array_module(g)
        return xp.broadcast_to(_expand(g, ctx.shape, ctx.axes) / ctx.count, ctx.shape)


class Max(Function):
    """Max over axes; ties share the gradient equally."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.axes = _axes(axis, a.ndim)
        y = a.max(axis=ctx.axes, keepdims=True)
        ctx.save(a, y)
        return y if keepdims else y.reshape([n for i, n in enumerate(a.shape) if i not in ctx.axes])

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved
        mask = (a == y).astype(a.dtype)
        mask /= mask.sum(axis=ctx.axes, keepdims=True)
        return mask * _expand(g, a.shape, ctx.axes)


def sum(a, axis=None, keepdims=False): return Sum.apply(a, axis=axis, keepdims=keepdims)  # noqa: A001
def mean(a, axis=None, keepdims=False): return Mean.apply(a, axis=axis, keepdims=keepdims)
def max(a, axis=None, keepdims=False): return Max.apply(a, axis=axis, keepdims=keepdims)  # noqa: A001
