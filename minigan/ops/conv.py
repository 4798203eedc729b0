"""2-D convolution and transposed convolution through im2col / col2im + GEMM.

Shapes:
    conv2d:            x (N, C, H, W), w (OC, C, KH, KW), b (OC,) -> (N, OC, OH, OW)
                       OH = (H + 2*PH - KH) // SH + 1
    conv_transpose2d:  x (N, C, H, W), w (C, OC, KH, KW), b (OC,) -> (N, OC, OH, OW)
                       OH = (H - 1)*SH - 2*PH + KH + output_padding

conv2d lays every receptive field out as a column (im2col) so the convolution
is one matrix product per image: W (OC, C*KH*KW) @ cols (C*KH*KW, OH*OW).
Its input gradient is that product transposed followed by col2im, which
sums each column entry back onto the pixel it came from.

conv_transpose2d is exactly the adjoint of conv2d, so it is built from the
same two kernels the other way round: forward = GEMM then col2im, input
gradient = im2col then GEMM.
"""
from __future__ import annotations

from minigan import backend
from minigan.tensor import Function


def _pair(v):
    return (int(v), int(v)) if not isinstance(v, (tuple, list)) else (int(v[0]), int(v[1]))


def conv_output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def conv_transpose_output_size(size, kernel, stride, padding, output_padding):
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def _weight_gradient(a, b):
    """sum_n a[n] @ b[n]^T for a (N, P, L), b (N, Q, L) -> (P, Q): one GEMM over N*L."""
    xp = backend.array_module(a)
    return xp.tensordot(a, b, axes=([0, 2], [0, 2]))


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, w, b=None, stride=1, padding=0):
        (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
        n, c, h, wd = x.shape
        oc, c_w, kh, kw = w.shape
        if c != c_w:
            raise ValueError(f"conv2d: input has {c} channels but the weight expects {c_w}.")
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(wd, kw, sw, pw)
        if oh < 1 or ow < 1:
            raise ValueError(f"conv2d: a {kh}x{kw} kernel does not fit a {h}x{wd} input with padding {ph},{pw}.")
        k = backend.kernels_for(x)
        cols = k.im2col(x, kh, kw, sh, sw, ph, pw, oh, ow)  # (N, C*KH*KW, OH*OW)
        y = w.reshape(oc, -1) @ cols  # (N, OC, OH*OW)
        if b is not None:
            y += b.reshape(1, oc, 1)
        ctx.save(cols, w)
        ctx.geometry = (c, h, wd, kh, kw, sh, sw, ph, pw, oh, ow)
        return y.reshape(n, oc, oh, ow)

    @staticmethod
    def backward(ctx, g):
        cols, w = ctx.saved
        c, h, wd, kh, kw, sh, sw, ph, pw, oh, ow = ctx.geometry
        n, oc = g.shape[:2]
        g = g.reshape(n, oc, oh * ow)
        gx = gw = gb = None
        if ctx.needs_grad[0]:
            gcols = w.reshape(oc, -1).T @ g  # (N, C*KH*KW, OH*OW)
            gx = backend.kernels_for(g).col2im(gcols, c, h, wd, kh, kw, sh, sw, ph, pw, oh, ow)
        if ctx.needs_grad[1]:
            gw = _weight_gradient(g, cols).reshape(w.shape)
        if len(ctx.needs_grad) > 2 and ctx.needs_grad[2]:
            gb = g.sum(axis=(0, 2))
        return gx, gw, gb


class ConvTranspose2d(Function):
    @staticmethod
    def forward(ctx, x, w, b=None, stride=1, padding=0, output_padding=0):
        (sh, sw), (ph, pw), (oph, opw) = _pair(stride), _pair(padding), _pair(output_padding)
        if oph >= sh or opw >= sw:
            raise ValueError("conv_transpose2d: output_padding must be smaller than the stride.")
        n, c, h, wd = x.shape
        c_w, oc, kh, kw = w.shape
        if c != c_w:
            raise ValueError(f"conv_transpose2d: input has {c} channels but the weight expects {c_w}.")
        oh = conv_transpose_output_size(h, kh, sh, ph, oph)
        ow = conv_transpose_output_size(wd, kw, sw, pw, opw)
        wm = w.reshape(c, -1)  # (C, OC*KH*KW)
        cols = wm.T @ x.reshape(n, c, h * wd)  # (N, OC*KH*KW, H*W)
        y = backend.kernels_for(x).col2im(cols, oc, oh, ow, kh, kw, sh, sw, ph, pw, h, wd)
        if b is not None:
            y += b.reshape(1, oc, 1, 1)
        ctx.save(x, w)
        ctx.geometry = (kh, kw, sh, sw, ph, pw, h, wd)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        kh, kw, sh, sw, ph, pw, h, wd = ctx.geometry
        n, c = x.shape[:2]
        gcols = backend.kernels_for(g).im2col(g, kh, kw, sh, sw, ph, pw, h, wd)  # (N, OC*KH*KW, H*W)
        gx = gw = gb = None
        if ctx.needs_grad[0]:
            gx = (w.reshape(c, -1) @ gcols).reshape(x.shape)
        if ctx.needs_grad[1]:
            gw = _weight_gradient(x.reshape(n, c, h * wd), gcols).reshape(w.shape)
        if len(ctx.needs_grad) > 2 and ctx.needs_grad[2]:
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb


def conv2d(x, w, b=None, stride=1, padding=0):
    return Conv2d.apply(x, w, b, stride=stride, padding=padding)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0):
    return ConvTranspose2d.apply(x, w, b, stride=stride, padding=padding,
                                 output_padding=output_padding)
