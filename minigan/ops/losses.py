"""GAN losses: hinge (SAGAN), binary cross-entropy with logits (DCGAN), L1 (BEGAN),
and cross-entropy over K+1 classes (the semi-supervised discriminator).

All return scalar Tensors (means over the batch).
"""
from __future__ import annotations

from minigan import backend
from minigan.ops.activation import relu
from minigan.ops.elementwise import abs as abs_
from minigan.ops.reduce import mean
from minigan.ops.softmax import log_softmax
from minigan.tensor import Function, Tensor, as_tensor


def hinge_d_loss(real_logits, fake_logits):
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return mean(relu(1.0 - real_logits)) + mean(relu(1.0 + fake_logits))


def hinge_g_loss(fake_logits):
    """-E[D(G(z))]."""
    return -mean(fake_logits)


class BCEWithLogits(Function):
    """mean(max(x, 0) - x*t + log(1 + exp(-|x|))): exact for any logit size.

    ``targets`` (same shape as the logits, or broadcastable) receive no gradient.
    """

    @staticmethod
    def forward(ctx, logits, targets):
        xp = backend.array_module(logits)
        targets = xp.broadcast_to(targets, logits.shape)
        ctx.save(logits, targets)
        loss = xp.maximum(logits, 0) - logits * targets + xp.log1p(xp.exp(-xp.abs(logits)))
        return loss.mean()

    @staticmethod
    def backward(ctx, g):
        logits, targets = ctx.saved
        xp = backend.array_module(logits)
        sig = 0.5 * (1.0 + xp.tanh(0.5 * logits))  # stable sigmoid
        return g * (sig - targets) / logits.size, None


def bce_with_logits(logits, targets):
    logits = as_tensor(logits)
    if not hasattr(targets, "shape"):
        xp = backend.array_module(logits.data)
        targets = xp.full(logits.shape, targets, dtype=logits.dtype)
    return BCEWithLogits.apply(logits, targets.data if isinstance(targets, Tensor) else targets)


def l1_loss(a, b):
    """mean |a - b|."""
    return mean(abs_(a - b))


def cross_entropy(logits, labels):
    """mean over the batch of -log softmax(logits)[label]; logits (N, K), labels int (N,)."""
    xp = backend.array_module(logits.data)
    labels = xp.asarray(labels.data if isinstance(labels, Tensor) else labels).astype(xp.int64)
    rows = xp.arange(labels.shape[0])
    return -mean(log_softmax(logits, axis=1)[rows, labels])
