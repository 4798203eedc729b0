"""Every CUDA kernel against its CPU twin, float32 and float64, on cuda-emu and cuda.

The grids of shapes come from test_cpu_kernels.py, which holds the CPU twins
to plain NumPy: NumPy -> CPU twin (there) -> CUDA kernel (here). Each kernel
also runs once with the grid capped at one block (MAX_BLOCKS = 1), so the
grid-stride loops really loop.

Every case runs through cuda.py's launchers on each ``kernel_device``
(tests/conftest.py): cuda-emu, the unmodified kernels/*.cu compiled for the
host and run by the emulator (everywhere), and cuda, a real GPU (skipped
without one). ``MINIGAN_DEVICE=cuda-emu`` runs the emulator alone.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigan import backend
from minigan.backend import cpu, cuda
from tests.kernels.test_cpu_kernels import (ACTIVATION_SHAPES, ACTIVATIONS, ADAM_SETTINGS, BATCHNORM_SHAPES,
                                            CONV_GEOMETRIES, DTYPES, SOFTMAX_SHAPES, UPSAMPLE_BACKWARD_CASES,
                                            UPSAMPLE_CASES, activation_input, adam_state, batchnorm_backward_inputs,
                                            batchnorm_inputs, conv_args, geometry_id, randn, shape_id)


@pytest.fixture
def gpu(kernel_device):
    """Host array -> the kernel device under test."""
    return lambda a: backend.to_device(a, kernel_device)


def assert_parity(got, want, dtype, exact=False):
    """A CUDA result (on the GPU) against the CPU twin's: same shape and dtype, close values."""
    got = backend.to_numpy(got)
    assert got.shape == want.shape and got.dtype == want.dtype == dtype
    if exact:
        np.testing.assert_array_equal(got, want)
    elif np.dtype(dtype) == np.float32:  # FMA contraction, CUDA's exp/tanh, flushed denormals
        np.testing.assert_allclose(got, want, rtol=3e-5, atol=3e-5)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.fixture(params=["grid", "one-block"])
def grid_cap(request, monkeypatch):
    """Run each case with the normal grid and with a single block that strides over everything."""
    if request.param == "one-block":
        monkeypatch.setattr(cuda, "MAX_BLOCKS", 1)
    return request.param


# ---------------------------------------------------------------------------
# im2col / col2im
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=geometry_id)
def test_im2col(rng, geometry, dtype, grid_cap, gpu):
    shape, args = conv_args(geometry)
    x = randn(rng, shape, dtype)
    assert_parity(cuda.im2col(gpu(x), *args), cpu.im2col(x, *args), dtype, exact=True)  # a copy: exact


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=geometry_id)
def test_col2im(rng, geometry, dtype, grid_cap, gpu):
    (n, c, h, w), args = conv_args(geometry)
    kh, kw, *_, oh, ow = args
    cols = randn(rng, (c * kh * kw, n * oh * ow), dtype)
    out = cuda.col2im(gpu(cols), n, c, h, w, *args)
    assert_parity(out, cpu.col2im(cols, n, c, h, w, *args), dtype)
    # a gather, no atomics: the same input gives the same bits every time
    np.testing.assert_array_equal(backend.to_numpy(cuda.col2im(gpu(cols), n, c, h, w, *args)),
                                  backend.to_numpy(out))


def test_im2col_takes_non_contiguous_input(rng, gpu):
    x = randn(rng, (3, 2, 9, 7), np.float64)
    view = gpu(x)[:, :, ::2, ::-1]  # strided and reversed: made contiguous before the launch
    args = (3, 3, 1, 1, 1, 1, 5, 7)
    assert_parity(cuda.im2col(view, *args), cpu.im2col(np.ascontiguousarray(x[:, :, ::2, ::-1]), *args),
                  np.float64, exact=True)


def test_col2im_rejects_columns_of_the_wrong_shape(gpu):
    with pytest.raises(ValueError, match="do not match"):
        cuda.col2im(gpu(np.zeros((9, 10))), 1, 1, 4, 4, 3, 3, 1, 1, 1, 1, 4, 4)


# ---------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0.0, 1000.0], ids=["centred", "mean1000"])
@pytest.mark.parametrize("shape", BATCHNORM_SHAPES, ids=shape_id)
def test_batchnorm_forward(rng, shape, offset, dtype, gpu):
    x, gamma, beta = batchnorm_inputs(rng, shape, dtype, offset)
    got = cuda.batchnorm_forward(gpu(x), gpu(gamma), gpu(beta), 1e-5)
    for g, w in zip(got, cpu.batchnorm_forward(x, gamma, beta, 1e-5)):
        assert_parity(g, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BATCHNORM_SHAPES, ids=shape_id)
def test_batchnorm_backward(rng, shape, dtype, gpu):
    inputs = batchnorm_backward_inputs(rng, shape, dtype)
    got = cuda.batchnorm_backward(*(gpu(a) for a in inputs))
    for g, w in zip(got, cpu.batchnorm_backward(*inputs)):
        assert_parity(g, w, dtype)


