"""Spectral normalisation (Miyato et al. 2018): use W / sigma(W) in place of W.

sigma(W), W's largest singular value, is estimated by power iteration on a
persistent vector ``u`` (one step per training forward, as in the paper):

    W_mat = W reshaped to (rows, cols), rows = W.shape[dim]
    v <- normalize(W_mat^T u);  u <- normalize(W_mat v)        (no gradient)
    sigma = u^T W_mat v                                        (gradient flows through W)

``dim`` is 0 for Linear/Conv2d and 1 for ConvTranspose2d (whose weight is
(in, out, kh, kw)), as in ``torch.nn.utils.spectral_norm``, so the two give
the same sigma from the same ``u``. In eval mode ``u`` and ``v`` are used as
they are, without another power step.
"""
from __future__ import annotations

import numpy as np

import minigan.ops as F
from minigan import backend, random
from minigan.nn.layers import ConvTranspose2d
from minigan.nn.module import Module, Parameter
from minigan.tensor import Tensor


def _normalize(a, eps):
    xp = backend.array_module(a)
    return a / xp.maximum(xp.linalg.norm(a), eps)


class SpectralNorm(Module):
    def __init__(self, module: Module, n_power_iterations: int = 1, eps: float = 1e-12, dim=None):
        self.module = module
        self.dim = (1 if isinstance(module, ConvTranspose2d) else 0) if dim is None else dim
        self.n_power_iterations, self.eps = n_power_iterations, eps
        weight = module.weight
        self.weight_orig = Parameter(weight.data)
        module.weight = None  # recomputed from weight_orig on every call
        rows = weight.shape[self.dim]
        cols = weight.size // rows
        rng = random.get_rng()
        self.register_buffer("u", _normalize(rng.standard_normal(rows).astype(weight.dtype), eps))
        self.register_buffer("v", _normalize(rng.standard_normal(cols).astype(weight.dtype), eps))

    def _matrix(self, w):
        """W as (rows, cols) with axis ``dim`` first (raw array or Tensor)."""
        if self.dim != 0:
            axes = (self.dim,) + tuple(i for i in range(w.ndim) if i != self.dim)
            w = w.transpose(axes) if not isinstance(w, Tensor) else F.transpose(w, axes)
        return w.reshape(w.shape[0], -1) if not isinstance(w, Tensor) else F.reshape(w, (w.shape[0], -1))

    def power_iteration(self):
        """Advance u and v (in place) by ``n_power_iterations`` steps."""
        w = self._matrix(self.weight_orig.data)
        for _ in range(self.n_power_iterations):
            self.v[...] = _normalize(w.T @ self.u, self.eps)
            self.u[...] = _normalize(w @ self.v, self.eps)

    def sigma(self):
        """u^T W v as a Tensor, differentiable with respect to W only."""
        w = self._matrix(self.weight_orig)
        wv = F.matmul(w, Tensor(self.v.copy().reshape(-1, 1)))
        return F.sum(wv * Tensor(self.u.copy().reshape(-1, 1)))

    def normalized_weight(self):
        if self.training:
            self.power_iteration()
        return self.weight_orig / self.sigma()

    def forward(self, *args, **kwargs):
        self.module.weight = self.normalized_weight()
        try:
            return self.module(*args, **kwargs)
        finally:
            self.module.weight = None


def spectral_norm(module: Module, **kwargs) -> SpectralNorm:
    return SpectralNorm(module, **kwargs)
