"""The CPU's Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions (minigan.ops.conv._winograd_conv and
_winograd_weight_grad, the transforms in minigan.backend.cpu): values and weight gradients against
the direct loop in float64 and float32, gradients in float64 through conv2d, blocks of one tile row
to whole images, and which layers take which."""
import contextlib

import numpy as np
import pytest

import minigan.ops as F
from minigan.ops import conv
from minigan.ops.conv import Conv2d
from tests import reference
from tests.gradcheck.helpers import check, checks, settings, tensor

# (N, C, H, W), OC: 3x3, stride 1, padding 1, H and W even
CASES = [((2, 3, 8, 6), 4),    # several tile rows and columns, non-square
         ((1, 2, 2, 2), 3),    # a single tile: every input value is padding-adjacent
         ((3, 5, 6, 10), 2),   # more channels in than out
         ((1, 1, 4, 12), 1)]
# the same for F(4x4, 3x3): H and W multiples of 4
CASES4 = [((2, 3, 8, 12), 4),  # several tile rows and columns, non-square
          ((1, 2, 4, 4), 3),   # a single tile
          ((3, 5, 12, 8), 2),
          ((1, 1, 4, 16), 1)]


@contextlib.contextmanager
def winograd_everywhere(block_bytes, weight_grad=True, f4=False):
    """Small inputs take the stride-1 path (and so Winograd), in blocks of about ``block_bytes``; the
    weight gradient too unless ``weight_grad`` is False; F(4x4, 3x3) wherever the sides allow it if
    ``f4``, else F(2x2, 3x3) everywhere."""
    with settings(conv, BLOCKED_ABOVE=0, WINOGRAD_BLOCK_BYTES=block_bytes, WINOGRAD_MIN_CHANNELS=1,
                  WINOGRAD_WEIGHT_GRAD_MIN_PIXELS=0, WINOGRAD_WEIGHT_GRAD=weight_grad, WINOGRAD_F4=f4,
                  WINOGRAD_F4_MIN_PIXELS=0):
        yield


@pytest.mark.parametrize("block_bytes", [1, 1 << 9, 1 << 20])  # one tile row a block .. the whole image
@pytest.mark.parametrize("shape,oc,tile", [case + (2,) for case in CASES] + [case + (4,) for case in CASES4])
def test_winograd_matches_the_direct_loop(shape, oc, tile, block_bytes):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(shape), rng.standard_normal((oc, shape[1], 3, 3))
    with winograd_everywhere(block_bytes, f4=tile == 4):
        assert conv._winograd_tile(x) == tile
        got = conv._winograd_conv(x, w)
        got32 = conv._winograd_conv(x.astype(np.float32), w.astype(np.float32))
    want = reference.conv2d(x, w, None, 1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def direct_weight_grad(x, g):
    """dw[o, c, i, j] = sum over n, y, x of g[n, o, y, x] * x[n, c, y + i - 1, x + j - 1] (zero outside)."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dw = np.zeros((g.shape[1], c, 3, 3))
    for i in range(3):
        for j in range(3):
            dw[:, :, i, j] = np.einsum("noyx,ncyx->oc", g, xp[:, :, i:i + h, j:j + w])
    return dw


@pytest.mark.parametrize("block_bytes", [1, 1 << 9, 1 << 20])
@pytest.mark.parametrize("shape,oc", CASES)
def test_winograd_weight_grad_matches_the_direct_loop(shape, oc, block_bytes):
    rng = np.random.default_rng(1)
    x, g = rng.standard_normal(shape), rng.standard_normal((shape[0], oc) + shape[2:])
    with winograd_everywhere(block_bytes):
        got = conv._winograd_weight_grad(x, g)
        got32 = conv._winograd_weight_grad(x.astype(np.float32), g.astype(np.float32))
    want = direct_weight_grad(x, g)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@checks(Conv2d)
@pytest.mark.parametrize("winograd_weight_grad", [True, False], ids=["winograd dw", "blocked dw"])
@pytest.mark.parametrize("shape,oc,tile", [case + (2,) for case in CASES[:3]] + [case + (4,) for case in CASES4[:3]])
def test_conv2d_gradients_through_winograd(shape, oc, tile, winograd_weight_grad):
    """Forward and input gradient by Winograd F(2x2) or F(4x4) (the input gradient is a 3x3 padding-1
    convolution too), the weight gradient by Winograd F(2x2) or by the blocked path."""
    with winograd_everywhere(1 << 9, weight_grad=winograd_weight_grad, f4=tile == 4):
        assert conv._is_blocked(np.zeros(shape), 3, 3, 1, 1, 1, 1, shape[2], shape[3])
        assert conv._is_winograd(np.zeros(shape), 3, 3, 1, 1)
        assert conv._winograd_tile(np.zeros(shape)) == tile
        g = np.zeros((shape[0], oc) + shape[2:])
        assert conv._is_winograd_weight_grad(np.zeros(shape), g, 3, 3, 1, 1) == winograd_weight_grad
        x = tensor(shape, "cpu", 0)
        w = tensor((oc, shape[1], 3, 3), "cpu", 1, scale=0.5)
        b = tensor((oc,), "cpu", 2)
        check(lambda x, w, b: F.conv2d(x, w, b, 1, 1), x, w, b)


def test_which_convolutions_take_winograd():
    """BEGAN's 3x3 'same' layers (even sizes); not 5x5, not padding 0, not an odd image, not its
    3-channel first layer (nor the input gradient of its 3-channel last ones)."""
    x = np.zeros((16, 64, 64, 64), np.float32)
    assert conv._is_winograd(x, 3, 3, 1, 1)
    assert not conv._is_winograd(x[:, :3], 3, 3, 1, 1)
    assert not conv._is_winograd(x, 5, 5, 2, 2)
    assert not conv._is_winograd(x, 3, 3, 0, 0)
    assert not conv._is_winograd(x[:, :, :63, :63], 3, 3, 1, 1)
    # F(4x4, 3x3) from 32x32 with sides that are multiples of 4; F(2x2, 3x3) below and otherwise
    assert conv._winograd_tile(x) == 4
    assert conv._winograd_tile(x[:, :, :32, :32]) == 4
    assert conv._winograd_tile(x[:, :, :16, :16]) == 2
    assert conv._winograd_tile(x[:, :, :62, :62]) == 2
    assert conv._winograd_tile(x[:, :, :64, :62]) == 2
    # the weight gradient: the same layers, and not with a 3-channel output gradient (BEGAN's last layers)
    assert conv._is_winograd_weight_grad(x, x, 3, 3, 1, 1)
    assert not conv._is_winograd_weight_grad(x, x[:, :3], 3, 3, 1, 1)
    assert not conv._is_winograd_weight_grad(x[:, :3], x, 3, 3, 1, 1)
    assert conv._is_winograd_weight_grad(x[:, :, :16, :16], x[:, :, :16, :16], 3, 3, 1, 1)
    assert not conv._is_winograd_weight_grad(x[:, :, :8, :8], x[:, :, :8, :8], 3, 3, 1, 1)

