"""The fast paths of the CPU performance work: each against the plain formulation it replaces.

* SpectralNormalize (W / sigma as one Function, on W's own layout) -- gradients,
  and values against the explicit W_mat built by moving ``dim`` first;
* the 1x1 convolution that skips im2col/col2im, in both CPU forms (a batched
  product on the arrays as they lie, and the channels-first product) --
  gradients, and values against the definition (a matrix product at every pixel);
* attention computed as (beta @ v^T)^T -- values against the definition.
"""
from unittest import mock

import numpy as np
import pytest

import minigan.ops as F
from minigan import Tensor, backend
from minigan.nn.spectral_norm import SpectralNormalize, _as_3d, _outer, _w_v, _wt_u
from minigan.ops import conv
from minigan.ops.conv import Conv2d
from tests import reference
from tests.gradcheck.helpers import check, checks, tensor

# weight shape, dim: Conv2d (OC, C, K, K), ConvTranspose2d (C, OC, K, K), Linear (out, in), and a middle axis
SPECTRAL_CASES = [((4, 3, 3, 3), 0), ((3, 5, 4, 4), 1), ((6, 4), 0), ((2, 3, 4), 2)]


def _unit(rng, n):
    a = rng.standard_normal(n)
    return a / np.linalg.norm(a)


def _matrix(w, dim):
    """The reference W_mat: axis ``dim`` moved first, the rest flattened in order (a copy)."""
    return np.moveaxis(w, dim, 0).reshape(w.shape[dim], -1)


