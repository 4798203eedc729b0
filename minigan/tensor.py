"""Tensor, Function and reverse-mode autodiff.

A :class:`Function` works on raw arrays: ``forward(ctx, *arrays, **params)``
returns the output array and stashes on ``ctx`` what the backward pass needs;
``backward(ctx, grad_out)`` returns one gradient per positional input (``None``
for inputs that need none). A :class:`Tensor` wraps an array and remembers the
Function that made it, so ``loss.backward()`` can walk the graph in reverse
topological order -- micrograd's story, one loop.

Every concrete Function subclass registers itself in ``Function.registry``;
``tests/gradcheck/test_coverage.py`` fails if one has no gradient check.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from minigan import backend

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded (sampling, EMA updates, metrics)."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


class Context:
    """Scratch space a Function's forward leaves for its backward."""

    def save(self, *arrays):
        self.saved = arrays


class Function:
    """Base class of every differentiable op."""

    registry: list[type["Function"]] = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Function.registry.append(cls)

    @staticmethod
    def forward(ctx, *arrays, **params):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad_out):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params) -> "Tensor":
        tensors = [as_tensor(x, like=inputs) if x is not None else None for x in inputs]
        ctx = Context()
        # which inputs the backward pass will be asked for: none under no_grad, so a forward pass can
        # skip what it would keep only for the backward (conv2d's columns, conv_transpose2d's copy of x)
        enabled = is_grad_enabled()
        ctx.needs_grad = tuple(enabled and t is not None and t.requires_grad for t in tensors)
        out = cls.forward(ctx, *[t.data if t is not None else None for t in tensors], **params)
        requires = any(ctx.needs_grad)
        result = Tensor(out, requires_grad=requires)
        if requires:
            result._node = (cls, ctx, tensors)
        return result


def _reference_array(inputs):
    for x in inputs:
        if isinstance(x, Tensor):
            return x.data
    return None


def as_tensor(x, like=None) -> "Tensor":
    """Wrap ``x`` as a Tensor; Python scalars take the dtype and device of ``like``."""
    if isinstance(x, Tensor):
        return x
    ref = _reference_array(like) if like is not None else None
    if ref is not None and np.isscalar(x):
        xp = backend.array_module(ref)
        return Tensor(xp.asarray(x, dtype=ref.dtype))
    return Tensor(x)


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the adjoint of NumPy broadcasting."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


class Tensor:
    """An array (NumPy or CuPy) plus what autodiff needs to know about it."""

    __array_priority__ = 1000  # numpy scalars defer to Tensor's operators

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        xp = backend.array_module(data)
        if not hasattr(data, "dtype") or dtype is not None:
            data = xp.asarray(data, dtype=dtype or np.float32)
        elif data.dtype.kind in "iub" and requires_grad:
            data = data.astype(np.float32)
        self.data = data
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None  # (Function subclass, ctx, input tensors) for non-leaves

    # -- array-like facts -------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self._node is None)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device={self.device}{grad})"

    def numpy(self) -> np.ndarray:
        return backend.to_numpy(self.data)

    def item(self) -> float:
        return float(self.data.reshape(-1)[0]) if self.size == 1 else float(self.data)

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def to(self, device: str) -> "Tensor":
        return Tensor(backend.to_device(self.data, device), requires_grad=self.requires_grad)

    def astype(self, dtype) -> "Tensor":
        from minigan.ops import elementwise

        return elementwise.Cast.apply(self, dtype=np.dtype(dtype))

    def zero_grad(self):
        self.grad = None

    # -- autodiff ----------------------------------------------------------
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        Walks the graph once in reverse topological order; each node's
        gradient is complete before its Function's backward runs. The graph is
        freed as it goes (no ``retain_graph``), like PyTorch's default.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require grad.")
        xp = backend.array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise RuntimeError("backward() needs a gradient argument for a non-scalar tensor.")
            grad = xp.ones_like(self.data)
        grads = {id(self): grad.data if isinstance(grad, Tensor) else grad}
        for node in reversed(_topological_order(self)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._node is None:
                node.grad = g if node.grad is None else node.grad + g
                continue
            fn, ctx, inputs = node._node
            node._node = None  # free the graph as we go
            input_grads = fn.backward(ctx, g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for t, gi in zip(inputs, input_grads):
                if t is None or gi is None or not t.requires_grad:
                    continue
                gi = unbroadcast(gi, t.shape)
                key = id(t)
                grads[key] = gi if key not in grads else grads[key] + gi

    # -- operators (defined in minigan.ops, bound here) ----------------------
    def __add__(self, other): return _ops().add(self, other)
    def __radd__(self, other): return _ops().add(other, self)
    def __sub__(self, other): return _ops().sub(self, other)
    def __rsub__(self, other): return _ops().sub(other, self)
    def __mul__(self, other): return _ops().mul(self, other)
    def __rmul__(self, other): return _ops().mul(other, self)
    def __truediv__(self, other): return _ops().div(self, other)
    def __rtruediv__(self, other): return _ops().div(other, self)
    def __neg__(self): return _ops().neg(self)
    def __pow__(self, exponent): return _ops().pow(self, exponent)
    def __matmul__(self, other): return _ops().matmul(self, other)
    def __getitem__(self, index): return _ops().getitem(self, index)

    def sum(self, axis=None, keepdims=False): return _ops().sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _ops().mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _ops().max(self, axis, keepdims)
    def reshape(self, *shape): return _ops().reshape(self, *shape)
    def transpose(self, *axes): return _ops().transpose(self, *axes)
    def exp(self): return _ops().exp(self)
    def log(self): return _ops().log(self)
    def abs(self): return _ops().abs(self)
    def sqrt(self): return _ops().sqrt(self)
    def relu(self): return _ops().relu(self)
    def tanh(self): return _ops().tanh(self)
    def sigmoid(self): return _ops().sigmoid(self)

    @property
    def T(self): return _ops().transpose(self)


def _ops():
    import minigan.ops as ops

    return ops


def _topological_order(root: Tensor) -> list[Tensor]:
    """Nodes reachable from ``root``, each after all of its inputs (iterative DFS)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._node is not None:
            for t in node._node[2]:
                if t is not None and t.requires_grad and id(t) not in visited:
                    stack.append((t, False))
    return order
