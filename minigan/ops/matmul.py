"""Matrix products (cuBLAS on the GPU, BLAS on the CPU) and linear layers.

``matmul(a, b)``: (..., M, K) @ (..., K, N) -> (..., M, N) with batch
broadcasting; 1-D operands are not supported (reshape them first).
"""
from __future__ import annotations

from minigan.backend.threads import matmul as _product
from minigan.tensor import Function


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul needs 2-D or batched operands, got shapes {a.shape} and {b.shape}.")
        ctx.save(a, b)
        return _product(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = _product(g, b.swapaxes(-1, -2)) if ctx.needs_grad[0] else None
        gb = _product(a.swapaxes(-1, -2), g) if ctx.needs_grad[1] else None
        return ga, gb


def matmul(a, b):
    return MatMul.apply(a, b)


class Linear(Function):
    """y = x @ W^T + b; x (N, in), W (out, in), b (out,) or None."""

    @staticmethod
    def forward(ctx, x, w, b=None):
        ctx.save(x, w)
        y = _product(x, w.T)
        if b is not None:
            y += b
        return y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        gx = _product(g, w) if ctx.needs_grad[0] else None
        gw = _product(g.T, x) if ctx.needs_grad[1] else None
        gb = g.sum(axis=0) if len(ctx.needs_grad) > 2 and ctx.needs_grad[2] else None
        return gx, gw, gb


def linear(x, w, b=None):
    return Linear.apply(x, w, b)
