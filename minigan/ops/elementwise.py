"""Elementwise arithmetic and math with NumPy broadcasting.

Shapes: any; binary ops broadcast like NumPy and ``Tensor.backward`` sums each
gradient back to its input's shape (``unbroadcast``).
"""
from __future__ import annotations

from minigan import backend
from minigan.tensor import Function


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, -g


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return (g * b if ctx.needs_grad[0] else None), (g * a if ctx.needs_grad[1] else None)


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = g / b if ctx.needs_grad[0] else None
        gb = -g * a / (b * b) if ctx.needs_grad[1] else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    """a ** p for a constant exponent p."""

    @staticmethod
    def forward(ctx, a, exponent):
        ctx.save(a)
        ctx.exponent = exponent
        return a ** exponent

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        p = ctx.exponent
        return g * p * a ** (p - 1)


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        y = backend.array_module(a).exp(a)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * y


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save(a)
        return backend.array_module(a).log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g / a


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        y = backend.array_module(a).sqrt(a)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g / (2 * y)


class Abs(Function):
    """|a|, with subgradient 0 at 0 (as PyTorch)."""

    @staticmethod
    def forward(ctx, a):
        xp = backend.array_module(a)
        ctx.save(a)
        return xp.abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g * backend.array_module(a).sign(a)


class Cast(Function):
    """Change dtype (float32 <-> float64); the gradient is cast back."""

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype)


def add(a, b): return Add.apply(a, b)
def sub(a, b): return Sub.apply(a, b)
def mul(a, b): return Mul.apply(a, b)
def div(a, b): return Div.apply(a, b)
def neg(a): return Neg.apply(a)
def pow(a, exponent): return Pow.apply(a, exponent=exponent)  # noqa: A001
def exp(a): return Exp.apply(a)
def log(a): return Log.apply(a)
def sqrt(a): return Sqrt.apply(a)
def abs(a): return Abs.apply(a)  # noqa: A001
