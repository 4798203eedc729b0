"""conv2d / conv_transpose2d: gradients (input, weight, bias) and forward values."""
import numpy as np
import pytest

import minigan.ops as F
from minigan import Tensor, backend
from minigan.backend import cpu
from minigan.ops import conv
from minigan.ops.conv import Conv2d, ConvTranspose2d
from tests import reference
from tests.conftest import requires_torch
from tests.gradcheck.helpers import check, checks, tensor

# (N, C, H, W), OC, K, stride, padding
CONV_CASES = [
    ((2, 3, 5, 5), 4, 3, 1, 1),
    ((1, 2, 7, 6), 3, 3, 2, 1),  # batch 1, non-square, odd
    ((2, 2, 8, 8), 3, 4, 2, 1),  # the SAGAN D layer shape
    ((2, 1, 9, 9), 2, 5, 2, 2),  # the DCGAN layer shape
    ((1, 3, 4, 4), 2, 4, 1, 0),  # final 4x4 "fully connected" conv
    ((2, 2, 5, 3), 2, 1, 1, 0),  # 1x1
    ((2, 2, 5, 4), 2, 1, 2, 0),  # 1x1, stride 2: not a plain product at every pixel
    ((1, 2, 3, 3), 2, 1, 1, 1),  # 1x1, padded
    ((1, 2, 6, 6), 2, 3, 3, 0),  # stride larger than half the kernel
]

# (N, C, H, W), OC, K, stride, padding, output_padding
CONVT_CASES = [
    ((2, 3, 3, 3), 2, 3, 1, 1, 0),
    ((1, 2, 4, 3), 3, 4, 2, 1, 0),  # SAGAN G upsampling, non-square
    ((2, 2, 3, 3), 2, 5, 2, 2, 1),  # DCGAN's 5x5 s2 with output_padding
    ((1, 4, 1, 1), 3, 4, 1, 0, 0),  # z (1x1) -> 4x4
    ((2, 1, 2, 2), 2, 3, 3, 1, 2),
]


@pytest.fixture(autouse=True, params=["whole batch", "image by image", "channels last"])
def product_col2im(request, monkeypatch):
    """Every test here three times on the CPU: the input gradient's and conv_transpose2d's product + col2im
    over the whole batch, image by image, and channels last (conv._product_col2im), each forced for every
    shape (the default rules pick among them by shape)."""
    if request.param == "image by image":
        for name in ("IMAGEWISE_ABOVE", "IMAGEWISE_MIN_EXPANSION", "IMAGEWISE_MIN_PIXELS", "IMAGEWISE_MIN_IMAGES"):
            monkeypatch.setattr(conv, name, 0)
    if request.param == "channels last":
        monkeypatch.setattr(conv, "_is_channels_last", lambda src, shape, oh, ow: backend.array_module(src) is np)
    else:
        monkeypatch.setattr(conv, "CHANNELS_LAST", False)
    return request.param


@checks(Conv2d)
@pytest.mark.parametrize("shape,oc,k,s,p", CONV_CASES)
def test_conv2d_gradients(device, shape, oc, k, s, p):
    x = tensor(shape, device, 0)
    w = tensor((oc, shape[1], k, k), device, 1, scale=0.5)
    b = tensor((oc,), device, 2)
    check(lambda x, w, b: F.conv2d(x, w, b, s, p), x, w, b)


@checks(Conv2d)
def test_conv2d_no_bias_large_directional(device):
    x = tensor((3, 8, 16, 16), device, 0)
    w = tensor((16, 8, 4, 4), device, 1, scale=0.1)
    check(lambda x, w: F.conv2d(x, w, None, 2, 1), x, w, mode="directional")


@checks(ConvTranspose2d)
@pytest.mark.parametrize("shape,oc,k,s,p,op", CONVT_CASES)
def test_conv_transpose2d_gradients(device, shape, oc, k, s, p, op):
    x = tensor(shape, device, 0)
    w = tensor((shape[1], oc, k, k), device, 1, scale=0.5)
    b = tensor((oc,), device, 2)
    check(lambda x, w, b: F.conv_transpose2d(x, w, b, s, p, op), x, w, b)


