"""Softmax and log-softmax over one axis (max-subtracted, so large logits are safe)."""
from __future__ import annotations

from minigan import backend
from minigan.tensor import Function


def _rows(a, axis):
    """Move ``axis`` last and flatten the rest: (rows, cols) for the row kernels."""
    moved = backend.array_module(a).moveaxis(a, axis, -1)
    return moved.reshape(-1, moved.shape[-1]), moved.shape


def _unrows(r, moved_shape, axis):
    return backend.array_module(r).moveaxis(r.reshape(moved_shape), -1, axis)


class Softmax(Function):
    @staticmethod
    def forward(ctx, x, axis=-1):
        rows, ctx.moved = _rows(x, axis)
        ctx.axis = axis
        y = backend.kernels_for(x).softmax_forward(rows)
        ctx.save(y)
        return _unrows(y, ctx.moved, axis)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        grow, _ = _rows(g, ctx.axis)
        return _unrows(backend.kernels_for(y).softmax_backward(y, grow), ctx.moved, ctx.axis)


class LogSoftmax(Function):
    """log softmax(x) = x - max - log(sum(exp(x - max)))."""

    @staticmethod
    def forward(ctx, x, axis=-1):
        xp = backend.array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        xp = backend.array_module(y)
        return g - xp.exp(y) * g.sum(axis=ctx.axis, keepdims=True)


def softmax(x, axis=-1): return Softmax.apply(x, axis=axis)
def log_softmax(x, axis=-1): return LogSoftmax.apply(x, axis=axis)
