"""Independent references written straight from the definitions (slow, direct loops).

Used to catch an op whose gradient is consistent with a wrong forward.
"""
import numpy as np


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


def batch_norm_train(x, gamma, beta, eps):
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1)


def adam(p, grads, lr, betas, eps, weight_decay):
    """Run Adam over a list of gradients from the paper's Algorithm 1 (+ L2 decay)."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        mhat = m / (1 - betas[0] ** t)
        vhat = v / (1 - betas[1] ** t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p
