"""CPU kernels (numba): the CPU side of the kernel contract.

Every function here has a twin of the same name and signature in
:mod:`minigan.backend.cuda` that launches a kernel from ``kernels/*.cu``;
``tests/kernels`` compares the two. Arrays are C-contiguous float32 or float64.

Layouts (the same on both devices):

* images ``x``: (N, C, H, W)
* im2col columns: (C*KH*KW, N*OH*OW); row ``(c*KH + i)*KW + j``, column
  ``(n*OH + oy)*OW + ox`` holds the input value
  ``x[n, c, oy*SH - PH + i, ox*SW - PW + j]`` (0 outside the image). With
  the whole batch side by side, a convolution is ONE matrix product
  W (OC, C*KH*KW) @ cols, large enough to keep BLAS / cuBLAS busy even for
  the 4x4 layers of a batch of 5.
* batch-norm statistics: per channel, over (N, H, W).
* softmax: over the last axis of a 2-D (rows, cols) array.

All kernels are ``cache=True`` so their machine code is reused across runs.
"""
from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import prange

# numba's OpenMP threads spin after each parallel kernel and starve the BLAS
# threads of the matrix products that follow (measured: a 0.8 ms GEMM took
# 13 ms right after a numba kernel on 2 cores). The workqueue layer sleeps.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

_jit = dict(cache=True, fastmath=False)
_pjit = dict(_jit, parallel=True)

# activation codes shared with kernels/activations.cu
RELU, LEAKY_RELU, ELU, TANH, SIGMOID = 0, 1, 2, 3, 4
ACTIVATIONS = {"relu": RELU, "leaky_relu": LEAKY_RELU, "elu": ELU, "tanh": TANH, "sigmoid": SIGMOID}


def _contiguous(*arrays):
    return [np.ascontiguousarray(a) for a in arrays]


