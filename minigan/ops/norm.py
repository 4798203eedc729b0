"""Batch normalisation over (N, H, W) per channel for x (N, C, H, W).

Training mode normalises with the batch's statistics (biased variance) and
updates the running statistics in place with ``momentum`` (unbiased variance,
as PyTorch does); eval mode normalises with the running statistics.
"""
from __future__ import annotations

from minigan import backend
from minigan.tensor import Function


class BatchNorm2d(Function):
    """Training-mode batch norm; inputs x, gamma (C,), beta (C,)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5, running_mean=None, running_var=None, momentum=0.1):
        y, mean, invstd = backend.kernels_for(x).batchnorm_forward(x, gamma, beta, eps)
        if running_mean is not None:
            count = x.size // x.shape[1]
            var = 1.0 / (invstd * invstd) - eps
            unbiased = var * (count / max(count - 1, 1))
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * unbiased
        ctx.save(x, gamma, mean, invstd)
        return y

    @staticmethod
    def backward(ctx, g):
        x, gamma, mean, invstd = ctx.saved
        return backend.kernels_for(g).batchnorm_backward(x, g, gamma, mean, invstd)


class BatchNormEval(Function):
    """Eval-mode batch norm: an affine map per channel from the running statistics."""

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, eps=1e-5):
        xp = backend.array_module(x)
        invstd = (1.0 / xp.sqrt(running_var + eps)).reshape(1, -1, 1, 1)
        xhat = (x - running_mean.reshape(1, -1, 1, 1)) * invstd
        ctx.save(xhat, gamma, invstd)
        return xhat * gamma.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, g):
        xhat, gamma, invstd = ctx.saved
        return (g * gamma.reshape(1, -1, 1, 1) * invstd, (g * xhat).sum(axis=(0, 2, 3)),
                g.sum(axis=(0, 2, 3)), None, None)


def batch_norm2d(x, gamma, beta, running_mean=None, running_var=None, training=True,
                 momentum=0.1, eps=1e-5):
    """Batch norm; ``running_mean``/``running_var`` are raw arrays updated in place."""
    if training:
        return BatchNorm2d.apply(x, gamma, beta, eps=eps, running_mean=running_mean,
                                 running_var=running_var, momentum=momentum)
    return BatchNormEval.apply(x, gamma, beta, running_mean, running_var, eps=eps)
