"""The CPU's blocked stride-1 convolution (minigan.ops.conv._blocked_conv): gradients in float64,
values against the im2col path, the direct loop and PyTorch, and which layers take it.

The block size is shrunk (``small_blocks``) so that small inputs still take the blocked path
and split into several blocks of rows, of whole images, and of uneven last blocks.
"""
import contextlib

import numpy as np
import pytest

import minigan.ops as F
from minigan import Tensor
from minigan.backend import cpu
from minigan.ops import conv
from minigan.ops.conv import Conv2d
from tests import reference
from tests.conftest import requires_torch
from tests.gradcheck.helpers import check, checks, tensor

# (N, C, H, W), OC, K, padding: stride 1 throughout
BLOCKED_CASES = [
    ((2, 3, 9, 7), 4, 3, 1),  # BEGAN's 3x3 "same", non-square, rows split unevenly
    ((3, 2, 6, 6), 3, 3, 0),  # no padding
    ((1, 2, 8, 5), 2, 5, 2),  # 5x5
    ((2, 2, 5, 6), 3, 2, 1),  # an even window: the output is larger than the input
    # fewer channels out than in: the weight gradient from the columns of g (conv._weight_grad)
    ((2, 5, 7, 6), 2, 3, 1),  # BEGAN's last layers' 3x3 "same", 64 -> 3
    ((1, 4, 6, 5), 1, 5, 2),
    ((2, 3, 5, 5), 2, 2, 1),  # an even window
    ((2, 4, 6, 6), 3, 3, 0),
]


@contextlib.contextmanager
def small_blocks(block_bytes=256, min_pixels=4):
    saved = conv.BLOCK_BYTES, conv.MIN_BLOCK_PIXELS, conv.BLOCKED_ABOVE
    conv.BLOCK_BYTES, conv.MIN_BLOCK_PIXELS, conv.BLOCKED_ABOVE = block_bytes, min_pixels, 2 * block_bytes
    try:
        yield
    finally:
        conv.BLOCK_BYTES, conv.MIN_BLOCK_PIXELS, conv.BLOCKED_ABOVE = saved


def _blocked(shape, k, p, dtype=np.float64):
    oh, ow = shape[2] + 2 * p - k + 1, shape[3] + 2 * p - k + 1
    return conv._is_blocked(np.zeros(shape, dtype), k, k, 1, 1, p, p, oh, ow)


@checks(Conv2d)
@pytest.mark.parametrize("shape,oc,k,p", BLOCKED_CASES)
def test_blocked_conv2d_gradients(shape, oc, k, p):
    with small_blocks():
        assert _blocked(shape, k, p)
        x = tensor(shape, "cpu", 0)
        w = tensor((oc, shape[1], k, k), "cpu", 1, scale=0.5)
        b = tensor((oc,), "cpu", 2)
        check(lambda x, w, b: F.conv2d(x, w, b, 1, p), x, w, b)


@pytest.mark.parametrize("block_bytes", [64, 256, 1 << 12, 1 << 20])
@pytest.mark.parametrize("shape,oc,k,p", BLOCKED_CASES)
def test_blocked_conv2d_matches_im2col_and_direct_loop(shape, oc, k, p, block_bytes):
    """Forward, input gradient and weight gradient against the im2col path's expressions."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(shape), rng.standard_normal((oc, shape[1], k, k))
    n, c, h, wd = shape
    oh, ow = h + 2 * p - k + 1, wd + 2 * p - k + 1
    g = rng.standard_normal((n, oc, oh, ow))
    cols = cpu.im2col(x, k, k, 1, 1, p, p, oh, ow)
    g_cf = conv._channels_first(g)
    with small_blocks(block_bytes, 1):
        y = conv._blocked_conv(x, w, p, p)
        gx = conv._blocked_conv(g, conv._flipped(w), k - 1 - p, k - 1 - p)
        gw = conv._weight_grad(x, g, w, k, k, p, p)
    np.testing.assert_allclose(y, reference.conv2d(x, w, None, 1, p), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y, conv._batch_first(w.reshape(oc, -1) @ cols, n, oh, ow), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gx, cpu.col2im(w.reshape(oc, -1).T @ g_cf, n, c, h, wd, k, k, 1, 1, p, p, oh, ow),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw, (g_cf @ cols.T).reshape(w.shape), rtol=1e-10, atol=1e-10)


def test_blocks_cover_the_output_once():
    for n, oh, ow, taps in [(5, 64, 64, 576), (16, 8, 8, 2304), (3, 7, 5, 9), (1, 1, 1, 9)]:
        seen = np.zeros((n, oh), dtype=int)
        for n0, n1, r0, r1 in conv._row_blocks(n, oh, ow, taps, 4):
            seen[n0:n1, r0:r1] += 1
        assert (seen == 1).all()


def test_began_layers_take_the_blocked_path_where_it_pays():
    """64 channels at 64x64 and 32x32 (columns of 9-38 MB): blocked; 256 at 8x8: one GEMM."""
    x = np.zeros((16, 64, 64, 64), np.float32)
    assert conv._is_blocked(x, 3, 3, 1, 1, 1, 1, 64, 64)
    assert conv._is_blocked(x[:, :, :32, :32], 3, 3, 1, 1, 1, 1, 32, 32)
    assert not conv._is_blocked(np.zeros((16, 256, 8, 8), np.float32), 3, 3, 1, 1, 1, 1, 8, 8)
    assert not conv._is_blocked(x, 3, 3, 2, 2, 1, 1, 32, 32)  # stride 2: im2col


@requires_torch
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_blocked_conv2d_matches_torch(dtype, tol):
    """A BEGAN layer at its real block size (64 channels, 32x32, batch 2): forward and both gradients."""
    import torch
    import torch.nn.functional as TF

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 64, 32, 32)).astype(dtype)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(dtype)
    b = rng.standard_normal(64).astype(dtype)
    g = rng.standard_normal((2, 64, 32, 32)).astype(dtype)
    with small_blocks(1 << 16, 64):
        assert conv._is_blocked(x, 3, 3, 1, 1, 1, 1, 32, 32)
        xt, wt, bt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
        y = F.conv2d(xt, wt, bt, 1, 1)
        y.backward(Tensor(g))
    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    ty = TF.conv2d(tx, tw, tb, 1, 1)
    ty.backward(torch.from_numpy(g))
    for ours, theirs in [(y, ty), (xt.grad, tx.grad), (wt.grad, tw.grad), (bt.grad, tb.grad)]:
        ours = ours.numpy() if hasattr(ours, "numpy") else ours
        theirs = theirs.detach().numpy()
        np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * np.abs(theirs).max())
