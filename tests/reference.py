"""NumPy references, one per op, written straight from the definitions (slow, direct, float64).

Every test that checks an op's values against NumPy uses the function here:
tests/kernels (the CPU twins of kernels/*.cu) and tests/gradcheck (the ops,
which catches an op whose gradient is consistent with a wrong forward).
"""
import numpy as np


# ---------------------------------------------------------------------------
# convolution: the ops, and the im2col / col2im kernels under them
# ---------------------------------------------------------------------------
def conv2d(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    s, p = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = (h + 2 * p - kh) // s + 1, (wd + 2 * p - kw) // s + 1
    out = np.zeros((n, oc, oh, ow))
    for y in range(oh):
        for xx in range(ow):
            patch = xp[:, :, y * s:y * s + kh, xx * s:xx * s + kw]  # (N, C, KH, KW)
            out[:, :, y, xx] = np.einsum("ncij,ocij->no", patch, w)
    return out + (0 if b is None else b.reshape(1, -1, 1, 1))


def conv_transpose2d(x, w, b, stride, padding, output_padding):
    """Scatter definition: every input pixel adds w[c] * x into the output window."""
    n, c, h, wd = x.shape
    _, oc, kh, kw = w.shape
    s, p = stride, padding
    oh, ow = (h - 1) * s - 2 * p + kh + output_padding, (wd - 1) * s - 2 * p + kw + output_padding
    full = np.zeros((n, oc, oh + 2 * p + kh, ow + 2 * p + kw))
    for y in range(h):
        for xx in range(wd):
            full[:, :, y * s:y * s + kh, xx * s:xx * s + kw] += np.einsum("nc,coij->noij", x[:, :, y, xx], w)
    out = full[:, :, p:p + oh, p:p + ow]
    return out + (0 if b is None else b.reshape(1, -1, 1, 1))


def _windows(h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    """Padded size and, per (i, j), the strided slices of the padded image that (oy, ox) reads."""
    hp, wp = max(h + 2 * ph, (oh - 1) * sh + kh), max(w + 2 * pw, (ow - 1) * sw + kw)
    slices = {(i, j): (slice(i, i + (oh - 1) * sh + 1, sh), slice(j, j + (ow - 1) * sw + 1, sw))
              for i in range(kh) for j in range(kw)}
    return hp, wp, slices


def im2col(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """(N, C, H, W) -> (C*KH*KW, N*OH*OW), the map of kernels/README.md; x's dtype (a copy is exact)."""
    n, c, h, w = x.shape
    hp, wp, slices = _windows(h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    padded = np.zeros((n, c, hp, wp), dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for (i, j), (ys, xs) in slices.items():
        cols[:, :, i, j] = padded[:, :, ys, xs]
    return cols.transpose(1, 2, 3, 0, 4, 5).reshape(c * kh * kw, n * oh * ow)


def col2im(cols, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    """The scatter form: every column entry is added back onto the pixel it was copied from."""
    hp, wp, slices = _windows(h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    padded = np.zeros((n, c, hp, wp), dtype=np.float64)
    cols = cols.reshape(c, kh, kw, n, oh, ow).transpose(3, 0, 1, 2, 4, 5)
    for (i, j), (ys, xs) in slices.items():
        padded[:, :, ys, xs] += cols[:, :, i, j]
    return padded[:, :, ph:ph + h, pw:pw + w]


# ---------------------------------------------------------------------------
# batch norm (training mode), softmax, attention
# ---------------------------------------------------------------------------
def _per_channel(a):
    return a[None, :, None, None]


def batch_norm(x, gamma, beta, eps):
    """Training-mode batch norm of x (N, C, H, W): (y, mean (C,), invstd (C,)), biased variance."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3))
    invstd = 1.0 / np.sqrt(x64.var(axis=(0, 2, 3)) + eps)
    xhat = (x64 - _per_channel(mean)) * _per_channel(invstd)
    return xhat * _per_channel(gamma) + _per_channel(beta), mean, invstd


def batch_norm_backward(x, gy, gamma, mean, invstd):
    """(gx, ggamma, gbeta) of training-mode batch norm: the formula of kernels/batchnorm.cu."""
    x, gy, gamma, mean, invstd = (np.asarray(a, dtype=np.float64) for a in (x, gy, gamma, mean, invstd))
    count = x.size // x.shape[1]
    xhat = (x - _per_channel(mean)) * _per_channel(invstd)
    gbeta = gy.sum(axis=(0, 2, 3))
    ggamma = (gy * xhat).sum(axis=(0, 2, 3))
    gx = _per_channel(gamma * invstd) * (gy - _per_channel(gbeta) / count - xhat * _per_channel(ggamma) / count)
    return gx, ggamma, gbeta


def softmax(x, axis=-1):
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(y, gy):
    """gx of a row-wise softmax from its output y and the output gradient gy (rows, cols)."""
    y, gy = y.astype(np.float64), gy.astype(np.float64)
    return y * (gy - (y * gy).sum(axis=1, keepdims=True))


def attention(q, k, v):
    """q, k (N, Cq, L), v (N, Cv, L) -> (N, Cv, L): position j averages v over the softmax of q_j . k_i."""
    beta = softmax(np.einsum("ncj,nci->nji", q, k))
    return np.einsum("nji,nci->ncj", beta, v)


# ---------------------------------------------------------------------------
# activations, upsampling
# ---------------------------------------------------------------------------
def activation(x, name, alpha=0.0):
    """relu, leaky_relu, elu, tanh or sigmoid of x, in float64."""
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        return {"relu": np.maximum(x64, 0), "leaky_relu": np.where(x64 > 0, x64, alpha * x64),
                "elu": np.where(x64 > 0, x64, alpha * np.expm1(np.minimum(x64, 0))), "tanh": np.tanh(x64),
                "sigmoid": 1 / (1 + np.exp(-x64))}[name]


def activation_grad(x, gy, name, alpha=0.0):
    """gy * f'(x), from x alone (the kernels use the saved output y where cheaper)."""
    x64, y = x.astype(np.float64), activation(x, name, alpha)
    slope = {"relu": (x64 > 0) * 1.0, "leaky_relu": np.where(x64 > 0, 1.0, alpha),
             "elu": np.where(x64 > 0, 1.0, alpha * np.exp(np.minimum(x64, 0))), "tanh": 1 - y * y,
             "sigmoid": y * (1 - y)}[name]
    return gy * slope


def upsample_nearest(x, scale):
    """(N, C, H, W) -> (N, C, H*scale, W*scale), every pixel repeated; x's dtype (a copy is exact)."""
    return x.repeat(scale, axis=2).repeat(scale, axis=3)


def upsample_nearest_backward(gy, scale):
    """Each scale x scale block of gy summed; rows and columns past a whole block are dropped."""
    n, c, oh, ow = gy.shape
    h, w = oh // scale, ow // scale
    blocks = gy[:, :, :h * scale, :w * scale].astype(np.float64).reshape(n, c, h, scale, w, scale)
    return blocks.sum(axis=(3, 5))


# ---------------------------------------------------------------------------
# Adam
# ---------------------------------------------------------------------------
def adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One step of the paper's Algorithm 1 (+ L2 decay, as torch.optim.Adam): new (p, m, v), float64."""
    p, g, m, v = (np.asarray(a, dtype=np.float64) for a in (p, g, m, v))
    g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    p = p - lr * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + eps)
    return p, m, v


def adam(p, grads, lr, betas, eps, weight_decay):
    """Run adam_step over a list of gradients from zero moments: the final parameters."""
    m = v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        p, m, v = adam_step(p, g, m, v, lr, betas[0], betas[1], eps, weight_decay, t)
    return p