def _vectors(shape, dim, device, seed=5):
    rng = np.random.default_rng(seed)
    rows = shape[dim]
    u, v = _unit(rng, rows), _unit(rng, int(np.prod(shape)) // rows)
    return backend.to_device(u, device), backend.to_device(v, device)


@checks(SpectralNormalize)
@pytest.mark.parametrize("shape,dim", SPECTRAL_CASES)
def test_spectral_normalize_gradient(device, shape, dim):
    w = tensor(shape, device, 0)
    u, v = _vectors(shape, dim, device)
    check(lambda w: SpectralNormalize.apply(w, u, v, dim=dim), w)


@pytest.mark.parametrize("shape,dim", SPECTRAL_CASES)
def test_spectral_normalize_values_and_power_step(shape, dim):
    w = np.random.default_rng(0).standard_normal(shape)
    u, v = _vectors(shape, dim, "cpu")
    mat = _matrix(w, dim)
    sigma = u @ mat @ v
    np.testing.assert_allclose(SpectralNormalize.apply(Tensor(w), u, v, dim=dim).numpy(), w / sigma, rtol=1e-13)
    w3 = _as_3d(w, dim)
    assert np.shares_memory(w3, w)  # a view: no copy of the weight
    np.testing.assert_allclose(_wt_u(w3, u), mat.T @ u, rtol=1e-12)
    np.testing.assert_allclose(_w_v(w3, v), mat @ v, rtol=1e-12)
    np.testing.assert_allclose(_outer(u, v, w3).reshape(-1), np.moveaxis(
        np.outer(u, v).reshape((shape[dim],) + tuple(np.delete(shape, dim))), 0, dim).reshape(-1), rtol=1e-15)


def test_spectral_normalize_keeps_the_vectors_of_its_forward():
    """The next power step updates u, v in place before this backward runs: the Function must not see it."""
    shape, dim = (3, 5, 4, 4), 1
    w = tensor(shape, "cpu", 0)
    u, v = _vectors(shape, dim, "cpu")
    out = SpectralNormalize.apply(w, u, v, dim=dim)
    g = np.random.default_rng(1).standard_normal(shape)
    u_then, v_then = u.copy(), v.copy()
    u[...], v[...] = _vectors(shape, dim, "cpu", seed=9)
    out.backward(g)
    mat, sigma = _matrix(w.data, dim), u_then @ _matrix(w.data, dim) @ v_then
    want = g / sigma - (g * w.data).sum() / sigma**2 * np.moveaxis(
        np.outer(u_then, v_then).reshape((shape[dim],) + tuple(np.delete(shape, dim))), 0, dim)
    assert mat.shape == (5, 48)
    np.testing.assert_allclose(w.grad, want, rtol=1e-12, atol=1e-14)


# (N, C, H, W), OC: 1x1 convolutions, stride 1, no padding (the path without im2col/col2im)
POINTWISE_CASES = [((2, 3, 4, 5), 2), ((1, 4, 1, 1), 3), ((3, 2, 2, 7), 1)]


#: both CPU forms of a 1x1 convolution, forced: the batched product on the arrays as they lie, and the
#: channels-first product (what larger ones and the GPU use)
POINTWISE_FORMS = {"batched": 1 << 62, "channels first": 0}


def pointwise_form(name):
    return mock.patch.object(conv, "POINTWISE_BATCHED_BELOW", POINTWISE_FORMS[name])


def test_pointwise_conv2d_takes_the_batched_product_only_below_the_two_thread_size():
    x = np.zeros((16, 32, 16, 16), np.float32)  # the main example's 16x16 attention map
    assert conv._is_pointwise_batched(x, np.zeros((4, 32, 1, 1)), 1, 1, 1, 1, 0, 0)  # 1.05M FLOPs
    assert conv._is_pointwise_batched(x, np.zeros((30, 32, 1, 1)), 1, 1, 1, 1, 0, 0)  # 7.86M
    assert not conv._is_pointwise_batched(x, np.zeros((32, 32, 1, 1)), 1, 1, 1, 1, 0, 0)  # 8.39M: 2 BLAS threads
    assert not conv._is_pointwise_batched(x, np.zeros((4, 32, 3, 3)), 3, 3, 1, 1, 1, 1)
    assert not conv._is_pointwise_batched(x, np.zeros((4, 32, 1, 1)), 1, 1, 2, 2, 0, 0)  # a 1x1 window, stride 2
    assert not conv._is_pointwise_batched(x, np.zeros((4, 32, 1, 1)), 1, 1, 1, 1, 1, 1)  # ... padded


@checks(Conv2d)
@pytest.mark.parametrize("form", list(POINTWISE_FORMS))
@pytest.mark.parametrize("shape,oc", POINTWISE_CASES)
def test_pointwise_conv2d_gradients(device, shape, oc, form):
    x = tensor(shape, device, 0)
    w = tensor((oc, shape[1], 1, 1), device, 1, scale=0.5)
    b = tensor((oc,), device, 2)
    with pointwise_form(form):
        check(lambda x, w, b: F.conv2d(x, w, b), x, w, b)


@pytest.mark.parametrize("form", list(POINTWISE_FORMS))
@pytest.mark.parametrize("shape,oc", POINTWISE_CASES)
def test_pointwise_conv2d_matches_the_definition(shape, oc, form):
    """A 1x1 convolution is a matrix product at every pixel: forward and both gradients."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(shape), rng.standard_normal((oc, shape[1], 1, 1))
    xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    with pointwise_form(form):
        y = F.conv2d(xt, wt)
        g = rng.standard_normal(y.shape)
        y.backward(g)
    np.testing.assert_allclose(y.numpy(), reference.conv2d(x, w, None, 1, 0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xt.grad, np.einsum("oc,nohw->nchw", w[:, :, 0, 0], g), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(wt.grad[:, :, 0, 0], np.einsum("nohw,nchw->oc", g, x), rtol=1e-12, atol=1e-12)


def test_attention_matches_the_definition():
    rng = np.random.default_rng(0)
    n, cq, cv, length = 2, 3, 4, 6
    q, k, v = rng.standard_normal((n, cq, length)), rng.standard_normal((n, cq, length)), rng.standard_normal(
        (n, cv, length))
    want = reference.attention(q, k, v)
    np.testing.assert_allclose(F.attention(Tensor(q), Tensor(k), Tensor(v)).numpy(), want, rtol=1e-12)