# ---------------------------------------------------------------------------
# im2col / col2im
# ---------------------------------------------------------------------------
@numba.njit(**_pjit)
def _im2col(x, cols, kh, kw, sh, sw, ph, pw, oh, ow):
    n_img, c_in, h, w = x.shape
    for cij in prange(c_in * kh * kw):  # one row of cols per iteration: no two write the same memory
        c = cij // (kh * kw)
        i = (cij // kw) % kh
        j = cij % kw
        for n in range(n_img):
            for oy in range(oh):
                y = oy * sh - ph + i
                base = (n * oh + oy) * ow
                if y < 0 or y >= h:
                    for ox in range(ow):
                        cols[cij, base + ox] = 0.0
                    continue
                for ox in range(ow):
                    xx = ox * sw - pw + j
                    if 0 <= xx < w:
                        cols[cij, base + ox] = x[n, c, y, xx]
                    else:
                        cols[cij, base + ox] = 0.0


def im2col(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """x (N, C, H, W) -> columns (C*KH*KW, N*OH*OW)."""
    (x,) = _contiguous(x)
    n, c = x.shape[:2]
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    _im2col(x, cols, kh, kw, sh, sw, ph, pw, oh, ow)
    return cols


@numba.njit(**_pjit)
def _col2im(cols, x, kh, kw, sh, sw, ph, pw, oh, ow):
    # Gather: each image pixel sums the column entries that copied it. No
    # two iterations write the same pixel, so no atomics and a fixed order.
    n_img, c_in, h, w = x.shape
    for nc in prange(n_img * c_in):
        n = nc // c_in
        c = nc % c_in
        for y in range(h):
            for xx in range(w):
                acc = 0.0
                yp = y + ph
                xp = xx + pw
                for i in range(kh):
                    ty = yp - i
                    if ty < 0 or ty % sh != 0:
                        continue
                    oy = ty // sh
                    if oy >= oh:
                        continue
                    for j in range(kw):
                        tx = xp - j
                        if tx < 0 or tx % sw != 0:
                            continue
                        ox = tx // sw
                        if ox >= ow:
                            continue
                        acc += cols[(c * kh + i) * kw + j, (n * oh + oy) * ow + ox]
                x[n, c, y, xx] = acc


def col2im(cols, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    """columns (C*KH*KW, N*OH*OW) -> image (N, C, H, W), summing overlaps."""
    (cols,) = _contiguous(cols)
    x = np.empty((n, c, h, w), dtype=cols.dtype)
    _col2im(cols, x, kh, kw, sh, sw, ph, pw, oh, ow)
    return x


# ---------------------------------------------------------------------------
# batch norm (training mode: batch statistics)
# ---------------------------------------------------------------------------
@numba.njit(**_pjit)
def _batchnorm_forward(x, gamma, beta, eps, y, mean, invstd):
    n_img, ch, h, w = x.shape
    count = n_img * h * w
    for c in prange(ch):
        s = 0.0
        for n in range(n_img):
            for i in range(h):
                for j in range(w):
                    s += x[n, c, i, j]
        mu = s / count
        ss = 0.0
        for n in range(n_img):
            for i in range(h):
                for j in range(w):
                    d = x[n, c, i, j] - mu
                    ss += d * d
        inv = 1.0 / math.sqrt(ss / count + eps)
        mean[c] = mu
        invstd[c] = inv
        scale = gamma[c] * inv
        shift = beta[c] - mu * scale
        for n in range(n_img):
            for i in range(h):
                for j in range(w):
                    y[n, c, i, j] = x[n, c, i, j] * scale + shift


def batchnorm_forward(x, gamma, beta, eps):
    """Normalise x (N, C, H, W) per channel with batch statistics (biased variance).

    Returns (y, mean (C,), invstd (C,)).
    """
    x, gamma, beta = _contiguous(x, gamma, beta)
    ch = x.shape[1]
    y = np.empty_like(x)
    mean = np.empty(ch, dtype=x.dtype)
    invstd = np.empty(ch, dtype=x.dtype)
    _batchnorm_forward(x, gamma, beta, eps, y, mean, invstd)
    return y, mean, invstd


@numba.njit(**_pjit)
def _batchnorm_backward(x, gy, gamma, mean, invstd, gx, ggamma, gbeta):
    n_img, ch, h, w = x.shape
    count = n_img * h * w
    for c in prange(ch):
        sg = 0.0
        sgx = 0.0
        for n in range(n_img):
            for i in range(h):
                for j in range(w):
                    g = gy[n, c, i, j]
                    sg += g
                    sgx += g * (x[n, c, i, j] - mean[c]) * invstd[c]
        gbeta[c] = sg
        ggamma[c] = sgx
        k = gamma[c] * invstd[c] / count
        for n in range(n_img):
            for i in range(h):
                for j in range(w):
                    xhat = (x[n, c, i, j] - mean[c]) * invstd[c]
                    gx[n, c, i, j] = k * (count * gy[n, c, i, j] - sg - xhat * sgx)


def batchnorm_backward(x, gy, gamma, mean, invstd):
    """Gradients of training-mode batch norm: returns (gx, ggamma, gbeta)."""
    x, gy, gamma, mean, invstd = _contiguous(x, gy, gamma, mean, invstd)
    ch = x.shape[1]
    gx = np.empty_like(x)
    ggamma = np.empty(ch, dtype=x.dtype)
    gbeta = np.empty(ch, dtype=x.dtype)
    _batchnorm_backward(x, gy, gamma, mean, invstd, gx, ggamma, gbeta)
    return gx, ggamma, gbeta


# ---------------------------------------------------------------------------
# softmax over the last axis of a 2-D array
# ---------------------------------------------------------------------------
@numba.njit(**_pjit)
def _softmax_forward(x, y):
    rows, cols = x.shape
    for r in prange(rows):
        m = x[r, 0]
        for k in range(1, cols):
            if x[r, k] > m:
                m = x[r, k]
        s = 0.0
        for k in range(cols):
            e = math.exp(x[r, k] - m)
            y[r, k] = e
            s += e
        inv = 1.0 / s
        for k in range(cols):
            y[r, k] *= inv


def softmax_forward(x):
    """Row-wise softmax of x (rows, cols), max-subtracted for stability."""
    (x,) = _contiguous(x)
    y = np.empty_like(x)
    _softmax_forward(x, y)
    return y


@numba.njit(**_pjit)
def _softmax_backward(y, gy, gx):
    rows, cols = y.shape
    for r in prange(rows):
        dot = 0.0
        for k in range(cols):
            dot += y[r, k] * gy[r, k]
        for k in range(cols):
            gx[r, k] = y[r, k] * (gy[r, k] - dot)


def softmax_backward(y, gy):
    """gx = y * (gy - sum(y * gy)) row by row."""
    y, gy = _contiguous(y, gy)
    gx = np.empty_like(y)
    _softmax_backward(y, gy, gx)
    return gx


# ---------------------------------------------------------------------------
# activations (elementwise, flattened)
# ---------------------------------------------------------------------------
@numba.njit(**_pjit)
def _activation_forward(x, y, kind, alpha):
    for i in prange(x.size):
        v = x[i]
        if kind == 0:
            y[i] = v if v > 0 else 0.0
        elif kind == 1:
            y[i] = v if v > 0 else alpha * v
        elif kind == 2:
            y[i] = v if v > 0 else alpha * math.expm1(v)
        elif kind == 3:
            y[i] = math.tanh(v)
        else:
            if v >= 0:
                y[i] = 1.0 / (1.0 + math.exp(-v))
            else:
                e = math.exp(v)
                y[i] = e / (1.0 + e)


def activation_forward(x, kind, alpha):
    """y = act(x) for act in ACTIVATIONS (``kind`` is its code)."""
    (x,) = _contiguous(x)
    y = np.empty_like(x)
    _activation_forward(x.reshape(-1), y.reshape(-1), kind, x.dtype.type(alpha))
    return y


@numba.njit(**_pjit)
def _activation_backward(x, y, gy, gx, kind, alpha):
    for i in prange(x.size):
        if kind == 0:
            gx[i] = gy[i] if x[i] > 0 else 0.0
        elif kind == 1:
            gx[i] = gy[i] if x[i] > 0 else alpha * gy[i]
        elif kind == 2:
            gx[i] = gy[i] if x[i] > 0 else gy[i] * (y[i] + alpha)
        elif kind == 3:
            gx[i] = gy[i] * (1.0 - y[i] * y[i])
        else:
            gx[i] = gy[i] * y[i] * (1.0 - y[i])


def activation_backward(x, y, gy, kind, alpha):
    """gx from the input x, the output y and the output gradient gy."""
    x, y, gy = _contiguous(x, y, gy)
    gx = np.empty_like(x)
    _activation_backward(x.reshape(-1), y.reshape(-1), gy.reshape(-1), gx.reshape(-1),
                         kind, x.dtype.type(alpha))
    return gx


# ---------------------------------------------------------------------------
# nearest-neighbour upsampling by an integer factor
# ---------------------------------------------------------------------------
@numba.njit(**_pjit)
def _upsample_nearest_forward(x, y, scale):
    n_img, ch, h, w = x.shape
    for nc in prange(n_img * ch):
        n = nc // ch
        c = nc % ch
        for i in range(h * scale):
            for j in range(w * scale):
                y[n, c, i, j] = x[n, c, i // scale, j // scale]


def upsample_nearest_forward(x, scale):
    """x (N, C, H, W) -> (N, C, H*scale, W*scale), each pixel repeated."""
    (x,) = _contiguous(x)
    n, c, h, w = x.shape
    y = np.empty((n, c, h * scale, w * scale), dtype=x.dtype)
    _upsample_nearest_forward(x, y, scale)
    return y


@numba.njit(**_pjit)
def _upsample_nearest_backward(gy, gx, scale):
    n_img, ch, h, w = gx.shape
    for nc in prange(n_img * ch):
        n = nc // ch
        c = nc % ch
        for i in range(h):
            for j in range(w):
                acc = 0.0
                for a in range(scale):
                    for b in range(scale):
                        acc += gy[n, c, i * scale + a, j * scale + b]
                gx[n, c, i, j] = acc


def upsample_nearest_backward(gy, scale):
    """Sum each scale x scale block of gy (N, C, H*s, W*s) into gx (N, C, H, W)."""
    (gy,) = _contiguous(gy)
    n, c, h, w = gy.shape
    gx = np.empty((n, c, h // scale, w // scale), dtype=gy.dtype)
    _upsample_nearest_backward(gy, gx, scale)
    return gx


# ---------------------------------------------------------------------------
# Adam, in place
# ---------------------------------------------------------------------------
@numba.njit(**_pjit)
def _adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, bias1, bias2):
    for i in prange(p.size):
        gi = g[i] + weight_decay * p[i]
        mi = beta1 * m[i] + (1.0 - beta1) * gi
        vi = beta2 * v[i] + (1.0 - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= lr * (mi / bias1) / (math.sqrt(vi / bias2) + eps)


def adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam update of ``param`` (and its moments ``m``, ``v``) in place.

    ``step`` counts from 1; weight decay is the L2 kind (added to the gradient),
    as in ``torch.optim.Adam``.
    """
    t = param.dtype.type
    bias1 = 1.0 - beta1 ** step
    bias2 = 1.0 - beta2 ** step
    _adam_step(param.reshape(-1), np.ascontiguousarray(grad).reshape(-1), m.reshape(-1),
               v.reshape(-1), t(lr), t(beta1), t(beta2), t(eps), t(weight_decay), t(bias1),
               t(bias2))


def adam_step_multi(params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, step):
    """adam_step on every (param, grad, m, v) of the lists (one fused launch on the GPU)."""
    if not len(params) == len(grads) == len(ms) == len(vs):
        raise ValueError("adam_step_multi: params, grads, ms and vs must have the same length.")
    for param, grad, m, v in zip(params, grads, ms, vs):
        adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step)
