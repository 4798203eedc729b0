"""CPU kernels (numba): the CPU side of the kernel contract.

Every function here has a twin of the same name and signature in
:mod:`minigan.backend.cuda` that launches a kernel from ``kernels/*.cu``;
``tests/kernels`` compares the two. Some are CPU-only, and say so: ``spectral_power``
(spectral norm's power step, whose GPU form is two cuBLAS matrix-vector
products in :mod:`minigan.nn.spectral_norm`; a test holds the two forms
together), and the pieces of the CPU's blocked convolutions (``im2col_rows``,
``im2col_images``, ``col2im_into``, the Winograd transforms), tested against
im2col/col2im and the direct loop. Arrays are C-contiguous float32 or float64, in the layouts of the
.cu files' headers (the im2col index map is drawn in
kernels/README.md). The sections below follow the files of ``kernels/``, one
section per file.

All kernels are ``cache=True`` so their machine code is reused across runs.
None starts a thread pool of its own (numba's ``parallel`` is not used): the
cores go to the matrix products, which run on several BLAS threads
(:mod:`minigan.backend.threads`), and BLAS's workers spin for a while after
each product, so numba's pool started then waits for a core that is not free
(measured on 2 cores, SAGAN batch 5: 436 ms a step with numba's parallel
kernels, 314 ms without). Instead the kernels are ``nogil`` and take a range
of their outer loop, and the large calls are cut into ranges that
:func:`minigan.backend.threads.over_ranges` runs side by side.

Where a loop needs exp, expm1 or tanh, numba (without Intel's SVML) calls the
scalar libm function once per element, 10-30x slower than a vectorised one.
NumPy's ufuncs are vectorised on some CPUs and not on others: on an AVX2 host
its float32 exp took 2.5 ns an element, expm1 15-19 and tanh 4.4. So the two
hot float32 ones are written here as selects and arithmetic that LLVM
vectorises (``_expf_parts``: the softmax's exp and ELU's expm1, within 2^-23
relative of the exact value), and the rest (tanh, sigmoid's exp, float64) stay
NumPy ufunc passes, with the numba kernels doing the passes LLVM can vectorise
(selects, sums, divisions).
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np

from minigan.backend import threads

# error_model="numpy": a float division by zero gives inf/nan as in NumPy. The
# default ("python") raises ZeroDivisionError, and the test it puts in front of
# every division keeps LLVM from vectorising any loop that divides (measured:
# 5x slower sigmoid).
# nogil: the kernels release the GIL, so minigan's own threads
# (minigan.backend.threads) can run them side by side.
_jit = dict(cache=True, fastmath=False, error_model="numpy", nogil=True)


def _kernel(body=None, **options):
    """``numba.njit`` with the flags above (plus ``options``): usable as ``@_kernel`` or ``@_kernel(fastmath=...)``."""
    if body is None:
        return lambda b: _kernel(b, **options)
    return numba.njit(**dict(_jit, **options))(body)


def _contiguous(*arrays):
    return [np.ascontiguousarray(a) for a in arrays]


# ---------------------------------------------------------------------------
# im2col.cu
# ---------------------------------------------------------------------------
@_kernel
def _window_offsets(kh, kw, sh, sw, oh, ow, wp):
    offsets = np.empty((kh * kw, oh * ow), dtype=np.int32)
    for i in range(kh):
        for j in range(kw):
            for oy in range(oh):
                for ox in range(ow):
                    offsets[i * kw + j, oy * ow + ox] = (oy * sh + i) * wp + ox * sw + j
    return offsets


@functools.lru_cache(maxsize=64)
def window_offsets(kh, kw, sh, sw, oh, ow, wp):
    """(KH*KW, OH*OW) int32, read-only: entry (i*KW + j, oy*OW + ox) is the offset of tap (i, j) of output
    pixel (oy, ox) in an image plane padded on every side and ``wp`` wide, (oy*SH + i) * wp + ox*SW + j.

    With the padding in the plane, im2col's copy of a tap and col2im's sum of one are a single loop
    over the OH*OW pixels with no test in it, however short the rows (a 4x4 map's are 4 long): im2col
    gathers through the table, col2im scatters through it. The table is a few KiB, so it stays in L1.
    """
    offsets = _window_offsets(kh, kw, sh, sw, oh, ow, wp)
    offsets.flags.writeable = False
    return offsets


def _check_window(h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    """Every window of an OH x OW grid lies inside the padded (H, W) image (the offsets' reads and writes)."""
    if (oh - 1) * sh + kh > h + 2 * ph or (ow - 1) * sw + kw > w + 2 * pw or min(ph, pw) < 0:
        raise ValueError(f"im2col/col2im: a {oh}x{ow} grid of {kh}x{kw} windows at stride {sh},{sw} does not fit "
                         f"a {h}x{w} image padded by {ph},{pw}.")


@_kernel
def _pad_plane(src, pad, ph, pw, wp):
    """The (H, W) plane ``src`` into the interior of the flat padded plane ``pad`` (its border untouched)."""
    h, w = src.shape
    for y in range(h):
        row = src[y]
        base = (y + ph) * wp + pw
        for xx in range(w):
            pad[base + xx] = row[xx]


@_kernel
def _im2col(x, cols, offsets, ph, pw, lo, hi):
    n_img, c_in, h, w = x.shape
    wp = w + 2 * pw
    taps, pixels = offsets.shape
    pad = np.zeros((h + 2 * ph) * wp, dtype=x.dtype)  # the border stays 0: the padding
    for cn in range(lo, hi):  # one image plane per iteration: its columns are written by it alone
        c = cn // n_img  # channel-major: consecutive planes write consecutive runs of the same rows
        n = cn % n_img
        _pad_plane(x[n, c], pad, ph, pw, wp)  # a few KiB: stays in L1 while every tap reads it
        for t in range(taps):
            dst = cols[c * taps + t, n * pixels:]
            at = offsets[t]
            for p in range(pixels):
                dst[p] = pad[at[p]]


def im2col(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """x (N, C, H, W) -> columns (C*KH*KW, N*OH*OW).

    Plane by plane (ranges of planes go to minigan's threads): the plane is copied into a zero-padded
    buffer that stays in L1, then each tap's OH*OW entries are gathered from it through
    :func:`window_offsets`. One loop per tap with no bounds test, where a loop per output row with a
    test per pixel ran at 0.7-1.8 GB/s on the small maps of DCGAN's and SAGAN's discriminators.
    The planes go channel by channel, the images inside: each of a channel's KH*KW rows of ``cols``
    is then written front to back, N runs in a row, where image-major planes jumped between
    C*KH*KW rows (that order cost col2im's scatter 2-3x once its columns were out of cache).
    Measured, one thread, batch 16, float32, this gather / the row loop: 5x5 stride 2 from 64@32
    0.72-0.84, 128@16 0.67-0.76, 256@8 0.46-0.75; 4x4 stride 2 from 128@8 0.41-0.50, 512@4 0.55-0.60.
    In DCGAN-16's step (2 threads) im2col went from 97 to 64 ms a step.
    """
    (x,) = _contiguous(x)
    n, c, h, w = x.shape
    _check_window(h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    offsets = window_offsets(kh, kw, sh, sw, oh, ow, w + 2 * pw)
    threads.over_ranges(n * c, cols.size, lambda lo, hi: _im2col(x, cols, offsets, ph, pw, lo, hi))
    return cols


@_kernel
def _im2col_images(x, buf, offsets, n0, ph, pw):
    for t in range(buf.shape[0]):
        _im2col(x[n0 + t:n0 + t + 1], buf[t], offsets, ph, pw, 0, x.shape[1])


def im2col_images(x, buf, n0, kh, kw, sh, sw, ph, pw, oh, ow):
    """A block of im2col by whole images, in place: ``buf`` (K, C*KH*KW, OH*OW) receives, for each of its
    K images n0.., the columns im2col gives that image alone (any stride). CPU only (no .cu twin): the
    strided convolutions of minigan.ops.conv that run block by block (conv._is_strided_blocked). Serial:
    minigan's threads run one block each. ``x`` must be C-contiguous."""
    n, c, h, w = x.shape
    _check_window(h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    if buf.shape[1:] != (c * kh * kw, oh * ow) or n0 < 0 or n0 + buf.shape[0] > n:
        raise ValueError(f"im2col_images: a buffer of shape {buf.shape} does not hold the columns of images "
                         f"{n0}.. of a {x.shape} input ({c * kh * kw} rows of {oh * ow} pixels each).")
    _im2col_images(x, buf, window_offsets(kh, kw, sh, sw, oh, ow, w + 2 * pw), n0, ph, pw)


@numba.njit(**_jit)
def _im2col_rows(x, buf, n0, r0, kh, kw, ph, pw):
    k_img, taps, cols = buf.shape
    c_in, h, w = x.shape[1:]
    ow = w + 2 * pw - kw + 1
    for t in range(k_img):
        for cij in range(taps):
            c = cij // (kh * kw)
            i = (cij // kw) % kh
            j = cij % kw
            # the output columns whose tap j lands inside the row: 0 <= ox - pw + j < w
            ox_begin = max(0, pw - j)
            ox_end = min(ow, w + pw - j)
            for r in range(cols // ow):
                dst = buf[t, cij, r * ow:(r + 1) * ow]
                y = r0 + r - ph + i
                if y < 0 or y >= h:
                    dst[:] = 0.0
                    continue
                src = x[n0 + t, c, y, ox_begin - pw + j:]
                dst[:ox_begin] = 0.0
                for k in range(ox_end - ox_begin):  # a unit-stride copy LLVM vectorises
                    dst[ox_begin + k] = src[k]
                dst[ox_end:] = 0.0


def im2col_rows(x, buf, n0, r0, kh, kw, ph, pw):
    """A block of the stride-1 im2col, in place: images n0.. and output rows r0.. of x (N, C, H, W).

    ``buf`` (K, C*KH*KW, R*OW) receives, for each of its K images, the
    columns of R output rows: the same entries as im2col's columns of those
    pixels. CPU only (no .cu twin): the stride-1 convolutions of
    minigan.ops.conv run im2col block by block so that the block stays in
    the core's L2 while its GEMM reads it. Serial: minigan's threads run one
    block each (minigan.backend.threads).
    """
    _im2col_rows(x, buf, n0, r0, kh, kw, ph, pw)


# ---------------------------------------------------------------------------
# Winograd F(2x2, 3x3) transforms (CPU only, no .cu twin; minigan.ops.conv)
# ---------------------------------------------------------------------------
# Lavin & Gray 2016: a 3x3 stride-1 convolution with padding 1 computes each
# 2x2 block of outputs from a 4x4 tile of input (tiles overlap by 2) as
#     Y = A^T [ sum_c (G g_c G^T) * (B^T d_c B) ] A       (* elementwise, 4x4)
# with B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] and
# A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]; the sum over channels is, for each of
# the 16 positions (a, b), one matrix product U[a,b] (OC, C) @ V[a,b] (C, T).
# 16 multiplications per tile and channel pair where the direct form takes 36.
@numba.njit(**_jit)
def _winograd_filter(w, u):
    oc, c_in = w.shape[:2]
    t = np.empty((4, 3))
    for o in range(oc):
        for c in range(c_in):
            g = w[o, c]
            for j in range(3):  # G g: rows g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2 (in float64)
                g0, g1, g2 = float(g[0, j]), float(g[1, j]), float(g[2, j])
                t[0, j] = g0
                t[1, j] = 0.5 * (g0 + g1 + g2)
                t[2, j] = 0.5 * (g0 - g1 + g2)
                t[3, j] = g2
            for a in range(4):  # (G g) G^T: the same along the columns
                h0, h1, h2 = t[a, 0], t[a, 1], t[a, 2]
                u[4 * a, o, c] = h0
                u[4 * a + 1, o, c] = 0.5 * (h0 + h1 + h2)
                u[4 * a + 2, o, c] = 0.5 * (h0 - h1 + h2)
                u[4 * a + 3, o, c] = h2


def winograd_filter(w):
    """U (16, OC, C) = G g G^T of every 3x3 filter of w (OC, C, 3, 3), G = [[1, 0, 0], [.5, .5, .5],
    [.5, -.5, .5], [0, 0, 1]]; computed in float64, stored in w's dtype."""
    (w,) = _contiguous(w)
    u = np.empty((16, w.shape[0], w.shape[1]), dtype=w.dtype)
    _winograd_filter(w, u)
    return u


@_kernel(inline="always")
def _winograd_rows(x, n, c, y0, rows):
    """rows[r, 1:W + 1] = x[n, c, y0 + r] for each row r of ``rows``, zero outside the image (padding
    1): the input rows of one tile row, both tile sizes. The other columns of ``rows`` are left as
    they are (the callers' zero borders)."""
    h, w = x.shape[2:]
    for r in range(rows.shape[0]):
        y = y0 + r
        row = rows[r, 1:w + 1]
        if 0 <= y < h:
            src = x[n, c, y]
            for k in range(w):
                row[k] = src[k]
        else:
            row[:] = 0.0


@numba.njit(**_jit)
def _winograd_input(x, v, n, ty0, ty1):
    c_in, h, w = x.shape[1:]
    tw = w // 2
    rows = np.zeros((4, w + 4), dtype=x.dtype)  # rows[r, k + 1] = x[n, c, y, k]; the border columns stay 0
    t = np.empty((4, w + 4), dtype=x.dtype)
    for c in range(c_in):
        for ty in range(ty0, ty1):
            _winograd_rows(x, n, c, 2 * ty - 1, rows)  # the tile row's 4 input rows
            for k in range(w + 2):  # B^T d down the columns, for every tile of the row at once
                d0, d1, d2, d3 = rows[0, k], rows[1, k], rows[2, k], rows[3, k]
                t[0, k] = d0 - d2
                t[1, k] = d1 + d2
                t[2, k] = d2 - d1
                t[3, k] = d1 - d3
            base = (ty - ty0) * tw
            for a in range(4):  # then (.) B along each tile's 4 columns
                ta = t[a]
                for tx in range(tw):
                    e0, e1, e2, e3 = ta[2 * tx], ta[2 * tx + 1], ta[2 * tx + 2], ta[2 * tx + 3]
                    v[4 * a, c, base + tx] = e0 - e2
                    v[4 * a + 1, c, base + tx] = e1 + e2
                    v[4 * a + 2, c, base + tx] = e2 - e1
                    v[4 * a + 3, c, base + tx] = e1 - e3


def winograd_input(x, v, n, ty0, ty1):
    """V (16, C, T) of image n's tile rows ty0..ty1-1 of x (N, C, H, W), H and W even, padding 1:
    V[4a + b, c, (ty - ty0) * W/2 + tx] = (B^T d B)[a, b] of the 4x4 tile at rows 2ty-1.., columns 2tx-1.."""
    _winograd_input(x, v, n, ty0, ty1)


@numba.njit(**_jit)
def _winograd_output(m, y, n, ty0, ty1):
    oc, w = y.shape[1], y.shape[3]
    tw = w // 2
    for o in range(oc):
        for ty in range(ty0, ty1):
            base = (ty - ty0) * tw
            top, bottom = y[n, o, 2 * ty], y[n, o, 2 * ty + 1]
            for tx in range(tw):
                q = base + tx
                # A^T over the tile's rows a, then over its columns b
                s0 = m[0, o, q] + m[4, o, q] + m[8, o, q]
                s1 = m[1, o, q] + m[5, o, q] + m[9, o, q]
                s2 = m[2, o, q] + m[6, o, q] + m[10, o, q]
                s3 = m[3, o, q] + m[7, o, q] + m[11, o, q]
                d0 = m[4, o, q] - m[8, o, q] - m[12, o, q]
                d1 = m[5, o, q] - m[9, o, q] - m[13, o, q]
                d2 = m[6, o, q] - m[10, o, q] - m[14, o, q]
                d3 = m[7, o, q] - m[11, o, q] - m[15, o, q]
                top[2 * tx] = s0 + s1 + s2
                top[2 * tx + 1] = s1 - s2 - s3
                bottom[2 * tx] = d0 + d1 + d2
                bottom[2 * tx + 1] = d1 - d2 - d3


def winograd_output(m, y, n, ty0, ty1):
    """Rows 2*ty0 .. 2*ty1-1 of image n of y (N, OC, H, W) from M (16, OC, T): A^T M A per tile."""
    _winograd_output(m, y, n, ty0, ty1)


# The weight gradient by the same algorithm is the forward pass read backwards (its adjoint): with
# M = U * V per tile and y = A^T M A, the output gradient g gives dM = A g A^T per tile (the adjoint
# of the output transform), dU[a,b] (OC, C) = sum over tiles of dM[a,b] (OC, T) @ V[a,b]^T (T, C),
# and dw = G^T dU G (the adjoint of the filter transform). The 16 products have the tiles as their
# inner dimension; 16 multiplications per tile and channel pair, as in the forward pass.
@numba.njit(**_jit)
def _winograd_output_adjoint(g, dm, n, ty0, ty1):
    oc, w = g.shape[1], g.shape[3]
    tw = w // 2
    # A = [[1, 0], [1, 1], [1, -1], [0, -1]]: row a of A g takes top * ca[a] + bottom * cb[a]
    ca, cb = (1.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, -1.0)
    for o in range(oc):
        for ty in range(ty0, ty1):
            base = (ty - ty0) * tw
            top, bottom = g[n, o, 2 * ty], g[n, o, 2 * ty + 1]
            for a in range(4):  # 4 output rows at a time: 16 streams 64 KiB apart would thrash L1's sets
                p, q = dm[4 * a, o, base:], dm[4 * a + 1, o, base:]
                r, s = dm[4 * a + 2, o, base:], dm[4 * a + 3, o, base:]
                u, v = ca[a], cb[a]
                for tx in range(tw):
                    e0 = u * top[2 * tx] + v * bottom[2 * tx]
                    e1 = u * top[2 * tx + 1] + v * bottom[2 * tx + 1]
                    p[tx] = e0  # then A along the tile's 2 columns: e0, e0 + e1, e0 - e1, -e1
                    q[tx] = e0 + e1
                    r[tx] = e0 - e1
                    s[tx] = -e1


def winograd_output_adjoint(g, dm, n, ty0, ty1):
    """dM (16, OC, T) = A g A^T of each 2x2 tile of image n's tile rows ty0..ty1-1 of the output
    gradient g (N, OC, H, W): what winograd_output's tiles pass back to M. dM[4a + b, o, (ty - ty0) *
    W/2 + tx], with A = [[1, 0], [1, 1], [1, -1], [0, -1]] (A^T is winograd_output's matrix)."""
    _winograd_output_adjoint(g, dm, n, ty0, ty1)


@numba.njit(**_jit)
def _winograd_filter_adjoint(du, gw):
    oc, c_in = gw.shape[:2]
    t = np.empty((4, 3))
    for o in range(oc):
        for c in range(c_in):
            for a in range(4):  # (.) G along the columns: G^T's rows (1, .5, .5, 0), (0, .5, -.5, 0), (0, .5, .5, 1)
                h0, h1, h2, h3 = float(du[4 * a, o, c]), float(du[4 * a + 1, o, c]), float(du[4 * a + 2, o, c]), \
                    float(du[4 * a + 3, o, c])
                t[a, 0] = h0 + 0.5 * (h1 + h2)
                t[a, 1] = 0.5 * (h1 - h2)
                t[a, 2] = 0.5 * (h1 + h2) + h3
            for j in range(3):  # then G^T (.) down the rows
                g0, g1, g2, g3 = t[0, j], t[1, j], t[2, j], t[3, j]
                gw[o, c, 0, j] = g0 + 0.5 * (g1 + g2)
                gw[o, c, 1, j] = 0.5 * (g1 - g2)
                gw[o, c, 2, j] = 0.5 * (g1 + g2) + g3


def winograd_filter_adjoint(du):
    """dw (OC, C, 3, 3) = G^T dU G for dU (16, OC, C): what winograd_filter passes back to the 3x3
    filters (G as there); computed in float64, stored in du's dtype."""
    (du,) = _contiguous(du)
    gw = np.empty((du.shape[1], du.shape[2], 3, 3), dtype=du.dtype)
    _winograd_filter_adjoint(du, gw)
    return gw


# ---------------------------------------------------------------------------
# Winograd F(4x4, 3x3) transforms (CPU only, no .cu twin; minigan.ops.conv)
# ---------------------------------------------------------------------------
# The same algorithm with 4x4 output blocks from 6x6 input tiles (tiles overlap by 2), on the
# interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray 2016):
#     B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
#            [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
#     G   = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6],
#            [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]
#     A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
# 36 products U[a,b] @ V[a,b] per 16 output pixels: 2.25 multiplications per pixel and channel pair,
# against F(2x2, 3x3)'s 4 and the direct form's 9, and V holds 2.25 values per pixel against 4. The
# price is rounding: the larger coefficients leave float32 results ~1e-5 of the largest output
# away from the exact sum (F(2x2, 3x3): ~5e-7), about what PyTorch's own Winograd and FFT paths give.
# The constants are passed in the array's dtype (``two``, ``four``, ...): a float64 literal times a
# float32 value is computed in float64, and those conversions made the input transform 2.2x slower.
# The helpers are kernels like the rest (nogil, cached), inlined into their callers.
@_kernel(inline="always")
def _winograd4_bt(d0, d1, d2, d3, d4, d5, two, four, five):
    """B^T d of 6 values (one column or row of a tile)."""
    return (four * d0 - five * d2 + d4, d3 + d4 - four * (d1 + d2), four * (d1 - d2) + d4 - d3,
            two * (d3 - d1) + d4 - d2, two * (d1 - d3) + d4 - d2, four * d1 - five * d3 + d5)


@_kernel(inline="always")
def _winograd4_at(m0, m1, m2, m3, m4, m5, two, four, eight):
    """A^T m of 6 values: 4 outputs."""
    p, q, r, s = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return m0 + p + r, q + two * s, p + four * r, q + eight * s + m5


@_kernel(inline="always")
def _winograd4_g(g0, g1, g2):
    """G g of 3 filter taps: 6 values (float64)."""
    return (g0 / 4.0, -(g0 + g1 + g2) / 6.0, -(g0 - g1 + g2) / 6.0, g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
            g0 / 24.0 - g1 / 12.0 + g2 / 6.0, 1.0 * g2)


@numba.njit(**_jit)
def _winograd4_filter(w, u):
    oc, c_in = w.shape[:2]
    t = np.empty((6, 3))
    for o in range(oc):
        for c in range(c_in):
            g = w[o, c]
            for j in range(3):  # G g down each column of the filter
                e = _winograd4_g(float(g[0, j]), float(g[1, j]), float(g[2, j]))
                for a in range(6):
                    t[a, j] = e[a]
            for a in range(6):  # then (G g) G^T along the rows
                e = _winograd4_g(t[a, 0], t[a, 1], t[a, 2])
                for b in range(6):
                    u[6 * a + b, o, c] = e[b]


def winograd4_filter(w):
    """U (36, OC, C) = G g G^T of every 3x3 filter of w (OC, C, 3, 3), G as above; computed in float64,
    stored in w's dtype."""
    (w,) = _contiguous(w)
    u = np.empty((36, w.shape[0], w.shape[1]), dtype=w.dtype)
    _winograd4_filter(w, u)
    return u


@numba.njit(**_jit)
def _winograd4_input(x, v, n, ty0, ty1):
    c_in, h, w = x.shape[1:]
    tw = w // 4
    rows = np.zeros((6, w + 2), dtype=x.dtype)  # rows[r, k + 1] = x[n, c, y, k]; the border columns stay 0
    t = np.empty((6, w + 2), dtype=x.dtype)
    k = np.empty(3, dtype=x.dtype)
    k[0], k[1], k[2] = 2.0, 4.0, 5.0
    two, four, five = k[0], k[1], k[2]
    for c in range(c_in):
        for ty in range(ty0, ty1):
            _winograd_rows(x, n, c, 4 * ty - 1, rows)  # the tile row's 6 input rows
            for i in range(w + 2):  # B^T d down the columns, for every tile of the row at once
                e = _winograd4_bt(rows[0, i], rows[1, i], rows[2, i], rows[3, i], rows[4, i], rows[5, i],
                                  two, four, five)
                t[0, i], t[1, i], t[2, i], t[3, i], t[4, i], t[5, i] = e
            base = (ty - ty0) * tw
            for a in range(6):  # then (.) B along each tile's 6 columns: 6 output streams at a time
                ta = t[a]
                v0, v1, v2 = v[6 * a, c, base:], v[6 * a + 1, c, base:], v[6 * a + 2, c, base:]
                v3, v4, v5 = v[6 * a + 3, c, base:], v[6 * a + 4, c, base:], v[6 * a + 5, c, base:]
                for tx in range(tw):
                    i = 4 * tx
                    v0[tx], v1[tx], v2[tx], v3[tx], v4[tx], v5[tx] = _winograd4_bt(
                        ta[i], ta[i + 1], ta[i + 2], ta[i + 3], ta[i + 4], ta[i + 5], two, four, five)


def winograd4_input(x, v, n, ty0, ty1):
    """V (36, C, T) of image n's tile rows ty0..ty1-1 of x (N, C, H, W), H and W multiples of 4,
    padding 1: V[6a + b, c, (ty - ty0) * W/4 + tx] = (B^T d B)[a, b] of the 6x6 tile at rows 4ty-1..,
    columns 4tx-1.."""
    _winograd4_input(x, v, n, ty0, ty1)


@numba.njit(**_jit)
def _winograd4_output(m, y, n, ty0, ty1):
    oc, w = y.shape[1], y.shape[3]
    tw = w // 4
    t = np.empty((6, w), dtype=y.dtype)
    k = np.empty(3, dtype=y.dtype)
    k[0], k[1], k[2] = 2.0, 4.0, 8.0
    two, four, eight = k[0], k[1], k[2]
    for o in range(oc):
        for ty in range(ty0, ty1):
            base = (ty - ty0) * tw
            for a in range(6):  # (.) A along each tile's columns b, reading 6 streams at a time
                m0, m1, m2 = m[6 * a, o, base:], m[6 * a + 1, o, base:], m[6 * a + 2, o, base:]
                m3, m4, m5 = m[6 * a + 3, o, base:], m[6 * a + 4, o, base:], m[6 * a + 5, o, base:]
                ta = t[a]
                for tx in range(tw):
                    i = 4 * tx
                    ta[i], ta[i + 1], ta[i + 2], ta[i + 3] = _winograd4_at(
                        m0[tx], m1[tx], m2[tx], m3[tx], m4[tx], m5[tx], two, four, eight)
            r0, r1, r2, r3 = y[n, o, 4 * ty], y[n, o, 4 * ty + 1], y[n, o, 4 * ty + 2], y[n, o, 4 * ty + 3]
            for i in range(w):  # then A^T (.) down the tile's rows a
                r0[i], r1[i], r2[i], r3[i] = _winograd4_at(t[0, i], t[1, i], t[2, i], t[3, i], t[4, i], t[5, i],
                                                           two, four, eight)


def winograd4_output(m, y, n, ty0, ty1):
    """Rows 4*ty0 .. 4*ty1-1 of image n of y (N, OC, H, W) from M (36, OC, T): A^T M A per tile."""
    _winograd4_output(m, y, n, ty0, ty1)


# ---------------------------------------------------------------------------
# col2im.cu
# ---------------------------------------------------------------------------
@_kernel
def _col2im(cols, x, kh, kw, sh, sw, ph, pw, oh, ow, lo, hi):
    n_img, c_in, h, w = x.shape
    # A column stride sw > 1 adds each tap's row of cols into every sw-th pixel: a strided loop LLVM
    # does not vectorise. So the plane is summed in ``phases`` (H, SW, ceil(W / SW)), pixel x of row y
    # at [y, x % sw, x // sw], where each tap's pixels are contiguous, and interleaved back once at the
    # end. Every pixel still sums its entries in (i, j) order: the same bits as adding into the plane.
    phases = np.empty((h, sw, (w + sw - 1) // sw), dtype=x.dtype)
    for cn in range(lo, hi):  # one image plane per iteration: no two write the same pixel
        c = cn // n_img  # channel-major, as in _col2im_small
        n = cn % n_img
        plane = x[n, c]  # (H, W): a few KiB, stays in L1/L2 while every tap adds into it
        acc = plane.reshape((h, 1, w)) if sw == 1 else phases
        acc[:, :, :] = 0.0
        for i in range(kh):
            # the output rows whose tap row i lands inside the image: 0 <= oy*sh - ph + i < h
            oy_begin = max(0, (ph - i + sh - 1) // sh)
            oy_end = min(oh, (h - 1 + ph - i) // sh + 1)
            for j in range(kw):
                # the same for columns: ox in [ox_begin, ox_begin + count), from pixel x_begin on
                ox_begin = max(0, (pw - j + sw - 1) // sw)
                count = min(ow, (w - 1 + pw - j) // sw + 1) - ox_begin
                x_begin = ox_begin * sw - pw + j
                phase, q_begin = x_begin % sw, x_begin // sw
                row = cols[(c * kh + i) * kw + j]  # this tap's row of cols: (N*OH*OW,)
                for oy in range(oy_begin, oy_end):
                    # Slices that start at 0, so the inner loop's indices are
                    # plainly non-negative: with a computed offset inside the
                    # brackets numba's negative-index wraparound check stops
                    # LLVM from vectorising the loop.
                    src = row[(n * oh + oy) * ow + ox_begin:]
                    dst = acc[oy * sh - ph + i, phase, q_begin:]
                    for k in range(count):
                        dst[k] += src[k]
        if sw != 1:
            for y in range(h):
                for phase in range(sw):
                    src = phases[y, phase]
                    dst = plane[y, phase:]
                    for q in range((w - phase + sw - 1) // sw):
                        dst[q * sw] = src[q]


@_kernel
def _col2im_small(cols, x, offsets, ph, pw, lo, hi):
    n_img, c_in, h, w = x.shape
    wp = w + 2 * pw
    taps, pixels = offsets.shape
    acc = np.empty((h + 2 * ph) * wp, dtype=x.dtype)
    for cn in range(lo, hi):  # one image plane per iteration: no two write the same pixel
        c = cn // n_img  # channel-major: consecutive planes read consecutive runs of the same rows
        n = cn % n_img
        acc[:] = 0.0
        for t in range(taps):  # each pixel sums its entries in tap order, (i, j), as _col2im does
            src = cols[c * taps + t, n * pixels:]
            at = offsets[t]
            for p in range(pixels):
                acc[at[p]] += src[p]
        plane = x[n, c]
        for y in range(h):  # the padded plane's interior is the image
            row = plane[y]
            base = (y + ph) * wp + pw
            for xx in range(w):
                row[xx] = acc[base + xx]


#: col2im scatters through window_offsets into a padded plane when the column grid has at most this
#: many pixels: there the row loop's runs (OW long, 2-8 on DCGAN's and SAGAN's small maps) cost more
#: than their adds. On larger grids the row loop's vectorised adds win. Measured, one thread, batch 16,
#: float32, scatter / row loop: 5x5 stride 2 to 128@16 (8x8 grid) 0.81-0.83, to 256@8 0.24-0.56, to
#: 512@4 0.24; 4x4 stride 2 to 64@16 0.79, to 128@8 0.47-0.51; 3x3 stride 1, 8x8, 0.83; but 5x5 stride 2
#: to 64@32 (16x16 grid) 1.03-1.37, 4x4 to 32@32 1.29, and into 64x64 images 2.3. With both in
#: channel-major order, DCGAN-16's whole-batch col2im went from 82 to 33 ms a step (2 threads).
COL2IM_SCATTER_MAX_PIXELS = 64


def col2im(cols, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    """columns (C*KH*KW, N*OH*OW) -> image (N, C, H, W), summing overlaps.

    A scatter by planes, where col2im.cu gathers by pixels: one iteration
    per image plane (n, c) (ranges of planes go to minigan's threads) zeroes the plane, then adds each kernel
    tap's row of ``cols`` into it, output row by output row, over ranges
    clipped beforehand (the inner loop tests nothing). No two iterations
    write the same pixel (no atomics), every pixel sums its entries in the
    same (i, j) order on every run (deterministic), and ``cols`` is read
    sequentially: 5-10 GB/s on one core, where a per-pixel gather jumping
    between KH*KW rows of ``cols`` ran at 0.3-0.9 GB/s. With a column stride
    the plane is summed by phases of the stride (see ``_col2im``), the same
    bits: one thread, (16, 64, 32, 32) from 5x5 stride-2 columns 6.2 -> 4.7 ms,
    SAGAN's 4x4 stride 2 3.3 -> 2.6 ms, against adding every sw-th pixel.
    On a grid of at most COL2IM_SCATTER_MAX_PIXELS the taps are added through
    :func:`window_offsets` into a padded plane instead (``_col2im_small``):
    the same sums in the same order, one loop per tap however short the rows.
    """
    (cols,) = _contiguous(cols)
    return col2im_into(cols, np.empty((n, c, h, w), dtype=cols.dtype), kh, kw, sh, sw, ph, pw, oh, ow)


def col2im_into(cols, x, kh, kw, sh, sw, ph, pw, oh, ow):
    """col2im into the C-contiguous (N, C, H, W) ``x`` given (every pixel written); returns x.
    CPU only: minigan.ops.conv sums the columns of one image at a time into its slice of the output."""
    n, c, h, w = x.shape
    if oh * ow <= COL2IM_SCATTER_MAX_PIXELS:
        _check_window(h, w, kh, kw, sh, sw, ph, pw, oh, ow)
        offsets = window_offsets(kh, kw, sh, sw, oh, ow, w + 2 * pw)
        threads.over_ranges(n * c, cols.size, lambda lo, hi: _col2im_small(cols, x, offsets, ph, pw, lo, hi))
    else:
        threads.over_ranges(n * c, cols.size, lambda lo, hi: _col2im(cols, x, kh, kw, sh, sw, ph, pw, oh, ow, lo, hi))
    return x


@_kernel
def _col2im_channels_last(cols, x, kh, kw, sh, sw, ph, pw, oh, ow, lo, hi):
    n_img, h, w, c = x.shape
    for n in range(lo, hi):  # one image per iteration: no two write the same pixel
        img = x[n]  # (H, W, C): a small map (the caller's rule) stays in L1/L2
        img[:, :, :] = 0.0
        for oy in range(oh):
            for i in range(kh):
                y = oy * sh - ph + i
                if y < 0 or y >= h:
                    continue
                for ox in range(ow):
                    row = cols[(n * oh + oy) * ow + ox]  # (KH*KW*C,): this output pixel's taps, C innermost
                    for j in range(kw):
                        xx = ox * sw - pw + j
                        if xx < 0 or xx >= w:
                            continue
                        src = row[(i * kw + j) * c:]
                        dst = img[y, xx]
                        for k in range(c):  # contiguous on both sides: vectorised
                            dst[k] += src[k]


def col2im_channels_last(cols, x, kh, kw, sh, sw, ph, pw, oh, ow):
    """col2im with the channels innermost, into the C-contiguous (N, H, W, C) ``x`` given (every pixel
    written); returns x. ``cols`` (N*OH*OW, KH*KW*C): row (n, oy, ox), entries (i, j, c), what
    ``rows @ w_rows`` gives with the rows of the output gradient (N*OH*OW, OC) and the weights
    laid out (OC, KH*KW*C). CPU only (no CUDA twin: the GPU keeps col2im.cu's layout).

    The plane-wise :func:`col2im` adds each tap's run of OW pixels: on small maps (8x8, 4x4) that
    inner loop is 2-8 long and the loop around it costs more than the adds. Here the inner loop runs
    over the C channels of one pixel, contiguous in both arrays, however small the map. Each pixel sums
    its entries in (oy, i, ox, j) order, the same on every run. Measured, one thread, float32, product
    included: SAGAN's 4x4 stride-2 transposed convs at batch 16 (128 -> 64 at 4x4, 64 -> 32 at 8x8)
    0.45-0.50x the time of the plane-wise form; DCGAN's 5x5 256 -> 128 at 8x8 0.70x.
    """
    threads.over_ranges(x.shape[0], cols.size,
                        lambda lo, hi: _col2im_channels_last(cols, x, kh, kw, sh, sw, ph, pw, oh, ow, lo, hi))
    return x


# ---------------------------------------------------------------------------
# spectral norm's power step (CPU only: on a GPU it is two cuBLAS matrix-vector products)
# ---------------------------------------------------------------------------
@_kernel(fastmath={"reassoc"})  # on the dot products' sums, as in batch norm
def _spectral_power(w3, u, v, eps, iterations):
    pre, rows, post = w3.shape
    acc = np.empty(pre * post, np.float64)
    wv = np.empty(rows, np.float64)
    sigma = 0.0
    for _ in range(iterations):
        acc[:] = 0.0  # W_mat^T u: row r of W_mat is w3[:, r, :]; four rows a pass over acc
        for a in range(pre):
            base = a * post
            r = 0
            while r + 4 <= rows:
                u0, u1, u2, u3 = np.float64(u[r]), np.float64(u[r + 1]), np.float64(u[r + 2]), np.float64(u[r + 3])
                for b in range(post):
                    acc[base + b] += (u0 * w3[a, r, b] + u1 * w3[a, r + 1, b]) + (u2 * w3[a, r + 2, b]
                                                                               + u3 * w3[a, r + 3, b])
                r += 4
            while r < rows:
                ur = np.float64(u[r])
                for b in range(post):
                    acc[base + b] += ur * w3[a, r, b]
                r += 1
        norm = 0.0
        for i in range(acc.size):
            norm += acc[i] * acc[i]
        scale = 1.0 / max(math.sqrt(norm), eps)
        for i in range(acc.size):
            v[i] = acc[i] * scale
        wv[:] = 0.0  # W_mat v, from v as stored (its dtype), as the Function's sigma will see it; w3 in order
        for a in range(pre):
            base = a * post
            for r in range(rows):
                t = 0.0
                for b in range(post):
                    t += w3[a, r, b] * np.float64(v[base + b])
                wv[r] += t
        norm = 0.0
        for r in range(rows):
            norm += wv[r] * wv[r]
        scale = 1.0 / max(math.sqrt(norm), eps)
        sigma = 0.0
        for r in range(rows):
            u[r] = wv[r] * scale
            sigma += np.float64(u[r]) * wv[r]  # u^T W_mat v
    return sigma


def spectral_power(w3, u, v, eps, iterations):
    """``iterations`` (>= 1) power steps of spectral norm on W_mat (rows = w3's middle axis; W_mat[r, (a, b)] =
    w3[a, r, b]), u (rows,) and v (pre * post,) updated in place: v <- normalize(W_mat^T u), then u <-
    normalize(W_mat v). Returns sigma = u^T W_mat v after the last step (a float), from that step's W_mat v.

    One pass over W for each product, sums in float64, no temporaries: the NumPy form is six calls and
    two temporaries a step plus a third product for sigma, which cost more than the arithmetic on
    SAGAN's small weights.
    """
    (w3,) = _contiguous(w3)
    return _spectral_power(w3, u, v, eps, iterations)


# ---------------------------------------------------------------------------
# batchnorm.cu (training mode: batch statistics); x viewed as (N, C, H*W)
# ---------------------------------------------------------------------------
@_kernel(fastmath={"reassoc"})  # on the sums: see _batchnorm_backward
def _batchnorm_forward(x, gamma, beta, eps, y, mean, invstd):
    n_img, ch, hw = x.shape
    count = n_img * hw
    for c in range(ch):
        s = 0.0  # accumulators in float64 for both dtypes, as in batchnorm.cu
        for n in range(n_img):
            for k in range(hw):
                s += x[n, c, k]
        mu = s / count
        ss = 0.0
        for n in range(n_img):
            for k in range(hw):
                d = x[n, c, k] - mu
                ss += d * d
        inv = 1.0 / math.sqrt(ss / count + eps)
        mean[c] = mu
        invstd[c] = inv
        scale = gamma[c] * inv  # in double: x - mean cancels for inputs far from zero
        shift = beta[c] - mu * scale
        for n in range(n_img):
            for k in range(hw):
                y[n, c, k] = x[n, c, k] * scale + shift


def _per_channel(x):
    """x (N, C, H, W) as (N, C, H*W), the layout of batchnorm.cu's loops."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h * w)


def batchnorm_forward(x, gamma, beta, eps):
    """Normalise x (N, C, H, W) per channel with batch statistics (biased variance).

    Returns (y, mean (C,), invstd (C,)).
    """
    x, gamma, beta = _contiguous(x, gamma, beta)
    ch = x.shape[1]
    y = np.empty_like(x)
    mean = np.empty(ch, dtype=x.dtype)
    invstd = np.empty(ch, dtype=x.dtype)
    _batchnorm_forward(_per_channel(x), gamma, beta, eps, _per_channel(y), mean, invstd)
    return y, mean, invstd


# fastmath "reassoc" on the two sums, as in softmax: strict left-to-right float64
# sums run one scalar add at a time (measured: 2-2.6x PyTorch's time); with it
# LLVM keeps partial sums in vector registers, in a fixed order.
@_kernel(fastmath={"reassoc"})
def _batchnorm_backward(x, gy, gamma, mean, invstd, gx, ggamma, gbeta, coef):
    n_img, ch, hw = x.shape
    count = n_img * hw
    for c in range(ch):
        mu, inv = np.float64(mean[c]), np.float64(invstd[c])  # in double, as batchnorm.cu's sums
        sum_g = 0.0
        sum_gd = 0.0
        for n in range(n_img):
            for k in range(hw):
                g = gy[n, c, k]
                sum_g += g
                sum_gd += g * (x[n, c, k] - mu)
        gbeta[c] = sum_g
        ggamma[c] = sum_gd * inv
        # the formula of batchnorm.cu: gx = gamma*invstd * (gy - mean(gy) - xhat * mean(gy * xhat)),
        # as a*(gy - mean(gy)) - b*(x - mean) with b = a * invstd * mean(gy * xhat). The four
        # per-channel numbers go through coef, in x's dtype, so the loop runs in that dtype (measured:
        # 2x faster than in double in float32; x - mean is exact there when x is near the mean).
        a = gamma[c] * inv
        coef[c, 0] = a
        coef[c, 1] = sum_g / count
        coef[c, 2] = a * inv * (sum_gd * inv / count)
        coef[c, 3] = mu
        a_t, mean_g, b_t, mu_t = coef[c, 0], coef[c, 1], coef[c, 2], coef[c, 3]
        for n in range(n_img):
            for k in range(hw):
                gx[n, c, k] = a_t * (gy[n, c, k] - mean_g) - b_t * (x[n, c, k] - mu_t)


def batchnorm_backward(x, gy, gamma, mean, invstd):
    """Gradients of training-mode batch norm: returns (gx, ggamma, gbeta)."""
    x, gy, gamma, mean, invstd = _contiguous(x, gy, gamma, mean, invstd)
    ch = x.shape[1]
    gx = np.empty_like(x)
    ggamma = np.empty(ch, dtype=x.dtype)
    gbeta = np.empty(ch, dtype=x.dtype)
    _batchnorm_backward(_per_channel(x), _per_channel(gy), gamma, mean, invstd, _per_channel(gx),
                        ggamma, gbeta, np.empty((ch, 4), dtype=x.dtype))
    return gx, ggamma, gbeta


# ---------------------------------------------------------------------------
# softmax.cu (over the last axis of a 2-D array)
# ---------------------------------------------------------------------------
# fastmath "reassoc" on the row sums only: it lets LLVM keep several partial
# sums in one vector register (a fixed order, so still deterministic), where a
# strict left-to-right sum runs one scalar add at a time.
@_kernel(fastmath={"reassoc"})
def _softmax_normalize(y):
    rows, cols = y.shape
    for r in range(rows):
        s = y.dtype.type(0)  # in the row's dtype, as softmax.cu: a float64 sum of float32 runs 3x slower
        for k in range(cols):
            s += y[r, k]
        inv = y.dtype.type(1) / s
        for k in range(cols):
            y[r, k] *= inv


#: elements per chunk of rows in softmax_forward: its four passes then read a chunk from the core's
#: cache, not from memory (measured, one thread, (16384, 1024) float32: 60 ms whole, 49 ms in chunks
#: of 16-256 rows of 1024)
SOFTMAX_CHUNK = 1 << 16


#: exp(t) for float32 t <= 0 (Cephes' expf): t = n ln2 + u with |u| <= ln2/2 (ln2 in two parts, so n ln2 is
#: exact), exp(u) by this degree-7 polynomial in Horner form, highest coefficient first (the terms of
#: 1 + u + u^2/2 carried exactly), and 2^n put into the float's exponent bits
EXPF_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
EXPF_LN2 = (0.693359375, -2.12194440e-4)
#: below this, exp underflows past float32's normal range: the result is 0 (2^n needs n >= -126)
EXPF_MIN = -87.0


#: the float32 exponent bits of 2^n are (n + 127) << 23; the float 1.0's are 127 << 23
EXPF_ONE_BITS = 127 << 23


@numba.njit(inline="always", **_jit)
def _expf_parts(t, poly, ln2, lowest):
    """exp(t) = p * 2^n for float32 t, lowest <= t <= 0 (a smaller t is taken as lowest): (p, bits of 2^n).
    Selects and arithmetic only, so a loop calling it vectorises; its caller scales by 2^n in a second
    loop, reading the bits as a float32 array."""
    c0, c1, c2, c3, c4, c5 = poly
    tc = t if t > lowest else lowest
    n = np.floor(tc * np.float32(1.4426950408889634) + np.float32(0.5))
    u = tc - n * ln2[0] - n * ln2[1]
    p = ((((c0 * u + c1) * u + c2) * u + c3) * u + c4) * u + c5
    return p * u * u + u + np.float32(1.0), (np.int32(n) + 127) << 23


#: (poly, ln2, lowest) of the float32 exp as float32 values: the kernels' arguments, converted once
_EXPF_ARGS = (tuple(np.float32(c) for c in EXPF_POLY), tuple(np.float32(c) for c in EXPF_LN2), np.float32(EXPF_MIN))


#: reassoc: the row maximum and the row sum vectorise; contract: the polynomial's multiply-adds are fused
@_kernel(fastmath={"reassoc", "contract"})
def _softmax_rows_f32(x, y, bits, poly, ln2, lowest):
    rows, cols = x.shape
    if cols == 0:
        return
    one = np.float32(1.0)
    scale = bits.view(np.float32)  # bits[k] = (n + 127) << 23 is the float 2^n
    for r in range(rows):
        xr, yr = x[r], y[r]
        mr = xr[0]
        for k in range(1, cols):  # a NaN is skipped here, but its own t below is NaN, and so is the row
            v = xr[k]
            mr = v if v > mr else mr
        for k in range(cols):  # selects and arithmetic only: LLVM vectorises it
            t = xr[k] - mr  # <= 0; NaN where the row holds a NaN (its max is NaN) or is all infinite
            p, bits[k] = _expf_parts(t, poly, ln2, lowest)
            yr[k] = np.float32(0.0) if t < lowest else p + (t - t)  # t - t: a NaN in t comes through
        s = np.float32(0.0)
        for k in range(cols):
            v = yr[k] * scale[k]
            yr[k] = v
            s += v
        inv = one / s
        for k in range(cols):
            yr[k] *= inv


def softmax_forward(x):
    """Row-wise softmax of x (rows, cols), max-subtracted for stability.

    float32: one numba kernel takes each row's maximum, computes exp(x - max) with its own vectorised
    exp (the polynomial above: within 1.4 x 2^-24 of the exact value over [-87, 0], where NumPy's
    float32 exp is within 3.4 x 2^-24 and, on AVX2, 2.5-4x slower), sums and divides the row while it
    is in L1. (With NumPy's row maxima as a pass of their own and the polynomial without fused
    multiply-adds, (4096, 256) took 1.7-2.1 ms on one thread of the AVX2 EPYC; now 1.2.)
    float64 (the gradient checks): NumPy's ``exp(x - max)``, then a numba kernel divides each row by its
    sum. Both chunk of rows by chunk of rows, so the passes read from the core's cache.
    """
    (x,) = _contiguous(x)
    y = np.empty_like(x)
    chunk = max(1, SOFTMAX_CHUNK // max(1, x.shape[1]))  # rows whose passes stay in the core's L2
    fast = x.dtype == np.float32

    def rows(lo, hi):  # NumPy's passes release the GIL too
        bits = np.empty(x.shape[1], np.int32) if fast else None
        for start in range(lo, hi, chunk):
            stop = min(hi, start + chunk)
            xs, ys = x[start:stop], y[start:stop]
            if fast:
                _softmax_rows_f32(xs, ys, bits, *_EXPF_ARGS)
                continue
            np.subtract(xs, xs.max(axis=1, keepdims=True), out=ys)
            np.exp(ys, out=ys)
            _softmax_normalize(ys)

    threads.over_ranges(len(x), x.size, rows)
    return y


@_kernel(fastmath={"reassoc"})
def _softmax_backward(y, gy, gx):
    rows, cols = y.shape
    for r in range(rows):
        dot = y.dtype.type(0)
        for k in range(cols):
            dot += y[r, k] * gy[r, k]
        for k in range(cols):
            gx[r, k] = y[r, k] * (gy[r, k] - dot)


def softmax_backward(y, gy):
    """gx = y * (gy - sum(y * gy)) row by row."""
    y, gy = _contiguous(y, gy)
    gx = np.empty_like(y)
    threads.over_ranges(len(y), y.size, lambda lo, hi: _softmax_backward(y[lo:hi], gy[lo:hi], gx[lo:hi]))
    return gx


# ---------------------------------------------------------------------------
# activations.cu (elementwise, flattened)
# ---------------------------------------------------------------------------
#: The activation kinds and their codes: THE table. ops/activation.py looks a
#: name up here, cuda.py validates codes against it, and activations.cu's
#: enum ActivationKind holds the same codes (tests/kernels/test_sources.py).
ACTIVATIONS = {"relu": 0, "leaky_relu": 1, "elu": 2, "tanh": 3, "sigmoid": 4}
RELU, LEAKY_RELU, ELU, TANH, SIGMOID = (ACTIVATIONS[k] for k in ("relu", "leaky_relu", "elu", "tanh", "sigmoid"))


@_kernel
def _activation_forward(x, y, kind, alpha):
    # relu, leaky_relu, and ELU's last step (y holds expm1(min(x, 0)) on entry):
    # a compare and a select per element, which LLVM vectorises.
    for i in range(x.size):
        v = x[i]
        if kind == RELU:
            y[i] = 0.0 if v <= 0 else v  # NaN <= 0 is False: NaN propagates, as in NumPy and PyTorch
        elif kind == LEAKY_RELU:
            y[i] = v if v > 0 else alpha * v
        else:  # ELU
            y[i] = v if v > 0 else alpha * y[i]


#: ELU's float32 expm1(t), t <= 0: above this, the Taylor series of expm1 to t^8/8! (relative error below
#: 2^-24 from the truncation at t = -1/2, and exact in its leading term for tiny t); below, exp(t) - 1,
#: which then loses nothing to cancellation (exp(t) <= 0.61)
EXPM1F_SERIES_ABOVE = -0.5


@_kernel
def _elu_f32(x, y, bits, alpha, poly, ln2, lowest, series_above):
    """y = x for x > 0, else alpha * expm1(x); float32 (NumPy's float32 expm1 is scalar: 19 ns an element
    on an AVX2 host, where this takes about 1). NaN comes through."""
    one = np.float32(1.0)
    scale = bits.view(np.float32)
    for i in range(x.size):  # selects and arithmetic only: LLVM vectorises both loops
        t = x[i] if x[i] < 0 else np.float32(0.0)
        p, b = _expf_parts(t, poly, ln2, lowest)
        q = t * (one + t * (np.float32(1 / 2) + t * (np.float32(1 / 6) + t * (np.float32(1 / 24) + t * (
            np.float32(1 / 120) + t * (np.float32(1 / 720) + t * (np.float32(1 / 5040) + t * np.float32(1 / 40320))))))))
        series = t > series_above
        y[i] = q if series else (np.float32(0.0) if t < lowest else p)
        bits[i] = EXPF_ONE_BITS if series else b
    for i in range(x.size):
        v = x[i]
        e = y[i] * scale[i] - (np.float32(0.0) if v > series_above else one)  # expm1(min(v, 0))
        y[i] = alpha * e if v <= 0 else v  # a NaN v fails the test: it comes through


@_kernel
def _sigmoid_from_exp(x, e, one):
    # e = exp(-|x|) on entry, at most 1 so it never overflows:
    # sigmoid(x) = 1/(1 + e) for x >= 0 and e/(1 + e) for x < 0.
    for i in range(x.size):
        e[i] = (one if x[i] >= 0 else e[i]) / (one + e[i])


#: elements per chunk of ELU's and sigmoid's passes (NumPy's SIMD ufuncs, then a numba select), so that
#: each pass reads the previous one's output from the core's cache, not from memory
ACTIVATION_CHUNK = 1 << 16


def activation_forward(x, kind, alpha):
    """y = act(x) for act in ACTIVATIONS (``kind`` is its code).

    The transcendental part is a NumPy ufunc (tanh, expm1, exp: SIMD), the
    rest a numba kernel; float32 ELU is one numba kernel with its own expm1
    (``_elu_f32``); ELU's and sigmoid's passes go chunk by chunk, and a
    large tensor is cut into ranges for minigan's threads (elementwise: the
    same bits either way).
    """
    (x,) = _contiguous(x)
    y = np.empty_like(x)
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    alpha, one = x.dtype.type(alpha), x.dtype.type(1)
    chunk = ACTIVATION_CHUNK if kind in (ELU, SIGMOID) else max(1, x.size)

    elu_f32 = kind == ELU and x.dtype == np.float32

    def elements(lo, hi):
        bits = np.empty(min(chunk, hi - lo), np.int32) if elu_f32 else None
        for start in range(lo, hi, chunk):
            xs, ys = flat_x[start:min(hi, start + chunk)], flat_y[start:min(hi, start + chunk)]
            if elu_f32:
                _elu_f32(xs, ys, bits[:len(xs)], alpha, *_EXPF_ARGS, np.float32(EXPM1F_SERIES_ABOVE))
            elif kind == TANH:
                np.tanh(xs, out=ys)
            elif kind == SIGMOID:
                np.exp(np.negative(np.abs(xs, out=ys), out=ys), out=ys)
                _sigmoid_from_exp(xs, ys, one)
            else:
                if kind == ELU:  # expm1 of min(x, 0): the positive side is x itself, and its exp could overflow
                    np.expm1(np.minimum(xs, 0, out=ys), out=ys)
                _activation_forward(xs, ys, kind, alpha)

    threads.over_ranges(x.size, 2 * x.size, elements)
    return y


@_kernel
def _activation_backward(x, y, gy, gx, kind, alpha):
    for i in range(x.size):
        if kind == RELU:
            gx[i] = gy[i] if x[i] > 0 else 0.0
        elif kind == LEAKY_RELU:
            gx[i] = gy[i] if x[i] > 0 else alpha * gy[i]
        elif kind == ELU:
            gx[i] = gy[i] if x[i] > 0 else gy[i] * (y[i] + alpha)
        elif kind == TANH:
            gx[i] = gy[i] * (1.0 - y[i] * y[i])
        else:  # SIGMOID
            gx[i] = gy[i] * y[i] * (1.0 - y[i])


def activation_backward(x, y, gy, kind, alpha):
    """gx from the input x, the output y and the output gradient gy."""
    x, y, gy = _contiguous(x, y, gy)
    gx = np.empty_like(x)
    flat = [a.reshape(-1) for a in (x, y, gy, gx)]
    alpha = x.dtype.type(alpha)
    threads.over_ranges(x.size, 4 * x.size,
                        lambda lo, hi: _activation_backward(*[a[lo:hi] for a in flat], kind, alpha))
    return gx


# ---------------------------------------------------------------------------
# upsample.cu (nearest neighbour, integer factor); images viewed as planes (N*C, H, W)
# ---------------------------------------------------------------------------
@_kernel
def _upsample_nearest_forward(x, y, scale, lo, hi):
    for p in range(lo, hi):
        for i in range(y.shape[1]):
            src, dst = x[p, i // scale], y[p, i]
            for j in range(x.shape[2]):  # no division in the inner loops: it keeps LLVM from vectorising
                v = src[j]
                for b in range(scale):
                    dst[j * scale + b] = v


def _planes(a):
    n, c, h, w = a.shape
    return a.reshape(n * c, h, w)


def upsample_nearest_forward(x, scale):
    """x (N, C, H, W) -> (N, C, H*scale, W*scale), each pixel repeated."""
    (x,) = _contiguous(x)
    n, c, h, w = x.shape
    y = np.empty((n, c, h * scale, w * scale), dtype=x.dtype)
    xp, yp = _planes(x), _planes(y)
    threads.over_ranges(n * c, x.size + y.size, lambda lo, hi: _upsample_nearest_forward(xp, yp, scale, lo, hi))
    return y


@_kernel
def _upsample_nearest_backward(gy, gx, scale, lo, hi):
    for p in range(lo, hi):
        for i in range(gx.shape[1]):
            for j in range(gx.shape[2]):
                acc = 0.0
                for a in range(scale):
                    for b in range(scale):
                        acc += gy[p, i * scale + a, j * scale + b]
                gx[p, i, j] = acc


def upsample_nearest_backward(gy, scale):
    """Sum each scale x scale block of gy (N, C, H*s, W*s) into gx (N, C, H, W)."""
    (gy,) = _contiguous(gy)
    n, c, h, w = gy.shape
    gx = np.empty((n, c, h // scale, w // scale), dtype=gy.dtype)
    gyp, gxp = _planes(gy), _planes(gx)
    threads.over_ranges(n * c, gy.size + gx.size, lambda lo, hi: _upsample_nearest_backward(gyp, gxp, scale, lo, hi))
    return gx


# ---------------------------------------------------------------------------
# adam.cu (in place)
# ---------------------------------------------------------------------------
@_kernel
def _adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, bias1, bias2):
    for i in range(p.size):
        gi = g[i] + weight_decay * p[i]
        mi = beta1 * m[i] + (1.0 - beta1) * gi
        vi = beta2 * v[i] + (1.0 - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= lr * (mi / bias1) / (math.sqrt(vi / bias2) + eps)


def adam_scalars(dtype, lr, beta1, beta2, eps, weight_decay, step):
    """lr, beta1, beta2, eps, weight_decay, bias1, bias2 as kernel floats of ``dtype`` (both backends' Adam)."""
    t = np.dtype(dtype).type
    return [t(s) for s in (lr, beta1, beta2, eps, weight_decay, 1.0 - beta1**step, 1.0 - beta2**step)]


def check_adam_state(dtype, *arrays):
    """Parameters and moments are updated in place, so they cannot be silently copied (both backends' Adam):
    a strided array's flat view would be a copy, and its update lost."""
    for a in arrays:
        if a.dtype != dtype or not a.flags.c_contiguous:
            raise ValueError("adam: parameters and their moments must be C-contiguous "
                             f"{dtype} arrays (got {a.dtype}, shape {a.shape}).")


def adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam update of ``param`` (and its moments ``m``, ``v``) in place.

    ``step`` counts from 1; weight decay is the L2 kind (added to the gradient),
    as in ``torch.optim.Adam``.
    """
    check_adam_state(param.dtype, param, m, v)
    _adam_step(param.reshape(-1), np.ascontiguousarray(grad).reshape(-1), m.reshape(-1), v.reshape(-1),
               *adam_scalars(param.dtype, lr, beta1, beta2, eps, weight_decay, step))


#: adam_step_multi hands its threads pieces of at most this many elements (1 MiB of float32 per array).
#: Whole tensors as the items left one thread with most of the work where one tensor is most of the
#: model (DCGAN's 5x5 512 <-> 256 weights: 3.3M of D's 4.3M parameters).
ADAM_PIECE = 1 << 18


def adam_step_multi(params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, step):
    """adam_step on every (param, grad, m, v) of the lists (one fused launch on the GPU).

    From ``threads.SPLIT_WORK`` elements in all, the flattened tensors are cut into pieces of at most
    ``ADAM_PIECE`` elements, shared out over minigan's threads, the largest first. Each element's update
    is its own, so the bits are adam_step's on any thread count.
    """
    if not len(params) == len(grads) == len(ms) == len(vs):
        raise ValueError("adam_step_multi: params, grads, ms and vs must have the same length.")
    if not params:
        return
    dtype = params[0].dtype
    check_adam_state(dtype, *params, *ms, *vs)
    flat = [(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1), v.reshape(-1))
            for p, g, m, v in zip(params, grads, ms, vs)]
    scalars = adam_scalars(dtype, lr, beta1, beta2, eps, weight_decay, step)
    if sum(p.size for p in params) < threads.SPLIT_WORK:
        for arrays in flat:
            _adam_step(*arrays, *scalars)
        return
    pieces = [(i, lo, min(arrays[0].size, lo + ADAM_PIECE))
              for i, arrays in enumerate(flat) for lo in range(0, arrays[0].size, ADAM_PIECE)]
    pieces.sort(key=lambda piece: piece[1] - piece[2])  # the largest first, so that the threads end together

    def one(piece):
        i, lo, hi = piece
        _adam_step(*(a[lo:hi] for a in flat[i]), *scalars)

    threads.parallel(one, pieces)
