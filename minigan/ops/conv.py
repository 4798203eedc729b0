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

On the CPU a stride-1 convolution (BEGAN's 3x3 layers, 64-256 channels)
does not build the whole column matrix, which is KH*KW times the input
(150 MB for one of BEGAN's layers at batch 16) and would stream through
memory twice. It runs block by block (:func:`_blocked_conv`): the columns of
a few output rows (or of a few whole images, when they are small) go into a
buffer of about ``BLOCK_BYTES`` that stays in the core's L2 cache, and one
GEMM turns them into those rows of the output, each block on one of
minigan's threads. Its input gradient is the same kind of convolution
(the output gradient against the flipped, transposed weights), its weight
gradient the sum of each block's product of the output gradient with the
block's columns, rebuilt from the saved input. The 3x3 ones with padding 1
on even-sized images (all of BEGAN's) take Winograd F(2x2, 3x3) instead for
the forward pass and the input gradient (:func:`_winograd_conv`, Lavin &
Gray 2016): 16 multiplications per 2x2 outputs and channel pair where the
direct form takes 36, block by block as above; measured 1.3-1.4x faster per
layer and BEGAN's step 0.88-0.90x on this machine. On images of 32x32 and up
with sides that are multiples of 4 they take F(4x4, 3x3) (36 multiplications
per 4x4 outputs where the direct form takes 144; :func:`_winograd_tile`).
Their weight gradient is F(2x2, 3x3)'s adjoint (:func:`_winograd_weight_grad`).
A strided convolution with large columns runs by blocks of whole images
(:func:`_is_strided_blocked`) where it measured faster: always for DCGAN's
3-channel input layer, and for the larger layers when their weight gradient
is not wanted (the discriminator's, frozen in the G step), since the forward
pass then keeps x and not the columns. The GPU keeps the im2col path.

A 1x1 convolution with stride 1 and no padding (SAGAN's attention has 12)
needs neither kernel: each column is one pixel's channel vector, so the
columns are x itself laid out channels first, and col2im is the way back to
batch first (no window overlaps, nothing to sum).
"""
from __future__ import annotations

import collections

import numpy as np

from minigan import backend
from minigan.backend import cpu, threads
from minigan.tensor import Function

#: the size of one block of columns in the blocked stride-1 convolution: about
#: a core's L2 (2 MiB on this machine's Xeon; 1-2 MiB on current x86 server
#: cores). Measured, BEGAN's step, blocks interleaved in one process: 2 MiB
#: 3.5% faster than 1 MiB at batches 5 and 16, 4 MiB 2% faster again (the
#: L3 here is large); 256-512 KiB slower.
BLOCK_BYTES = 2 << 20
#: the blocked path is taken when one image's columns exceed this many bytes (see _is_blocked)
BLOCKED_ABOVE = 2 << 20
#: and at least this many output pixels (GEMM columns): below ~256 the GEMMs
#: lose more to their edges than the cache saves.
MIN_BLOCK_PIXELS = 256


def _pair(v):
    return (int(v), int(v)) if not isinstance(v, (tuple, list)) else (int(v[0]), int(v[1]))


def conv_output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def conv_transpose_output_size(size, kernel, stride, padding, output_padding):
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def _swap_first_axes(a):
    """a (P, Q, ...) -> contiguous (Q, P, ...). On the CPU a large one is copied in blocks of Q by
    minigan's threads (NumPy's copy releases the GIL); the same values either way."""
    xp = backend.array_module(a)
    view = a.swapaxes(0, 1)
    if xp is not np or a.size < threads.SPLIT_WORK:
        return xp.ascontiguousarray(view)
    out = np.empty(view.shape, dtype=a.dtype)
    threads.over_ranges(len(out), a.size, lambda lo, hi: np.copyto(out[lo:hi], view[lo:hi]))
    return out


def _channels_first(a):
    """(N, C, H, W) -> (C, N*H*W), contiguous: the layout the GEMMs and columns share."""
    return _swap_first_axes(a).reshape(a.shape[1], -1)


def _batch_first(a, n, h, w):
    """(C, N*H*W) -> (N, C, H, W), contiguous."""
    return _swap_first_axes(a.reshape(a.shape[0], n, h, w))


#: the product-then-col2im of the input gradient and the transposed convolution goes image by image
#: on the CPU when one image's columns reach this many bytes (see _product_col2im)
IMAGEWISE_ABOVE = 256 << 10
#: ... and its columns are more than this many times the image (KH*KW / (SH*SW)), each image's product
#: has at least IMAGEWISE_MIN_PIXELS columns, and there are IMAGEWISE_MIN_IMAGES images per thread
#: (single-thread products, one image each, must balance). Measured, steps interleaved in one process,
#: image by image / whole batch: DCGAN-16 (5x5 stride 2: 6.25x) 0.95-0.98; SAGAN-16 (4x4 stride 2: 4x)
#: 1.02-1.03; at batch 5 (before the image count was required) DCGAN 1.14, SAGAN 1.07.
IMAGEWISE_MIN_EXPANSION = 5
IMAGEWISE_MIN_PIXELS = 256
IMAGEWISE_MIN_IMAGES = 4


def _is_imagewise(src, per_image_bytes, kh, kw, sh, sw, oh, ow):
    """Whether _product_col2im goes image by image (the CPU, large columns, many images; see above)."""
    return (backend.array_module(src) is np and per_image_bytes >= IMAGEWISE_ABOVE
            and kh * kw > IMAGEWISE_MIN_EXPANSION * sh * sw and oh * ow >= IMAGEWISE_MIN_PIXELS
            and src.shape[0] >= IMAGEWISE_MIN_IMAGES * threads.width())


#: the product-then-col2im runs channels last (cpu.col2im_channels_last) on the CPU when the image it
#: writes has at most CHANNELS_LAST_MAX_PIXELS pixels and at least CHANNELS_LAST_MIN_CHANNELS channels, and
#: the columns outnumber the weights (N*OH*OW >= K): the weights are laid out anew for it on every call.
#: Measured, one thread, batch 16, float32, channels last / plane-wise (see cpu.col2im_channels_last):
#: 128 -> 64 at 4x4 and 64 -> 32 at 8x8 (4x4, stride 2) 0.50 / 0.45; 256 -> 128 at 8x8 (5x5) 0.70;
#: 512 -> 256 at 4x4 0.84 but at batch 5 1.46 (the weights' new layout, 3.3M values, is the cost: hence the
#: third rule); 128 -> 64 at 16x16, 32x32 out, 1.17 against the image-by-image form (hence the first).
CHANNELS_LAST_MAX_PIXELS = 16 * 16
CHANNELS_LAST_MIN_CHANNELS = 16
CHANNELS_LAST = True  # False: never (for A/B measurement and the tests of the other forms)


def _is_channels_last(src, shape, oh, ow):
    """Whether _product_col2im runs channels last (the CPU, a small map out, enough channels; see above)."""
    n, c, h, wd = shape
    return (CHANNELS_LAST and backend.array_module(src) is np and h * wd <= CHANNELS_LAST_MAX_PIXELS
            and c >= CHANNELS_LAST_MIN_CHANNELS and n * oh * ow >= src.shape[1])


def _product_col2im_channels_last(w_t, src_cf, shape, kh, kw, sh, sw, ph, pw, oh, ow):
    """col2im(w_t @ src) with the channels innermost: the rows (N*OH*OW, K) of src (``src_cf`` read
    transposed: BLAS takes the view, no copy), times the weights laid out (K, KH*KW*C), summed by
    cpu.col2im_channels_last into (N, H, W, C), then turned channels first."""
    n, c, h, wd = shape
    k = src_cf.shape[0]
    w_rows = np.ascontiguousarray(w_t.reshape(c, kh * kw, k).transpose(2, 1, 0)).reshape(k, kh * kw * c)
    cols = threads.matmul(src_cf.T, w_rows)
    out = np.empty((n, h, wd, c), dtype=cols.dtype)
    cpu.col2im_channels_last(cols, out, kh, kw, sh, sw, ph, pw, oh, ow)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _product_col2im(w_t, src, src_cf, shape, kh, kw, sh, sw, ph, pw, oh, ow):
    """col2im(w_t @ src) of the given (N, C, H, W) ``shape``, summing overlaps; w_t (C*KH*KW, K),
    src (N, K, OH*OW) batch first and ``src_cf`` the same values channels first, (K, N*OH*OW), or None
    when the caller has no such copy (it is then made here, only if the form taken reads it).

    On the CPU, when one image's columns are large (IMAGEWISE_ABOVE and the rest), image by image on
    minigan's threads: the image's columns, w_t @ src[n], go to a buffer in the core's cache and col2im reads
    them from there into out[n]; the whole batch's columns (6.25x the image for a 5x5 stride-2
    window) never reach memory. Else (and on the GPU) one product over the batch, w_t @ src_cf, and
    one col2im. The same sums in the same order per
    pixel either way; the products differ only in how BLAS blocks them.
    """
    n, c, h, wd = shape
    dtype = np.result_type(w_t, src)
    channels_last = _is_channels_last(src, shape, oh, ow)
    imagewise = not channels_last and _is_imagewise(src, w_t.shape[0] * oh * ow * dtype.itemsize,
                                                    kh, kw, sh, sw, oh, ow)
    if src_cf is None and not imagewise:
        src_cf = _swap_first_axes(src).reshape(src.shape[1], -1)
    if channels_last:
        return _product_col2im_channels_last(w_t, src_cf, shape, kh, kw, sh, sw, ph, pw, oh, ow)
    if not imagewise:
        cols = threads.matmul(w_t, src_cf)
        return backend.kernels_for(src).col2im(cols, n, c, h, wd, kh, kw, sh, sw, ph, pw, oh, ow)
    out = np.empty(shape, dtype=dtype)

    def image(i):
        cols = np.matmul(w_t, src[i], out=threads.scratch((w_t.shape[0], oh * ow), dtype))
        cpu.col2im_into(cols, out[i:i + 1], kh, kw, sh, sw, ph, pw, oh, ow)

    threads.parallel(image, range(n))
    return out


def _is_pointwise(kh, kw, sh, sw, ph, pw):
    """A 1x1 window, stride 1, no padding: im2col and col2im are plain layout changes."""
    return kh == kw == 1 and sh == sw == 1 and ph == pw == 0


#: a 1x1 convolution on the CPU whose product has fewer FLOPs than this (one that would run on one BLAS
#: thread anyway) runs as a batched product on the arrays as they lie, (OC, C) @ (N, C, H*W): no
#: channels-first copy in, no batch-first copy out, and the weight gradient as the images' (OC, C)
#: products summed. SAGAN's attention projections: forward + backward of 32 -> 4 at 16x16, batch 16,
#: 0.28 -> 0.16 ms, of 64 -> 8 at 8x8 0.24 -> 0.15 ms (one thread, AMD EPYC). Whole steps, interleaved
#: in one process: the main example's network 0.82-0.95 of the step (four runs); SAGAN 64x64 at batches 5 and 16
#: unchanged (1.01-1.02, inside the noise; 1.02-1.03 with no limit on the size).
#: (0: never; for A/B runs and the tests of the other form)
POINTWISE_BATCHED_BELOW = threads.PARALLEL_FLOPS


def _is_pointwise_batched(x, w, kh, kw, sh, sw, ph, pw):
    """The CPU's 1x1 convolution as a batched product (see POINTWISE_BATCHED_BELOW)."""
    n, c, h, wd = x.shape
    return (backend.array_module(x) is np and _is_pointwise(kh, kw, sh, sw, ph, pw)
            and 2 * n * c * h * wd * w.shape[0] < POINTWISE_BATCHED_BELOW)


def _is_blocked(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """The CPU's blocked path: stride 1, a window wider than a pixel, padding below the window, and
    one image's columns over BLOCKED_ABOVE, 2 MiB (measured: below that, at BEGAN's 128 channels at 16x16 and
    256 at 8x8, the whole column matrix fits the caches well enough, and one large GEMM beats many
    small ones)."""
    return (backend.array_module(x) is np and sh == sw == 1 and not _is_pointwise(kh, kw, sh, sw, ph, pw)
            and ph < kh and pw < kw and x.shape[1] * kh * kw * oh * ow * x.dtype.itemsize > BLOCKED_ABOVE)


#: conv2d with a stride above 1 on the CPU runs block by block too (_is_strided_blocked): whole images
#: per block, their columns built in this thread's scratch buffer and multiplied there, the output
#: written batch first with no copy. The forward pass then keeps no columns, so the weight gradient
#: builds them again; where nothing asks for it (D's layers in the G step, frozen; anything under
#: no_grad) that costs nothing. Measured, 2 threads, float32, blocked / whole-batch columns, forward
#: alone, batch 16 (and 5): 5x5 stride 2 3 -> 64 from 64x64 0.59-0.76 (0.57-0.64), 64 -> 128 from 32x32
#: 0.84-0.96 (0.72-1.05); 4x4 stride 2 64 -> 128 from 32x32 0.72-0.76 (0.59-0.72), 3 -> 64 from 64x64
#: (192 KiB of columns an image) 0.71-1.14 (0.47); outputs of 8x8 and less 0.75-2.2, 48-128 KiB of
#: columns an image 1.1-3.4: hence the two floors below. Forward + weight gradient, blocked / whole-batch
#: columns: 5x5 3 -> 64 0.71-0.84 (0.92-1.18), 4x4 3 -> 64 1.16-1.29 (0.72-0.83), 5x5 64 -> 128 0.95-1.06,
#: 128 -> 256 from 16x16 1.23-1.35: hence the taps' ceiling (DCGAN's input layer). Whole steps, the two
#: forms in turn in one process, blocked / columns: DCGAN-16 0.949 and 0.963, BEGAN-16 0.960; DCGAN-5
#: 0.988, BEGAN-5 0.996, SAGAN 64x64 0.975-1.010 (inside the noise). The main example's layers are below
#: the floors. (False: never; for A/B runs and the tests of the other form)
STRIDED_BLOCKED = True
STRIDED_MIN_PIXELS = 256  # output pixels an image
STRIDED_MIN_BYTES = 256 << 10  # one image's columns
STRIDED_WEIGHT_GRAD_MAX_TAPS = 128  # C*KH*KW at most, when the weight gradient is wanted


def _is_strided_blocked(x, kh, kw, sh, sw, oh, ow, weight_grad):
    """The CPU's blocked path for a convolution with a stride above 1 (see STRIDED_BLOCKED)."""
    taps = x.shape[1] * kh * kw
    return (STRIDED_BLOCKED and backend.array_module(x) is np and (sh, sw) != (1, 1)
            and oh * ow >= STRIDED_MIN_PIXELS and taps * oh * ow * x.dtype.itemsize >= STRIDED_MIN_BYTES
            and (not weight_grad or taps <= STRIDED_WEIGHT_GRAD_MAX_TAPS))


def _row_blocks(n, oh, ow, taps, itemsize, whole_images=False):
    """(n0, n1, r0, r1) blocks of the output: images n0..n1-1, rows r0..r1-1 of each.

    A block holds about BLOCK_BYTES of columns (``taps`` = C*KH*KW values
    per output pixel): whole images when one fits (or ``whole_images``: one
    image at least), else an image's rows cut into equal parts. There are at
    least as many blocks as threads.
    """
    pixels = max(ow, MIN_BLOCK_PIXELS, BLOCK_BYTES // (taps * itemsize), oh * ow if whole_images else 0)
    if pixels >= oh * ow:
        per = min(pixels // (oh * ow), -(-n // threads.width()))
        return [(n0, min(n, n0 + per), 0, oh) for n0 in range(0, n, per)]
    parts = -(-oh // (pixels // ow))
    rows = -(-oh // parts)
    return [(i, i + 1, r0, min(oh, r0 + rows)) for i in range(n) for r0 in range(0, oh, rows)]


def _blocks(x, kh, kw, sh, sw, oh, ow):
    """The blocks of a blocked convolution of x: rows of images at stride 1, whole images else."""
    return _row_blocks(x.shape[0], oh, ow, x.shape[1] * kh * kw, x.dtype.itemsize, whole_images=(sh, sw) != (1, 1))


def _block_columns(x, block, kh, kw, sh, sw, ph, pw, oh, ow):
    """The columns of one block, (images, C*KH*KW, rows*OW), in this thread's scratch buffer."""
    n0, n1, r0, r1 = block
    buf = threads.scratch((n1 - n0, x.shape[1] * kh * kw, (r1 - r0) * ow), x.dtype)
    if (sh, sw) == (1, 1):
        backend.kernels_for(x).im2col_rows(x, buf, n0, r0, kh, kw, ph, pw)
    else:  # whole images (_blocks)
        backend.kernels_for(x).im2col_images(x, buf, n0, kh, kw, sh, sw, ph, pw, oh, ow)
    return buf


def _blocked_conv(x, w, ph, pw, sh=1, sw=1):
    """conv2d of x (N, C, H, W) with w (OC, C, KH, KW), no bias -> (N, OC, OH, OW), block by block."""
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(wd, kw, sw, pw)
    x, w_rows = np.ascontiguousarray(x), np.ascontiguousarray(w).reshape(oc, -1)
    y = np.empty((n, oc, oh * ow), dtype=np.result_type(x, w))

    def block_forward(block):
        n0, n1, r0, r1 = block
        cols = _block_columns(x, block, kh, kw, sh, sw, ph, pw, oh, ow)
        np.matmul(w_rows, cols, out=y[n0:n1, :, r0 * ow:r1 * ow])

    threads.parallel(block_forward, _blocks(x, kh, kw, sh, sw, oh, ow))
    return y.reshape(n, oc, oh, ow)


#: bytes of transformed input (16 x C x tiles) per block: with the block's transformed output,
#: about a core's L2 (measured on 64 channels at 64x64: 8 tile rows of 32 tiles)
WINOGRAD_BLOCK_BYTES = 1 << 20


#: input channels from which Winograd beats the blocked path: its 16 products have C as their inner
#: dimension, and its transforms cost the same whatever C. Measured, 3x3 to 64 channels at 64x64, batch
#: 16, Winograd / blocked: C = 3 8.9 / 2.5 ms, 8 9.9 / 4.9, 16 14.2 / 10.4, 32 15.1 / 18.5
WINOGRAD_MIN_CHANNELS = 32


def _is_winograd(x, kh, kw, ph, pw):
    """A stride-1 3x3 convolution with padding 1 on an even-sized image (BEGAN's), from at least
    WINOGRAD_MIN_CHANNELS channels: Winograd F(2x2, 3x3), or F(4x4, 3x3) (_winograd_tile)."""
    return (kh == kw == 3 and ph == pw == 1 and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0
            and x.shape[1] >= WINOGRAD_MIN_CHANNELS)


#: F(4x4, 3x3) in place of F(2x2, 3x3) (False: never; for A/B runs and the tests of the other form)
WINOGRAD_F4 = True
#: ... on images of at least this many pixels (and sides that are multiples of 4): below it the 36
#: products per block are too small (an image of 16x16 has 16 tiles). Measured, forward pass, 2 threads,
#: batch 16, F(4x4) / F(2x2): 64 -> 64 at 64x64 0.64, at 32x32 0.70, 128 -> 128 at 32x32 0.76;
#: 192 -> 192 at 16x16 1.02, 64 -> 64 at 16x16 1.15, 256 -> 256 at 8x8 1.30
WINOGRAD_F4_MIN_PIXELS = 1024


def _winograd_tile(x):
    """The output block of the Winograd conv of x: 4 (F(4x4, 3x3)) on a large enough image whose sides
    are multiples of 4, else 2 (F(2x2, 3x3))."""
    h, wd = x.shape[2:]
    return 4 if WINOGRAD_F4 and h % 4 == 0 and wd % 4 == 0 and h * wd >= WINOGRAD_F4_MIN_PIXELS else 2


_Transforms = collections.namedtuple("_Transforms", "filter input output")
#: each tile size's transforms, kernels of minigan.backend.cpu
_WINOGRAD_KERNELS = {2: _Transforms(cpu.winograd_filter, cpu.winograd_input, cpu.winograd_output),
                     4: _Transforms(cpu.winograd4_filter, cpu.winograd4_input, cpu.winograd4_output)}


def _winograd_conv(x, w):
    """conv2d of x (N, C, H, W), H and W even, with w (OC, C, 3, 3), stride 1, padding 1 -> (N, OC, H, W).

    Block by block (an image's tile rows), each on one of minigan's threads: the input transform of
    the block into a buffer that stays in cache, P = (m + 2)^2 matrix products U[a,b] (OC, C) @
    V[a,b] (C, tiles), and the output transform straight into y. m x m output blocks, m = 2 or 4
    (_winograd_tile): 2.25x or 4x fewer multiplications than the direct form.
    """
    n, c, h, wd = x.shape
    oc = w.shape[0]
    dtype = np.result_type(x, w)
    m = _winograd_tile(x)
    transforms, positions = _WINOGRAD_KERNELS[m], (m + 2) ** 2
    u = transforms.filter(w.astype(dtype, copy=False))  # (P, OC, C): G g G^T
    x = np.ascontiguousarray(x, dtype=dtype)
    th, tw = h // m, wd // m
    blocks = _winograd_blocks(n, th, tw, max(c, oc), x.dtype.itemsize, positions)
    y = np.empty((n, oc, h, wd), dtype=dtype)

    def block(b):
        v = _winograd_tiles(x, b, m)
        mm = np.matmul(u, v, out=threads.scratch((positions, oc, v.shape[2]), u.dtype, slot=1))
        transforms.output(mm, y, *b)

    threads.parallel(block, blocks)
    return y


def _winograd_blocks(n, th, tw, channels, itemsize, positions=16):
    """The blocks (image, first tile row, end tile row): as many tile rows each as fit
    WINOGRAD_BLOCK_BYTES of ``positions`` x ``channels`` x tiles, and at least 4 blocks per thread (they
    are taken dynamically: a thread that finishes early takes the next)."""
    per = max(1, min(th, WINOGRAD_BLOCK_BYTES // (positions * channels * tw * itemsize),
                     -(-n * th // (4 * threads.width()))))
    return [(i, t0, min(th, t0 + per)) for i in range(n) for t0 in range(0, th, per)]


def _winograd_tiles(x, block, m=2):
    """V ((m + 2)^2, C, tiles) = B^T d B of one block's tiles of x (image i, tile rows t0..t1-1) for
    m x m output blocks, in this thread's scratch buffer."""
    i, t0, t1 = block
    v = threads.scratch(((m + 2) ** 2, x.shape[1], (t1 - t0) * (x.shape[3] // m)), x.dtype)
    _WINOGRAD_KERNELS[m].input(x, v, i, t0, t1)
    return v


#: the weight gradient of a Winograd layer by Winograd too (False: blocked im2col + GEMM); for A/B runs
WINOGRAD_WEIGHT_GRAD = True
#: and only on images of at least this many pixels: its 16 products per block have the block's tiles
#: as their inner dimension, and an 8x8 image has 16. Measured, 2 threads, Winograd / blocked weight
#: gradient: 64 -> 64 at 64x64 0.79-0.92, 128 -> 128 at 32x32 0.61-0.72, 192 -> 192 at 16x16 0.69-0.85,
#: 64 -> 64 at 16x16 0.76; at 8x8 1.59 (64 channels) and 2.24 (256)
WINOGRAD_WEIGHT_GRAD_MIN_PIXELS = 256


def _is_winograd_weight_grad(x, g, kh, kw, ph, pw):
    """A Winograd layer (see _is_winograd) on an image of WINOGRAD_WEIGHT_GRAD_MIN_PIXELS or more
    whose output gradient has WINOGRAD_MIN_CHANNELS channels too: with 3 of them (BEGAN's last
    layers) the flipped blocked form reads 27 rows of g's columns instead."""
    return (WINOGRAD_WEIGHT_GRAD and _is_winograd(x, kh, kw, ph, pw) and g.shape[1] >= WINOGRAD_MIN_CHANNELS
            and x.shape[2] * x.shape[3] >= WINOGRAD_WEIGHT_GRAD_MIN_PIXELS)


def _winograd_weight_grad(x, g):
    """d(loss)/dw (OC, C, 3, 3) of the Winograd conv2d of x (N, C, H, W), from g (N, OC, H, W).

    Its adjoint, block by block as the forward pass (cpu.winograd_output_adjoint has the algebra):
    V of the block's tiles of x, dM of the same tiles of g, the 16 products dM[a,b] @ V[a,b]^T
    summed over the blocks in block order (the same bits every run), then G^T dU G. V is computed
    again here rather than kept from the forward pass: it is 4x the input (16 values per 4 pixels).
    """
    n, c, h, wd = x.shape
    oc = g.shape[1]
    blocks = _winograd_blocks(n, h // 2, wd // 2, max(c, oc), x.dtype.itemsize)

    def block_weight_grad(b):
        v = _winograd_tiles(x, b)
        dm = threads.scratch((16, oc, v.shape[2]), g.dtype, slot=1)
        cpu.winograd_output_adjoint(g, dm, *b)
        return np.matmul(dm, v.transpose(0, 2, 1))  # (16, OC, C)

    parts = threads.parallel(block_weight_grad, blocks)
    return cpu.winograd_filter_adjoint(sum(parts[1:], parts[0]))


def _stride1_conv(x, w, ph, pw):
    """The CPU's stride-1 conv2d without bias: Winograd where it applies, else blocked im2col + GEMM."""
    if _is_winograd(x, w.shape[2], w.shape[3], ph, pw):
        return _winograd_conv(x, w)
    return _blocked_conv(x, w, ph, pw)


def _blocked_conv_weight_grad(x, g, kh, kw, ph, pw, sh=1, sw=1):
    """d(loss)/dw (OC, C, KH, KW) of the blocked conv2d, from x (N, C, H, W) and g (N, OC, OH, OW)."""
    n, c = x.shape[:2]
    oc, oh, ow = g.shape[1:]
    x, g_rows = np.ascontiguousarray(x), np.ascontiguousarray(g).reshape(n, oc, oh * ow)

    def block_weight_grad(block):
        n0, n1, r0, r1 = block
        cols = _block_columns(x, block, kh, kw, sh, sw, ph, pw, oh, ow)  # (images, C*KH*KW, rows*OW)
        return np.matmul(g_rows[n0:n1, :, r0 * ow:r1 * ow], cols.transpose(0, 2, 1)).sum(axis=0)

    parts = threads.parallel(block_weight_grad, _blocks(x, kh, kw, sh, sw, oh, ow))
    return sum(parts[1:], parts[0]).reshape(oc, c, kh, kw)  # summed in block order: the same bits every run


def _weight_grad(x, g, w, kh, kw, ph, pw):
    """The stride-1 weight gradient, with im2col of whichever of x and g has fewer channels.

    dw[o, c, i, j] = sum over pixels of x[c, y, x] g[o, y + ph - i, x + pw - j]: read the other way
    round, the weight gradient of a convolution of g (padding KH-1-PH, its output x's size) against x,
    turned by 180 degrees. With 64 channels in and 3 out (BEGAN's last layers) the columns are 27 rows
    of g's instead of 576 of x's: (16, 64, 64, 64) to 3 channels, 23.9 -> 3.0 ms (2 threads).
    """
    if _is_winograd_weight_grad(x, g, kh, kw, ph, pw):
        return _winograd_weight_grad(x, g)
    if w.shape[0] >= w.shape[1]:
        return _blocked_conv_weight_grad(x, g, kh, kw, ph, pw)
    return _flipped(_blocked_conv_weight_grad(g, x, kh, kw, kh - 1 - ph, kw - 1 - pw))


def _flipped(w):
    """w (OC, C, KH, KW) -> (C, OC, KH, KW) turned by 180 degrees: the weights of the input gradient."""
    return np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])


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
        ctx.geometry = (n, c, h, wd, kh, kw, sh, sw, ph, pw, oh, ow)
        ctx.blocked = (_is_blocked(x, kh, kw, sh, sw, ph, pw, oh, ow)
                       or _is_strided_blocked(x, kh, kw, sh, sw, oh, ow, weight_grad=ctx.needs_grad[1]))
        ctx.batched = not ctx.blocked and _is_pointwise_batched(x, w, kh, kw, sh, sw, ph, pw)
        if ctx.blocked:  # the backward pass works from x
            saved = x
            y = _stride1_conv(x, w, ph, pw) if (sh, sw) == (1, 1) else _blocked_conv(x, w, ph, pw, sh, sw)
        elif ctx.batched:  # ... and so does this one
            saved = np.ascontiguousarray(x)
            y = np.matmul(w.reshape(oc, c), saved.reshape(n, c, h * wd)).reshape(n, oc, h, wd)
        else:  # ... this one from the columns
            if _is_pointwise(kh, kw, sh, sw, ph, pw):
                saved = _channels_first(x)  # (C, N*H*W): the im2col of a 1x1 window
            else:
                saved = backend.kernels_for(x).im2col(x, kh, kw, sh, sw, ph, pw, oh, ow)  # (C*KH*KW, N*OH*OW)
            y = _batch_first(threads.matmul(w.reshape(oc, -1), saved), n, oh, ow)  # (N, OC, OH, OW)
        if b is not None:
            y += b.reshape(1, oc, 1, 1)
        ctx.save(saved, w)
        return y

    @staticmethod
    def backward(ctx, g):
        if ctx.blocked:
            return Conv2d._blocked_backward(ctx, g)
        if ctx.batched:
            return Conv2d._batched_backward(ctx, g)
        cols, w = ctx.saved
        n, c, h, wd, kh, kw, sh, sw, ph, pw, oh, ow = ctx.geometry
        oc = w.shape[0]
        g_cf = _channels_first(g)  # (OC, N*OH*OW)
        gx = gw = gb = None
        if ctx.needs_grad[0]:
            if _is_pointwise(kh, kw, sh, sw, ph, pw):
                gx = _batch_first(threads.matmul(w.reshape(oc, -1).T, g_cf), n, h, wd)  # col2im of a 1x1 window
            else:
                gx = Conv2d._col2im_input_grad(ctx, w, g, g_cf)
        if ctx.needs_grad[1]:
            gw = threads.matmul(g_cf, cols.T).reshape(w.shape)
        if ctx.needs_grad[2]:  # apply passes b even when it is None
            gb = g_cf.sum(axis=1)
        return gx, gw, gb

    @staticmethod
    def _col2im_input_grad(ctx, w, g, g_cf):
        """The input gradient, col2im of w^T g (C*KH*KW, N*OH*OW); g_cf is g channels first, or None."""
        n, c, h, wd, kh, kw, sh, sw, ph, pw, oh, ow = ctx.geometry
        oc = w.shape[0]
        g_rows = backend.array_module(g).ascontiguousarray(g).reshape(n, oc, oh * ow)
        return _product_col2im(w.reshape(oc, -1).T, g_rows, g_cf, (n, c, h, wd), kh, kw, sh, sw, ph, pw, oh, ow)

    @staticmethod
    def _batched_backward(ctx, g):
        x, w = ctx.saved
        n, c, h, wd = x.shape
        oc = w.shape[0]
        g3 = np.ascontiguousarray(g).reshape(n, oc, h * wd)
        gx = np.matmul(w.reshape(oc, c).T, g3).reshape(x.shape) if ctx.needs_grad[0] else None
        gw = gb = None
        if ctx.needs_grad[1]:  # the images' (OC, C) products summed in image order: the same bits every run
            gw = np.matmul(g3, x.reshape(n, c, h * wd).transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
        if ctx.needs_grad[2]:
            gb = g3.sum(axis=(0, 2))
        return gx, gw, gb

    @staticmethod
    def _blocked_backward(ctx, g):
        x, w = ctx.saved
        kh, kw, sh, sw, ph, pw = ctx.geometry[4:10]
        g = np.ascontiguousarray(g)
        gx = gw = None
        if (sh, sw) == (1, 1):
            gx = _stride1_conv(g, _flipped(w), kh - 1 - ph, kw - 1 - pw) if ctx.needs_grad[0] else None
            gw = _weight_grad(x, g, w, kh, kw, ph, pw) if ctx.needs_grad[1] else None
        else:  # the input gradient as the whole-batch form's; the weight gradient from columns built again
            if ctx.needs_grad[0]:
                gx = Conv2d._col2im_input_grad(ctx, w, g, None)
            if ctx.needs_grad[1]:
                gw = _blocked_conv_weight_grad(x, g, kh, kw, ph, pw, sh, sw)
        gb = g.sum(axis=(0, 2, 3)) if ctx.needs_grad[2] else None
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
        x = backend.array_module(x).ascontiguousarray(x)
        # (C, N*H*W): the weight gradient's (and the whole-batch product's, which makes its own without it)
        x_cf = _channels_first(x) if ctx.needs_grad[1] else None
        # col2im of w^T x, (OC*KH*KW, N*H*W)
        y = _product_col2im(w.reshape(c, -1).T, x.reshape(n, c, h * wd), x_cf, (n, oc, oh, ow),
                            kh, kw, sh, sw, ph, pw, h, wd)
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
            gx = _batch_first(threads.matmul(w.reshape(c, -1), gcols), n, h, wd)
        if ctx.needs_grad[1]:
            gw = threads.matmul(x_cf, gcols.T).reshape(w.shape)
        if ctx.needs_grad[2]:  # apply passes b even when it is None
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb


def conv2d(x, w, b=None, stride=1, padding=0):
    return Conv2d.apply(x, w, b, stride=stride, padding=padding)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0):
    return ConvTranspose2d.apply(x, w, b, stride=stride, padding=padding,
                                 output_padding=output_padding)