@pytest.mark.parametrize("shape,oc,k,s,p", CONV_CASES)
def test_conv2d_forward_matches_direct_loop(device, shape, oc, k, s, p):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(shape), rng.standard_normal((oc, shape[1], k, k)), rng.standard_normal(oc)
    y = F.conv2d(Tensor(backend.to_device(x, device)), Tensor(backend.to_device(w, device)),
                 Tensor(backend.to_device(b, device)), s, p)
    np.testing.assert_allclose(y.numpy(), reference.conv2d(x, w, b, s, p), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape,oc,k,s,p,op", CONVT_CASES)
def test_conv_transpose2d_forward_matches_direct_loop(device, shape, oc, k, s, p, op):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(shape), rng.standard_normal((shape[1], oc, k, k)), rng.standard_normal(oc)
    y = F.conv_transpose2d(Tensor(backend.to_device(x, device)), Tensor(backend.to_device(w, device)),
                           Tensor(backend.to_device(b, device)), s, p, op)
    np.testing.assert_allclose(y.numpy(), reference.conv_transpose2d(x, w, b, s, p, op), rtol=1e-10, atol=1e-10)


@requires_torch
@pytest.mark.parametrize("shape,oc,k,s,p,op", CONVT_CASES)
def test_conv_forward_matches_torch(shape, oc, k, s, p, op):
    import torch
    import torch.nn.functional as TF

    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(shape), rng.standard_normal((shape[1], oc, k, k))
    ours = F.conv_transpose2d(Tensor(x), Tensor(w), None, s, p, op).numpy()
    theirs = TF.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), None, s, p, op).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
    w2 = rng.standard_normal((oc, shape[1], k, k))
    ours = F.conv2d(Tensor(x), Tensor(w2), None, 1, k // 2).numpy()
    theirs = TF.conv2d(torch.from_numpy(x), torch.from_numpy(w2), None, 1, k // 2).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


def test_conv_errors_are_clear():
    x = Tensor(np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="channels"):
        F.conv2d(x, Tensor(np.zeros((2, 2, 3, 3))))
    with pytest.raises(ValueError, match="does not fit"):
        F.conv2d(x, Tensor(np.zeros((2, 3, 7, 7))))
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(x, Tensor(np.zeros((3, 2, 3, 3))), None, 2, 1, 2)


def test_image_by_image_equals_the_whole_batch_at_dcgans_size(monkeypatch, product_col2im):
    """DCGAN-64's 5x5 stride-2 layer (64 <-> 128 channels, 32x32 <-> 16x16) at batch 8 on two threads,
    float32: conv_transpose2d forward and conv2d's input gradient take the image-by-image path at the
    default thresholds, and agree with the whole-batch one; SAGAN's 4x4 stride 2 does not take it."""
    from minigan.backend import threads

    if product_col2im != "whole batch":
        pytest.skip("this test is about the default thresholds")
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((8, 64, 32, 32), np.float32), rng.standard_normal((128, 64, 5, 5), np.float32)
    g = rng.standard_normal((8, 128, 16, 16), np.float32)  # conv2d(x, w, stride 2, padding 2)'s output shape
    assert not conv._is_imagewise(g, 1 << 30, 4, 4, 2, 2, 16, 16)
    seen = []
    real = cpu.col2im_into
    monkeypatch.setattr(cpu, "col2im_into", lambda cols, out, *a: seen.append(out.shape) or real(cols, out, *a))

    def both():
        xt = Tensor(x, requires_grad=True)
        y = F.conv_transpose2d(Tensor(g), Tensor(w), None, 2, 2, 1)  # (8, 64, 32, 32)
        F.conv2d(xt, Tensor(w), None, 2, 2).backward(g)
        return y.numpy(), xt.grad

    imagewise = both()
    assert seen == [(1, 64, 32, 32)] * 16
    np.testing.assert_allclose(imagewise[0], imagewise[1], rtol=1e-4, atol=1e-4)  # the same map, twice
    monkeypatch.setattr(conv, "IMAGEWISE_ABOVE", float("inf"))
    for got, want in zip(imagewise, both()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_channels_last_is_taken_for_small_maps_out_with_more_columns_than_weights(product_col2im, monkeypatch):
    """The default rule (conv._is_channels_last): the main example's SAGAN (32x32, width 32, batch 16) takes it
    for its 4x4 -> 8x8 and 8x8 -> 16x16 layers; a 32x32 map out, 3 channels, or DCGAN's 512 -> 256 at batch 5
    (80 columns' rows for 512 weights' rows) do not; nor does a device array."""
    if product_col2im != "whole batch":
        pytest.skip("this test is about the default rule")
    monkeypatch.setattr(conv, "CHANNELS_LAST", True)
    src = lambda n, k, px: np.zeros((n, k, px), np.float32)  # noqa: E731
    assert conv._is_channels_last(src(16, 128, 16), (16, 64, 8, 8), 4, 4)
    assert conv._is_channels_last(src(16, 64, 64), (16, 32, 16, 16), 8, 8)
    assert not conv._is_channels_last(src(16, 32, 256), (16, 3, 32, 32), 16, 16)
    assert not conv._is_channels_last(src(16, 64, 256), (16, 32, 32, 32), 16, 16)
    assert not conv._is_channels_last(src(5, 512, 16), (5, 256, 8, 8), 4, 4)
    assert not conv._is_channels_last(backend.to_device(src(16, 128, 16), "cuda-emu"), (16, 64, 8, 8), 4, 4)
