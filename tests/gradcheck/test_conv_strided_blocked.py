"""The CPU's blocked strided convolution (conv._is_strided_blocked): whole images per block, the forward
pass keeping x instead of the columns, the weight gradient building them again.

Gradients in float64 (with the weight trainable, and frozen as D's are in the G step), values against
the whole-batch im2col form and PyTorch, cpu.im2col_images against im2col, which layers take it, and
the engine's rule it builds on: under no_grad a forward pass is told that no gradient will be asked.
The floors are lowered (``strided_blocks``) so that small inputs take the path, in uneven blocks.
"""
import contextlib

import numpy as np
import pytest

import minigan.ops as F
from minigan import Tensor, no_grad
from minigan.backend import cpu, threads
from minigan.ops import conv
from minigan.ops.conv import Conv2d, ConvTranspose2d
from minigan.tensor import Function
from tests import reference
from tests.conftest import requires_torch
from tests.gradcheck.helpers import check, checks, settings, tensor

# (N, C, H, W), OC, K, stride, padding
STRIDED_CASES = [
    ((3, 2, 8, 8), 3, 5, 2, 2),  # DCGAN's 5x5 stride 2, padding 2
    ((2, 3, 8, 6), 2, 4, 2, 1),  # SAGAN's 4x4 stride 2, non-square
    ((5, 2, 7, 7), 2, 3, 2, 0),  # no padding, an odd image, 5 images in uneven blocks
    ((2, 2, 9, 8), 3, 3, (3, 2), 1),  # unequal strides
]


@contextlib.contextmanager
def strided_blocks(block_bytes=1 << 20, max_taps=1 << 30):
    """Every strided convolution takes the blocked path; ``block_bytes`` sets how many images a block holds."""
    with settings(conv, BLOCK_BYTES=block_bytes, STRIDED_MIN_PIXELS=1, STRIDED_MIN_BYTES=0,
                  STRIDED_WEIGHT_GRAD_MAX_TAPS=max_taps):
        yield


def _output_size(shape, k, s, p):
    (sh, sw), (ph, pw) = conv._pair(s), conv._pair(p)
    return conv.conv_output_size(shape[2], k, sh, ph), conv.conv_output_size(shape[3], k, sw, pw)


@checks(Conv2d)
@pytest.mark.parametrize("trainable", [True, False], ids=["weight-trained", "weight-frozen"])
@pytest.mark.parametrize("shape,oc,k,s,p", STRIDED_CASES)
def test_strided_blocked_conv2d_gradients(shape, oc, k, s, p, trainable):
    taken = []
    forward = conv._blocked_conv

    def spy(*args, **kwargs):
        taken.append(True)
        return forward(*args, **kwargs)

    with strided_blocks(block_bytes=256), pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv, "_blocked_conv", spy)
        x = tensor(shape, "cpu", 0)
        w = tensor((oc, shape[1], k, k), "cpu", 1, scale=0.5, grad=trainable)
        b = tensor((oc,), "cpu", 2)
        check(lambda x, w, b: F.conv2d(x, w, b, s, p), x, w, b)
    assert taken, "the blocked strided form was never taken"


@pytest.mark.parametrize("block_bytes", [64, 1 << 12, 1 << 20])
@pytest.mark.parametrize("shape,oc,k,s,p", STRIDED_CASES)
def test_strided_blocked_conv2d_matches_the_whole_batch_columns(shape, oc, k, s, p, block_bytes):
    """Forward, input gradient and weight gradient against the whole-batch form and the direct loop."""
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(shape), rng.standard_normal((oc, shape[1], k, k)), rng.standard_normal(oc)
    oh, ow = _output_size(shape, k, s, p)
    g = rng.standard_normal((shape[0], oc, oh, ow))

    def run():
        xt, wt, bt = (Tensor(a, requires_grad=True) for a in (x, w, b))
        y = F.conv2d(xt, wt, bt, s, p)
        y.backward(Tensor(g))
        return y.numpy(), xt.grad, wt.grad, bt.grad

    with strided_blocks(block_bytes):
        blocked = run()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv, "STRIDED_BLOCKED", False)
        whole = run()
    for ours, theirs in zip(blocked, whole):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
    if not isinstance(s, tuple):  # the direct loop takes one stride
        np.testing.assert_allclose(blocked[0], reference.conv2d(x, w, b, s, p), rtol=1e-10, atol=1e-10)


