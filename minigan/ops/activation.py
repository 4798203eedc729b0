"""Activations: relu, leaky_relu, elu, tanh, sigmoid (one kernel-contract pair each way)."""
from __future__ import annotations

from minigan import backend
from minigan.backend.cpu import ACTIVATIONS
from minigan.tensor import Function


class Activation(Function):
    """y = act(x), elementwise; ``kind`` names the activation, ``alpha`` its slope/scale."""

    @staticmethod
    def forward(ctx, x, kind, alpha=0.0):
        ctx.code, ctx.alpha = ACTIVATIONS[kind], alpha
        y = backend.kernels_for(x).activation_forward(x, ctx.code, alpha)
        ctx.save(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved
        return backend.kernels_for(x).activation_backward(x, y, g, ctx.code, ctx.alpha)


def relu(x): return Activation.apply(x, kind="relu")
def leaky_relu(x, slope=0.2): return Activation.apply(x, kind="leaky_relu", alpha=slope)
def elu(x, alpha=1.0): return Activation.apply(x, kind="elu", alpha=alpha)
def tanh(x): return Activation.apply(x, kind="tanh")
def sigmoid(x): return Activation.apply(x, kind="sigmoid")
