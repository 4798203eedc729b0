"""2-D convolution and transposed convolution through im2col / col2im + GEMM.

Shapes:
    conv2d:            x (N, C, H, W), w (OC, C, KH, KW), b (OC,) -> (N, OC, OH, OW)
                       OH = (H + 2*PH - KH) // SH + 1
    conv_transpose2d:  x (N, C, H, W), w (C, OC, KH, KW), b (OC,) -> (N, OC, OH, OW)
                       OH = (H - 1)*SH - 2*PH + KH + output_padding

conv2d lays every receptive field out as a column (im2col), the whole batch
side by side, so the convolution is ONE matrix product:
W (OC, C*KH*KW) @ cols (C*KH*KW, N*OH*OW) -> (OC, N*OH*OW).
Its input gradient is that product transposed followed by col2im, which
sums each column entry back onto the pixel it came from.

conv_transpose2d is exactly the adjoint of conv2d, so it is built from the
same two kernels the other way round: forward = GEMM then col2im, input
gradient = im2col then GEMM.

A 1x1 convolution with stride 1 and no padding (SAGAN's attention has 12)
needs neither kernel: each column is one pixel's channel vector, so the
columns are x itself laid out channels first, and col2im is the way back to
batch first (no window overlaps, nothing to sum).
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


def _channels_first(a):
    """(N, C, H, W) -> (C, N*H*W), contiguous: the layout the GEMMs and columns share."""
    c = a.shape[1]
    return backend.array_module(a).ascontiguousarray(a.transpose(1, 0, 2, 3)).reshape(c, -1)


def _batch_first(a, n, h, w):
    """(C, N*H*W) -> (N, C, H, W), contiguous."""
    c = a.shape[0]
    return backend.array_module(a).ascontiguousarray(a.reshape(c, n, h, w).transpose(1, 0, 2, 3))


def _is_pointwise(kh, kw, sh, sw, ph, pw):
    """A 1x1 window, stride 1, no padding: im2col and col2im are plain layout changes."""
    return kh == kw == 1 and sh == sw == 1 and ph == pw == 0


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
        if _is_pointwise(kh, kw, sh, sw, ph, pw):
            cols = _channels_first(x)  # (C, N*H*W): the im2col of a 1x1 window
        else:
            cols = backend.kernels_for(x).im2col(x, kh, kw, sh, sw, ph, pw, oh, ow)  # (C*KH*KW, N*OH*OW)
        y = _batch_first(w.reshape(oc, -1) @ cols, n, oh, ow)  # (N, OC, OH, OW)
        if b is not None:
            y += b.reshape(1, oc, 1, 1)
        ctx.save(cols, w)
        ctx.geometry = (n, c, h, wd, kh, kw, sh, sw, ph, pw, oh, ow)
        return y

    @staticmethod
    def backward(ctx, g):
        cols, w = ctx.saved
        n, c, h, wd, kh, kw, sh, sw, ph, pw, oh, ow = ctx.geometry
        oc = w.shape[0]
        g_cf = _channels_first(g)  # (OC, N*OH*OW)
        gx = gw = gb = None
        if ctx.needs_grad[0]:
            gcols = w.reshape(oc, -1).T @ g_cf  # (C*KH*KW, N*OH*OW)
            if _is_pointwise(kh, kw, sh, sw, ph, pw):
                gx = _batch_first(gcols, n, h, wd)  # the col2im of a 1x1 window
            else:
                gx = backend.kernels_for(g).col2im(gcols, n, c, h, wd, kh, kw, sh, sw, ph, pw, oh, ow)
        if ctx.needs_grad[1]:
            gw = (g_cf @ cols.T).reshape(w.shape)
        if ctx.needs_grad[2]:  # apply passes b even when it is None
            gb = g_cf.sum(axis=1)
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
        x_cf = _channels_first(x)  # (C, N*H*W)
        cols = w.reshape(c, -1).T @ x_cf  # (OC*KH*KW, N*H*W)
        y = backend.kernels_for(x).col2im(cols, n, oc, oh, ow, kh, kw, sh, sw, ph, pw, h, wd)
        if b is not None:
            y += b.reshape(1, oc, 1, 1)
        ctx.save(x_cf, w)
        ctx.geometry = (n, h, wd, kh, kw, sh, sw, ph, pw)
        return y

    @staticmethod
    def backward(ctx, g):
        x_cf, w = ctx.saved
        n, h, wd, kh, kw, sh, sw, ph, pw = ctx.geometry
        c = w.shape[0]
        gcols = backend.kernels_for(g).im2col(g, kh, kw, sh, sw, ph, pw, h, wd)  # (OC*KH*KW, N*H*W)
        gx = gw = gb = None
        if ctx.needs_grad[0]:
            gx = _batch_first(w.reshape(c, -1) @ gcols, n, h, wd)
        if ctx.needs_grad[1]:
            gw = (x_cf @ gcols.T).reshape(w.shape)
        if ctx.needs_grad[2]:  # apply passes b even when it is None
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb


def conv2d(x, w, b=None, stride=1, padding=0):
    return Conv2d.apply(x, w, b, stride=stride, padding=padding)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0):
    return ConvTranspose2d.apply(x, w, b, stride=stride, padding=padding,
                                 output_padding=output_padding)
