"""Shape ops: reshape, transpose/permute, concat, slicing, zero padding."""
from __future__ import annotations

from minigan import backend
from minigan.tensor import Function, Tensor, as_tensor


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Transpose(Function):
    """Permute axes (reverse them when ``axes`` is None)."""

    @staticmethod
    def forward(ctx, a, axes=None):
        axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(axes)
        ctx.inverse = tuple(sorted(range(len(axes)), key=axes.__getitem__))
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(ctx.inverse)


class Concat(Function):
    """Join tensors along ``axis``; the gradient is split back."""

    @staticmethod
    def forward(ctx, *arrays, axis=0):
        xp = backend.array_module(arrays[0])
        ctx.axis = axis % arrays[0].ndim
        ctx.sizes = [a.shape[ctx.axis] for a in arrays]
        return xp.concatenate(arrays, axis=ctx.axis)

    @staticmethod
    def backward(ctx, g):
        grads, start = [], 0
        for n in ctx.sizes:
            index = [slice(None)] * g.ndim
            index[ctx.axis] = slice(start, start + n)
            grads.append(g[tuple(index)])
            start += n
        return tuple(grads)


class GetItem(Function):
    """Basic and advanced indexing; the gradient scatters back with add.at."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.index, ctx.dtype = a.shape, index, a.dtype
        return a[index]

    @staticmethod
    def backward(ctx, g):
        xp = backend.array_module(g)
        out = xp.zeros(ctx.shape, dtype=ctx.dtype)
        if _is_basic(ctx.index):
            out[ctx.index] = g  # slices pick each element at most once
        else:
            xp.add.at(out, ctx.index, g)  # repeated indices must accumulate
        return out


def _is_basic(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in parts)


class Pad(Function):
    """Zero-pad the last two axes: ``pads = (top, bottom, left, right)``."""

    @staticmethod
    def forward(ctx, a, pads):
        xp = backend.array_module(a)
        top, bottom, left, right = pads
        ctx.crop = (top, a.shape[-2] + top, left, a.shape[-1] + left)
        width = [(0, 0)] * (a.ndim - 2) + [(top, bottom), (left, right)]
        return xp.pad(a, width)

    @staticmethod
    def backward(ctx, g):
        y0, y1, x0, x1 = ctx.crop
        return g[..., y0:y1, x0:x1]


def reshape(a, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Reshape.apply(a, shape=shape)


def transpose(a, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return Transpose.apply(a, axes=axes or None)


def permute(a, *axes):
    return transpose(a, *axes)


def flatten(a, start=1):
    return reshape(a, tuple(a.shape[:start]) + (-1,))


def concat(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    return Concat.apply(*tensors, axis=axis)


def getitem(a, index):
    """``a[index]``; Tensors inside the index are used by value (arrays are left alone:
    a NumPy or CuPy array's own ``.data`` is its raw buffer, not an index)."""
    def unwrap(i):
        return i.data if isinstance(i, Tensor) else i

    index = tuple(unwrap(i) for i in index) if isinstance(index, tuple) else unwrap(index)
    return GetItem.apply(a, index=index)


def pad2d(a, pads):
    return Pad.apply(a, pads=tuple(int(p) for p in pads))
