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

W_mat is never materialised: W is viewed (no copy) as W3 (pre, rows, post),
pre and post the sizes of the axes before and after ``dim``, so that
W_mat[r, (a, b)] = W3[a, r, b]. Then W_mat^T u = u @ W3 and W_mat v =
sum over a of W3[a] @ V[a] (V = v viewed as (pre, post)): batched matrix-vector
products on the weight as it lies, with no transposed copy of a
ConvTranspose2d weight. W / sigma is one Function (:class:`SpectralNormalize`)
whose backward is a single expression, instead of a division, a product, a
sum and a matrix product each with full-size temporaries.
"""
from __future__ import annotations

import math

import numpy as np

import minigan.ops as F
from minigan import backend, random
from minigan.backend import cpu
from minigan.nn.layers import ConvTranspose2d
from minigan.nn.module import Module, Parameter
from minigan.tensor import Function, Tensor


def _normalize(a, eps):
    xp = backend.array_module(a)
    return a / xp.maximum(xp.linalg.norm(a), eps)


def _as_3d(w, dim):
    """W viewed as W3 (pre, rows, post) with W_mat[r, (a, b)] = W3[a, r, b] (a view, no copy)."""
    return w.reshape(math.prod(w.shape[:dim]), w.shape[dim], -1)


def _wt_u(w3, u):
    """W_mat^T u, (cols,): one matrix-vector product per slice W3[a]."""
    return (u @ w3).reshape(-1)


def _w_v(w3, v):
    """W_mat v, (rows,): sum over a of W3[a] @ V[a], V = v viewed as (pre, post)."""
    pre, _, post = w3.shape
    return (w3 @ v.reshape(pre, post, 1)).sum(axis=0).reshape(-1)


def _sigma(w3, u, v):
    """u^T W_mat v (a 0-d array of W's dtype)."""
    return (u @ _w_v(w3, v)).reshape(())


def _power_steps(w3, u, v, eps, steps):
    """cpu.spectral_power for any array module (a GPU's): ``steps`` (>= 1) power steps, u and v updated in
    place; returns sigma = u^T W_mat v (a 0-d array) from the last step's own W_mat v."""
    for _ in range(steps):
        v[...] = _normalize(_wt_u(w3, u), eps)
        wv = _w_v(w3, v)
        u[...] = _normalize(wv, eps)
    return (u @ wv).reshape(())


def _outer(u, v, w3):
    """u v^T laid out like W3: (pre, rows, post)."""
    pre, _, post = w3.shape
    return u.reshape(1, -1, 1) * v.reshape(pre, 1, post)


class SpectralNormalize(Function):
    """W / sigma with sigma = u^T W_mat v, u and v constants (the power iteration's vectors).

    w: any shape, ``dim`` the axis that indexes W_mat's rows; u (rows,), v (cols,).
    Since d sigma / dW_mat = u v^T, the gradient is
        gW = g / sigma - (sum(g * W) / sigma^2) * (u v^T laid out like W).
    """

    @staticmethod
    def forward(ctx, w, u, v, dim=0, sigma=None):
        """``sigma``: u^T W_mat v when the caller has it already (the power step's), else computed here."""
        w3 = _as_3d(w, dim)
        if sigma is None:
            sigma = _sigma(w3, u, v)
        ctx.save(w, u.copy(), v.copy())  # u, v are updated in place by the next power step
        ctx.dim, ctx.sigma = dim, sigma
        return w / sigma

    @staticmethod
    def backward(ctx, g):
        w, u, v = ctx.saved
        sigma = ctx.sigma
        xp = backend.array_module(w)
        scale = xp.vdot(g, w) / (sigma * sigma)  # sum(g * W) / sigma^2, without a temporary
        gw3 = _as_3d(g / sigma, ctx.dim)
        gw3 -= _outer(scale * u, v, gw3)
        return gw3.reshape(w.shape), None, None


class SpectralNorm(Module):
    def __init__(self, module: Module, n_power_iterations: int = 1, eps: float = 1e-12, dim=None):
        self.module = module
        self.dim = (1 if isinstance(module, ConvTranspose2d) else 0) if dim is None else dim
        self.n_power_iterations, self.eps = n_power_iterations, eps
        weight = module.weight
        self.weight_orig = Parameter(weight.data)
        module.weight = None  # W lives in weight_orig; forward passes W / sigma to module.forward
        rows = weight.shape[self.dim]
        cols = weight.size // rows
        rng = random.get_rng()
        self.register_buffer("u", _normalize(rng.standard_normal(rows).astype(weight.dtype), eps))
        self.register_buffer("v", _normalize(rng.standard_normal(cols).astype(weight.dtype), eps))

    def power_iteration(self):
        """Advance u and v (in place) by ``n_power_iterations`` steps; returns sigma = u^T W_mat v after them
        (a 0-d array of W's dtype; None after no step), from the last step's own W_mat v."""
        if self.n_power_iterations < 1:
            return None
        w = self.weight_orig.data
        w3 = _as_3d(w, self.dim)
        if isinstance(w, np.ndarray):  # one numba kernel (see cpu.spectral_power)
            sigma = cpu.spectral_power(w3, self.u, self.v, self.eps, self.n_power_iterations)
            return np.asarray(sigma, dtype=w.dtype)
        return _power_steps(w3, self.u, self.v, self.eps, self.n_power_iterations)

    def sigma(self):
        """u^T W v as a Tensor, differentiable with respect to W only (sum of W * u v^T)."""
        w = self.weight_orig
        outer = _outer(self.u, self.v, _as_3d(w.data, self.dim)).reshape(w.shape)
        return F.sum(w * Tensor(outer))

    def normalized_weight(self):
        sigma = self.power_iteration() if self.training else None
        return SpectralNormalize.apply(self.weight_orig, self.u, self.v, dim=self.dim, sigma=sigma)

    def forward(self, x):
        # the wrapped layer's own forward (Linear/Conv2d/ConvTranspose2d.forward), with W / sigma for its weight
        return self.module.forward(x, weight=self.normalized_weight())