def test_strided_blocks_hold_whole_images_and_cover_the_batch_once():
    for n, taps, oh, block_bytes in [(16, 75, 32, 2 << 20), (16, 1600, 16, 2 << 20), (5, 9, 4, 64), (1, 9, 4, 64)]:
        with strided_blocks(block_bytes):
            blocks = conv._blocks(np.zeros((n, taps // 9 or 1, 2 * oh, 2 * oh), np.float32), 3, 3, 2, 2, oh, oh)
        seen = np.zeros(n, dtype=int)
        for n0, n1, r0, r1 in blocks:
            assert (r0, r1) == (0, oh)
            seen[n0:n1] += 1
        assert (seen == 1).all()
        assert len(blocks) >= min(n, threads.width())


def test_im2col_images_matches_im2col_image_by_image():
    rng = np.random.default_rng(1)
    for shape, k, s, p in [((4, 3, 9, 8), 5, 2, 2), ((3, 2, 8, 8), 4, 2, 1), ((2, 2, 7, 9), 3, 3, 0)]:
        x = rng.standard_normal(shape).astype(np.float32)
        n, c = shape[:2]
        oh, ow = _output_size(shape, k, s, p)
        cols = cpu.im2col(x, k, k, s, s, p, p, oh, ow).reshape(c * k * k, n, oh * ow)
        buf = np.full((n - 1, c * k * k, oh * ow), np.nan, np.float32)
        cpu.im2col_images(x, buf, 1, k, k, s, s, p, p, oh, ow)
        np.testing.assert_array_equal(buf, cols[:, 1:].transpose(1, 0, 2))
        with pytest.raises(ValueError, match="does not hold the columns"):
            cpu.im2col_images(x, buf, 2, k, k, s, s, p, p, oh, ow)  # one image past the end


def test_dcgan_and_sagan_layers_take_the_blocked_path_where_it_measured_faster():
    x3, x64 = np.zeros((16, 3, 64, 64), np.float32), np.zeros((16, 64, 32, 32), np.float32)
    x128, x256 = np.zeros((16, 128, 16, 16), np.float32), np.zeros((16, 256, 8, 8), np.float32)
    # DCGAN's input layer (75 taps): always; 64 -> 128 from 32x32 only without its weight gradient
    assert conv._is_strided_blocked(x3, 5, 5, 2, 2, 32, 32, weight_grad=True)
    assert conv._is_strided_blocked(x64, 5, 5, 2, 2, 16, 16, weight_grad=False)
    assert not conv._is_strided_blocked(x64, 5, 5, 2, 2, 16, 16, weight_grad=True)
    assert conv._is_strided_blocked(x64, 4, 4, 2, 2, 16, 16, weight_grad=False)  # SAGAN's
    for x, side in [(x128, 8), (x256, 4)]:  # 8x8 outputs and smaller: never
        assert not conv._is_strided_blocked(x, 5, 5, 2, 2, side, side, weight_grad=False)
    # the main example's D: 3 -> 32 from 32x32 (48 KiB of columns an image): never
    assert not conv._is_strided_blocked(np.zeros((16, 3, 32, 32), np.float32), 4, 4, 2, 2, 16, 16, False)
    assert not conv._is_strided_blocked(x64, 3, 3, 1, 1, 32, 32, weight_grad=False)  # stride 1: its own path


def test_a_forward_pass_under_no_grad_is_told_that_no_gradient_will_be_asked():
    seen = []

    class Probe(Function):
        @staticmethod
        def forward(ctx, a, b):
            seen.append(ctx.needs_grad)
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g, g

    a, b = Tensor(np.ones(2), requires_grad=True), Tensor(np.ones(2))
    try:
        assert Probe.apply(a, b).requires_grad
        with no_grad():
            assert not Probe.apply(a, b).requires_grad
    finally:
        Function.registry.remove(Probe)
    assert seen == [(True, False), (False, False)]


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_no_grad_and_frozen_weights_give_the_same_values(op):
    """The forms a forward pass takes when nothing (or only the input) needs a gradient agree with the full one."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 16, 16))
    w = rng.standard_normal((3, 4, 5, 5) if op == "conv_transpose2d" else (4, 3, 5, 5)) * 0.2
    fn = getattr(F, op)
    with strided_blocks(max_taps=0):  # the strided conv blocked only without its weight gradient
        xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
        full = fn(xt, wt, None, 2, 2)
        full.backward(Tensor(np.ones(full.shape)))
        with no_grad():
            none = fn(Tensor(x), Tensor(w, requires_grad=True), None, 2, 2)
        xf = Tensor(x, requires_grad=True)
        frozen = fn(xf, Tensor(w), None, 2, 2)
        frozen.backward(Tensor(np.ones(frozen.shape)))
    np.testing.assert_allclose(none.numpy(), full.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(frozen.numpy(), full.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xf.grad, xt.grad, rtol=1e-12, atol=1e-12)


@checks(ConvTranspose2d)
def test_conv_transpose2d_gradient_with_its_weight_frozen():
    """The forward pass keeps no channels-first copy of x then; the input gradient does not need one."""
    x = tensor((2, 3, 5, 5), "cpu", 0)
    w = tensor((3, 2, 4, 4), "cpu", 1, scale=0.5, grad=False)
    check(lambda x, w: F.conv_transpose2d(x, w, None, 2, 1), x, w)


@requires_torch
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_dcgan_layers_blocked_match_torch(dtype, tol):
    """DCGAN's input layer and second layer at their real sizes (batch 4), as the step runs them."""
    import torch
    import torch.nn.functional as TF

    rng = np.random.default_rng(3)
    for shape, oc, trainable in [((4, 3, 64, 64), 64, True), ((4, 64, 32, 32), 128, False)]:
        x = rng.standard_normal(shape).astype(dtype)
        w = (rng.standard_normal((oc, shape[1], 5, 5)) * 0.05).astype(dtype)
        g = rng.standard_normal((shape[0], oc, shape[2] // 2, shape[3] // 2)).astype(dtype)
        n, c, h, wd = shape
        assert conv._is_strided_blocked(x, 5, 5, 2, 2, h // 2, wd // 2, weight_grad=trainable)
        xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=trainable)
        y = F.conv2d(xt, wt, None, 2, 2)
        y.backward(Tensor(g))
        tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_(trainable)
        ty = TF.conv2d(tx, tw, None, 2, 2)
        ty.backward(torch.from_numpy(g))
        pairs = [(y.numpy(), ty), (xt.grad, tx.grad)] + ([(wt.grad, tw.grad)] if trainable else [])
        for ours, theirs in pairs:
            theirs = theirs.detach().numpy()
            np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * np.abs(theirs).max())
