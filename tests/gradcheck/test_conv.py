"""conv2d / conv_transpose2d: gradients (input, weight, bias) and forward values."""
import numpy as np
import pytest

import minigan.ops as F
from minigan import Tensor, backend
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