# ---------------------------------------------------------------------------
# softmax
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=shape_id)
def test_softmax(rng, shape, dtype, grid_cap, gpu):
    x, gy = randn(rng, shape, dtype, scale=30.0), randn(rng, shape, dtype)
    y = cpu.softmax_forward(x)
    assert_parity(cuda.softmax_forward(gpu(x)), y, dtype)
    assert_parity(cuda.softmax_backward(gpu(y), gpu(gy)), cpu.softmax_backward(y, gy), dtype)


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,alpha", ACTIVATIONS)
@pytest.mark.parametrize("shape", ACTIVATION_SHAPES, ids=shape_id)
def test_activations(rng, shape, name, alpha, dtype, grid_cap, gpu):
    x, gy = activation_input(rng, shape, dtype), randn(rng, shape, dtype)
    code = cpu.ACTIVATIONS[name]
    y = cpu.activation_forward(x, code, alpha)
    assert_parity(cuda.activation_forward(gpu(x), code, alpha), y, dtype)
    assert_parity(cuda.activation_backward(gpu(x), gpu(y), gpu(gy), code, alpha),
                  cpu.activation_backward(x, y, gy, code, alpha), dtype)


# ---------------------------------------------------------------------------
# nearest upsampling
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,scale", UPSAMPLE_CASES, ids=lambda v: shape_id(v) if isinstance(v, tuple) else f"s{v}")
def test_upsample_nearest_forward(rng, shape, scale, dtype, grid_cap, gpu):
    x = randn(rng, shape, dtype)
    assert_parity(cuda.upsample_nearest_forward(gpu(x), scale), cpu.upsample_nearest_forward(x, scale), dtype,
                  exact=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,scale", UPSAMPLE_BACKWARD_CASES,
                         ids=lambda v: shape_id(v) if isinstance(v, tuple) else f"s{v}")
def test_upsample_nearest_backward(rng, shape, scale, dtype, grid_cap, gpu):
    gy = randn(rng, shape, dtype)
    assert_parity(cuda.upsample_nearest_backward(gpu(gy), scale), cpu.upsample_nearest_backward(gy, scale), dtype)


# ---------------------------------------------------------------------------
# Adam
# ---------------------------------------------------------------------------
def assert_adam_parity(gpu_state, cpu_state, dtype):
    for gpu_arrays, cpu_arrays in zip(gpu_state, cpu_state):
        for g, c in zip(gpu_arrays, cpu_arrays):
            assert_parity(g, c, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("settings", ADAM_SETTINGS, ids=["default", "sagan", "dcgan-l2"])
def test_adam_step(rng, settings, dtype, grid_cap, gpu):
    host = adam_state(rng, dtype)
    device = [[gpu(a) for a in arrays] for arrays in host]
    for step in (1, 2, 10):
        for (p, g, m, v), (dp, dg, dm, dv) in zip(zip(*host), zip(*device)):
            cpu.adam_step(p, g, m, v, **settings, step=step)
            cuda.adam_step(dp, dg, dm, dv, **settings, step=step)
    assert_adam_parity(device, host, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("settings", ADAM_SETTINGS, ids=["default", "sagan", "dcgan-l2"])
def test_adam_step_multi(rng, settings, dtype, gpu):
    host = list(adam_state(rng, dtype))
    device = [[gpu(a) for a in arrays] for arrays in host]
    for step in (1, 2, 3):
        cpu.adam_step_multi(*host, **settings, step=step)
        cuda.adam_step_multi(*device, **settings, step=step)
        device[1] = [gpu(randn(rng, g.shape, dtype)) for g in host[1]]  # fresh gradients, as after a backward
        host[1] = [backend.to_numpy(g) for g in device[1]]
    assert_adam_parity(device, host, dtype)


def test_adam_step_multi_chunk_boundaries(rng, gpu):
    """Tensors just under, at and over a multiple of the chunk, plus tiny ones, in one launch."""
    k = cuda.ADAM_CHUNK
    shapes = [(k - 1,), (k,), (k + 1,), (1,), (2 * k + 3,), (3, 5)]
    host = [[randn(rng, s, np.float64) for s in shapes] for _ in range(4)]
    host[3] = [np.abs(v) for v in host[3]]
    device = [[gpu(a) for a in arrays] for arrays in host]
    cpu.adam_step_multi(*host, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    cuda.adam_step_multi(*device, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    assert_adam_parity(device, host, np.float64)


def test_adam_refuses_to_update_a_copy(gpu):
    p = gpu(np.zeros((4, 4)))[:, ::2]  # a strided view: an update would land in a temporary copy
    with pytest.raises(ValueError, match="C-contiguous"):
        cuda.adam_step(p, p, p, p, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)


# ---------------------------------------------------------------------------
# launch hygiene
# ---------------------------------------------------------------------------
def test_unsupported_dtype_is_a_clear_error(gpu):
    with pytest.raises(ValueError, match=r"float32 or float64, got int64; cast with \.astype"):
        cuda.activation_forward(gpu(np.arange(4, dtype=np.int64)), cpu.RELU, 0.0)


def test_empty_inputs_launch_nothing(gpu):
    x = gpu(np.zeros((0, 3, 4, 4), np.float32))
    assert cuda.im2col(x, 3, 3, 1, 1, 1, 1, 4, 4).shape == (27, 0)
    assert cuda.activation_forward(gpu(np.zeros(0, np.float64)), cpu.TANH, 0.0).shape == (0,)
    assert cuda.softmax_forward(gpu(np.zeros((0, 5), np.float32))).shape == (0, 5)
