"""The CPU twins (minigan/backend/cpu.py) against tests/reference.py, float32 and float64.

The grids of shapes below are shared with test_parity.py, which holds the CUDA
kernels to these same CPU twins: NumPy -> CPU twin -> CUDA kernel, one chain.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigan.backend import cpu, threads
from tests import reference

DTYPES = [np.float32, np.float64]

# (N, C, H, W), (KH, KW), (SH, SW), (PH, PW); OH, OW follow as for conv2d
CONV_GEOMETRIES = [
    ((2, 3, 5, 5), (3, 3), (1, 1), (1, 1)),
    ((1, 2, 7, 6), (3, 3), (2, 2), (1, 1)),    # odd, non-square image
    ((2, 2, 8, 8), (4, 4), (2, 2), (1, 1)),    # SAGAN D's 4x4 s2
    ((2, 1, 9, 9), (5, 5), (2, 2), (2, 2)),    # DCGAN's 5x5 s2
    ((1, 3, 4, 4), (4, 4), (1, 1), (0, 0)),    # the final 4x4 conv: one output pixel
    ((2, 2, 5, 3), (1, 1), (1, 1), (0, 0)),    # 1x1
    ((1, 2, 9, 9), (2, 2), (3, 3), (1, 1)),    # stride > kernel: pixels no window covers
    ((1, 1, 7, 5), (2, 3), (3, 1), (0, 2)),    # non-square kernel, stride and padding
    ((1, 1, 4, 4), (2, 2), (1, 1), (2, 2)),    # padding >= kernel: windows wholly in the padding
    ((1, 2, 6, 6), (5, 5), (2, 2), (2, 2)),    # conv_transpose2d 3x3 -> 6x6 with output_padding 1
    ((2, 3, 33, 31), (3, 3), (1, 1), (1, 1)),  # image planes larger than a 256-thread block
]
BATCHNORM_SHAPES = [(2, 3, 4, 4), (1, 5, 3, 7), (5, 4, 1, 1), (3, 2, 17, 19), (4, 6, 16, 16)]
SOFTMAX_SHAPES = [(1, 1), (3, 5), (7, 31), (4, 32), (5, 33), (37, 16), (2, 1000), (64, 256), (1, 4097)]
ACTIVATION_SHAPES = [(0,), (1,), (7,), (3, 5, 7), (1000,), (2, 3, 17, 19)]
ACTIVATIONS = [("relu", 0.0), ("leaky_relu", 0.2), ("leaky_relu", 0.1), ("elu", 1.0), ("elu", 0.5),
               ("tanh", 0.0), ("sigmoid", 0.0)]
UPSAMPLE_CASES = [((2, 3, 4, 5), 2), ((1, 1, 1, 1), 3), ((2, 2, 3, 3), 1), ((1, 2, 8, 8), 4)]
# gy shapes for the backward pass; (1, 1, 5, 7) by 2 leaves a row and a column no gx pixel owns
UPSAMPLE_BACKWARD_CASES = UPSAMPLE_CASES[:] + [((1, 1, 5, 7), 2)]
ADAM_SHAPES = [(3, 4), (7,), (1,), (2, 3, 5, 5), (5000,), (0,)]
ADAM_SETTINGS = [dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
                 dict(lr=4e-4, beta1=0.0, beta2=0.9, eps=1e-8, weight_decay=0.0),     # SAGAN's D
                 dict(lr=2e-4, beta1=0.5, beta2=0.999, eps=1e-6, weight_decay=0.01)]  # DCGAN + L2


@pytest.fixture(autouse=True, params=["whole", "split"])
def kernel_ranges(request, monkeypatch):
    """Run every test here twice: each kernel over its whole loop on this thread, and cut into ranges that
    minigan's threads run side by side (threads.over_ranges), forced even for these small shapes."""
    if request.param == "split":
        from minigan.backend import threads

        monkeypatch.setattr(threads, "SPLIT_WORK", 0)
        monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
        monkeypatch.setattr(threads._Health, "skip", 0)
        monkeypatch.setattr(threads, "LATE_SHARE", float("inf"))
    return request.param


def geometry_id(g):
    (n, c, h, w), (kh, kw), (sh, sw), (ph, pw) = g
    return f"{n}x{c}x{h}x{w}-k{kh}x{kw}-s{sh}x{sw}-p{ph}x{pw}"


def shape_id(shape):
    return "x".join(map(str, shape))


def conv_args(geometry):
    """(x shape, im2col's arguments kh, kw, sh, sw, ph, pw, oh, ow)."""
    (n, c, h, w), (kh, kw), (sh, sw), (ph, pw) = geometry
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    return (n, c, h, w), (kh, kw, sh, sw, ph, pw, oh, ow)


def tolerance(dtype):
    """Different summation orders and precisions, never a different formula."""
    return dict(rtol=3e-5, atol=3e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-11, atol=1e-12)


def randn(rng, shape, dtype, scale=1.0, offset=0.0):
    return (rng.standard_normal(shape) * scale + offset).astype(dtype)


def batchnorm_inputs(rng, shape, dtype, offset=0.0):
    """x (N, C, H, W) of N(offset, 2^2) values, gamma and beta (C,)."""
    x = randn(rng, shape, dtype, scale=2.0, offset=offset)
    return x, randn(rng, shape[1], dtype), randn(rng, shape[1], dtype)


def batchnorm_backward_inputs(rng, shape, dtype):
    """x, gy, gamma and the CPU twin's mean and invstd of x: batchnorm_backward's arguments."""
    x, gy = randn(rng, shape, dtype, offset=0.5), randn(rng, shape, dtype)
    gamma = randn(rng, shape[1], dtype)
    _, mean, invstd = cpu.batchnorm_forward(x, gamma, np.zeros_like(gamma), 1e-5)
    return x, gy, gamma, mean, invstd


def adam_state(rng, dtype):
    """Lists of (param, grad, m, v) for ADAM_SHAPES, with v >= 0 as it always is."""
    params = [randn(rng, s, dtype) for s in ADAM_SHAPES]
    grads = [randn(rng, s, dtype) for s in ADAM_SHAPES]
    ms = [randn(rng, s, dtype, 0.1) for s in ADAM_SHAPES]
    vs = [np.abs(randn(rng, s, dtype, 0.1)) for s in ADAM_SHAPES]
    return params, grads, ms, vs


# ---------------------------------------------------------------------------
# the CPU twins against tests/reference.py
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=geometry_id)
def test_im2col(rng, geometry, dtype):
    shape, args = conv_args(geometry)
    x = randn(rng, shape, dtype)
    cols = cpu.im2col(x, *args)
    assert cols.dtype == dtype and cols.shape == (shape[1] * args[0] * args[1], shape[0] * args[6] * args[7])
    np.testing.assert_array_equal(cols, reference.im2col(x, *args))  # a pure copy: exact


STRIDE1_GEOMETRIES = [g for g in CONV_GEOMETRIES if g[2] == (1, 1) and g[3][0] < g[1][0] and g[3][1] < g[1][1]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", STRIDE1_GEOMETRIES, ids=geometry_id)
def test_im2col_rows(rng, geometry, dtype):
    """Each block (images n0.., output rows r0..) holds exactly those pixels' columns of im2col."""
    shape, args = conv_args(geometry)
    kh, kw, _, _, ph, pw, oh, ow = args
    x = randn(rng, shape, dtype)
    n, taps = shape[0], shape[1] * kh * kw
    full = reference.im2col(x, *args).reshape(taps, n, oh, ow)
    for n0, images, r0, rows in [(0, n, 0, oh), (n - 1, 1, 0, 1), (0, 1, oh - 1, 1), (n - 1, 1, oh // 2, oh - oh // 2)]:
        buf = np.full((images, taps, rows * ow), np.nan, dtype=dtype)  # every entry must be written
        cpu.im2col_rows(x, buf, n0, r0, kh, kw, ph, pw)
        want = full[:, n0:n0 + images, r0:r0 + rows].transpose(1, 0, 2, 3).reshape(buf.shape)
        np.testing.assert_array_equal(buf, want)


#: cpu.COL2IM_SCATTER_MAX_PIXELS forcing each of the plane-wise col2im's two loops on every grid
COL2IM_LOOPS = {"row loop": 0, "scatter": 1 << 30}


@pytest.mark.parametrize("layout", ["planes: row loop", "planes: scatter", "channels last"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=geometry_id)
def test_col2im(rng, geometry, dtype, layout, monkeypatch):
    """Every form against the reference (the plane-wise one with each of its loops); channels last takes
    and gives the same values with both layouts turned: cols (N*OH*OW, KH*KW*C) in, (N, H, W, C) out."""
    (n, c, h, w), args = conv_args(geometry)
    kh, kw, *_, oh, ow = args
    cols = randn(rng, (c * kh * kw, n * oh * ow), dtype)
    if layout.startswith("planes"):
        monkeypatch.setattr(cpu, "COL2IM_SCATTER_MAX_PIXELS", COL2IM_LOOPS[layout.split(": ")[1]])
        x = cpu.col2im(cols, n, c, h, w, *args)
    else:
        rows = np.ascontiguousarray(cols.reshape(c, kh * kw, -1).transpose(2, 1, 0)).reshape(n * oh * ow, -1)
        out = np.full((n, h, w, c), np.nan, dtype=dtype)  # every pixel must be written
        assert cpu.col2im_channels_last(rows, out, *args) is out
        x = out.transpose(0, 3, 1, 2)
    assert x.dtype == dtype and x.shape == (n, c, h, w)
    np.testing.assert_allclose(x, reference.col2im(cols, n, c, h, w, *args), **tolerance(dtype))


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=geometry_id)
def test_col2im_loops_give_the_same_bits(rng, geometry, monkeypatch):
    """The scatter through the window offsets adds each pixel's entries in the same (i, j) order as the
    row loop: float32 sums, bit for bit (a run is the same whichever loop a layer's grid picks)."""
    (n, c, h, w), args = conv_args(geometry)
    kh, kw, *_, oh, ow = args
    cols = randn(rng, (c * kh * kw, n * oh * ow), np.float32, scale=1e3)
    results = {}
    for loop, pixels in COL2IM_LOOPS.items():
        monkeypatch.setattr(cpu, "COL2IM_SCATTER_MAX_PIXELS", pixels)
        results[loop] = cpu.col2im(cols, n, c, h, w, *args)
    np.testing.assert_array_equal(results["scatter"], results["row loop"])


def test_col2im_scatter_is_taken_on_small_grids_only(monkeypatch):
    """The rule: an 8x8 grid of columns (DCGAN's 5x5 stride 2 into 16x16) scatters, a 16x16 one (into 32x32)
    takes the row loop."""
    taken = []
    for name in ("_col2im_small", "_col2im"):
        kernel = getattr(cpu, name)
        monkeypatch.setattr(cpu, name, lambda *a, _k=kernel, _n=name: (taken.append(_n), _k(*a)))
    for grid, size in ((8, 16), (16, 32)):
        taken.clear()
        cpu.col2im(np.zeros((2 * 25, grid * grid), np.float32), 1, 2, size, size, 5, 5, 2, 2, 2, 2, grid, grid)
        assert set(taken) == {"_col2im_small" if grid == 8 else "_col2im"}


@pytest.mark.parametrize("kernel", ["im2col", "col2im"])
def test_windows_outside_the_padded_image_are_refused(kernel):
    """A grid of windows that would read or write past the padded plane is an error, not memory out of bounds."""
    x = np.zeros((1, 2, 6, 6), np.float32)
    args = (3, 3, 2, 2, 1, 1, 4, 3)  # 4 rows of 3x3 windows at stride 2 need 9 rows; padded, the image has 8
    with pytest.raises(ValueError, match="does not fit"):
        if kernel == "im2col":
            cpu.im2col(x, *args)
        else:
            cpu.col2im(np.zeros((18, 12), np.float32), 1, 2, 6, 6, *args)


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=geometry_id)
def test_col2im_is_the_adjoint_of_im2col(rng, geometry):
    """<im2col(x), c> == <x, col2im(c)>: what makes col2im the input gradient of conv2d."""
    (n, c, h, w), args = conv_args(geometry)
    x = randn(rng, (n, c, h, w), np.float64)
    cols = randn(rng, cpu.im2col(x, *args).shape, np.float64)
    assert np.isclose(np.vdot(cpu.im2col(x, *args), cols), np.vdot(x, cpu.col2im(cols, n, c, h, w, *args)),
                      rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0.0, 1000.0], ids=["centred", "mean1000"])
@pytest.mark.parametrize("shape", BATCHNORM_SHAPES, ids=shape_id)
def test_batchnorm_forward(rng, shape, offset, dtype):
    x, gamma, beta = batchnorm_inputs(rng, shape, dtype, offset)
    y, mean, invstd = cpu.batchnorm_forward(x, gamma, beta, 1e-5)
    y_ref, mean_ref, invstd_ref = reference.batch_norm(x, gamma, beta, 1e-5)
    assert y.dtype == mean.dtype == invstd.dtype == dtype
    for got, want in ((y, y_ref), (mean, mean_ref), (invstd, invstd_ref)):
        np.testing.assert_allclose(got, want, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BATCHNORM_SHAPES, ids=shape_id)
def test_batchnorm_backward(rng, shape, dtype):
    inputs = batchnorm_backward_inputs(rng, shape, dtype)
    got, want = cpu.batchnorm_backward(*inputs), reference.batch_norm_backward(*inputs)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, **tolerance(dtype))


@pytest.mark.parametrize("chunk", ["one chunk", "3 rows a chunk"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=shape_id)
def test_softmax_forward(rng, shape, dtype, chunk, monkeypatch):
    if chunk != "one chunk":
        monkeypatch.setattr(cpu, "SOFTMAX_CHUNK", 3 * shape[1])  # a last chunk shorter than the others too
    x = randn(rng, shape, dtype, scale=30.0)  # exp(x) alone would overflow float32
    y = cpu.softmax_forward(x)
    assert y.dtype == dtype and np.isfinite(y).all()
    np.testing.assert_allclose(y, reference.softmax(x), **tolerance(dtype))


def test_softmax_float32_exp_is_within_an_ulp_over_its_whole_range():
    """The float32 softmax's own exp (cpu.EXPF_POLY), read through rows [0, t]: for t <= -17 the row sum
    is 1 in float32, so y[1] is exp(t) itself (then within 2 x 2^-24 of it; NumPy's float32 exp is
    within 3.4 x 2^-24 here); above, the whole row against float64. Every t from 0 to the underflow, at
    4 million points plus a log-spaced sweep of small ones."""
    t = np.concatenate([np.linspace(cpu.EXPF_MIN, 0.0, 4_000_001), -np.logspace(-8, 1.9, 10_000)]).astype(np.float32)
    x = np.stack([np.zeros_like(t), t], axis=1)
    y = cpu.softmax_forward(x)[:, 1].astype(np.float64)
    exact = np.exp(t.astype(np.float64))
    deep = t <= -17
    assert np.max(np.abs(y[deep] - exact[deep]) / exact[deep]) < 2 * 2.0 ** -24
    want = exact[~deep] / (1 + exact[~deep])
    assert np.max(np.abs(y[~deep] - want) / want) < 3 * 2.0 ** -24


def test_elu_float32_expm1_is_within_an_ulp_relative_over_its_whole_range():
    """float32 ELU's own expm1 (cpu._elu_f32: the series above cpu.EXPM1F_SERIES_ABOVE, exp(t) - 1 below)
    against float64, relative to the exact value: near 0 too, where exp(t) - 1 would lose every digit,
    and across the switch between the two forms; past the underflow it is -1 (times alpha)."""
    t = np.concatenate([np.linspace(-100.0, 0.0, 4_000_001), -np.logspace(-12, 1.9, 100_000),
                        cpu.EXPM1F_SERIES_ABOVE + np.linspace(-1e-3, 1e-3, 2001)]).astype(np.float32)
    t = t[t != 0]
    for alpha in (1.0, 0.5):
        y = cpu.activation_forward(t, cpu.ELU, alpha).astype(np.float64)
        exact = alpha * np.expm1(t.astype(np.float64))
        assert np.max(np.abs(y - exact) / np.abs(exact)) < 2 * 2.0 ** -24


def test_elu_float32_passes_nan_and_infinities_through():
    y = cpu.activation_forward(np.array([np.nan, np.inf, -np.inf, 3.0, -1e30], np.float32), cpu.ELU, 0.5)
    assert np.isnan(y[0])
    np.testing.assert_array_equal(y[1:], [np.inf, -0.5, 3.0, -0.5])


def test_softmax_float32_propagates_nan_and_underflows_to_zero():
    """A row holding a NaN (or only infinities) is NaN throughout, as in float64 and NumPy; exp of -inf and of
    anything below cpu.EXPF_MIN is 0."""
    with np.errstate(invalid="ignore"):
        for row in ([0.0, np.nan, 1.0], [-np.inf, -np.inf], [np.inf, 0.0]):
            assert np.isnan(cpu.softmax_forward(np.array([row], np.float32))).all()
    y = cpu.softmax_forward(np.array([[0.0, -np.inf, cpu.EXPF_MIN - 0.5, -1e30]], np.float32))
    np.testing.assert_array_equal(y, [[1.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=shape_id)
def test_softmax_backward(rng, shape, dtype):
    y = reference.softmax(randn(rng, shape, dtype)).astype(dtype)
    gy = randn(rng, shape, dtype)
    np.testing.assert_allclose(cpu.softmax_backward(y, gy), reference.softmax_backward(y, gy), **tolerance(dtype))


def activation_input(rng, shape, dtype):
    """Normal values, plus exact zeros and large magnitudes where the shape allows."""
    x = randn(rng, shape, dtype, scale=3.0).reshape(-1)
    x[::11] = 0.0  # the kink of relu/leaky_relu/elu
    x[5::13] = 90.0 * np.sign(x[5::13])  # sigmoid / elu far out (exp(90) overflows float32)
    return x.reshape(shape)


@pytest.mark.parametrize("chunk", ["one chunk", "7 elements a chunk"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,alpha", ACTIVATIONS)
@pytest.mark.parametrize("shape", ACTIVATION_SHAPES, ids=shape_id)
def test_activations(rng, shape, name, alpha, dtype, chunk, monkeypatch):
    if chunk != "one chunk":
        monkeypatch.setattr(cpu, "ACTIVATION_CHUNK", 7)  # ELU's and sigmoid's passes, chunk by chunk
    x, gy = activation_input(rng, shape, dtype), randn(rng, shape, dtype)
    code = cpu.ACTIVATIONS[name]
    y = cpu.activation_forward(x, code, alpha)
    assert y.dtype == dtype and y.shape == shape and np.isfinite(y).all()
    np.testing.assert_allclose(y, reference.activation(x, name, alpha), **tolerance(dtype))
    gx = cpu.activation_backward(x, y, gy, code, alpha)
    np.testing.assert_allclose(gx, reference.activation_grad(x, gy, name, alpha), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,scale", UPSAMPLE_CASES, ids=lambda v: shape_id(v) if isinstance(v, tuple) else f"s{v}")
def test_upsample_nearest_forward(rng, shape, scale, dtype):
    x = randn(rng, shape, dtype)
    np.testing.assert_array_equal(cpu.upsample_nearest_forward(x, scale), reference.upsample_nearest(x, scale))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,scale", UPSAMPLE_BACKWARD_CASES,
                         ids=lambda v: shape_id(v) if isinstance(v, tuple) else f"s{v}")
def test_upsample_nearest_backward(rng, shape, scale, dtype):
    gy = randn(rng, shape, dtype)
    np.testing.assert_allclose(cpu.upsample_nearest_backward(gy, scale), reference.upsample_nearest_backward(gy, scale),
                               **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("settings", ADAM_SETTINGS, ids=["default", "sagan", "dcgan-l2"])
def test_adam_step(rng, settings, dtype):
    for step in (1, 2, 10):
        for p, g, m, v in zip(*adam_state(rng, dtype)):
            want = reference.adam_step(p, g, m, v, **settings, step=step)
            cpu.adam_step(p, g, m, v, **settings, step=step)
            for got, w in zip((p, m, v), want):
                np.testing.assert_allclose(got, w, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("settings", ADAM_SETTINGS, ids=["default", "sagan", "dcgan-l2"])
def test_adam_step_multi_equals_repeated_adam_step(rng, settings, dtype):
    fused = adam_state(rng, dtype)
    single = [[a.copy() for a in arrays] for arrays in fused]
    for step in (1, 2, 3):
        cpu.adam_step_multi(*fused, **settings, step=step)
        for p, g, m, v in zip(*single):
            cpu.adam_step(p, g, m, v, **settings, step=step)
    for fused_arrays, single_arrays in zip(fused, single):
        for a, b in zip(fused_arrays, single_arrays):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("piece", [1, 7, 64])
def test_adam_step_multi_in_pieces_on_threads_equals_repeated_adam_step(rng, monkeypatch, piece):
    """Past SPLIT_WORK the tensors go to the threads in pieces of ADAM_PIECE: every element is updated once,
    with adam_step's bits, whatever the cut (pieces of 1, pieces that end inside a tensor, whole tensors)."""
    monkeypatch.setattr(threads, "SPLIT_WORK", 0)
    monkeypatch.setattr(cpu, "ADAM_PIECE", piece)
    shapes = [(3, 5, 7), (64,), (65,), (1,), (0,), (2, 129)]
    pieced = [[randn(rng, s, np.float32) for s in shapes] for _ in range(4)]
    pieced[3] = [np.abs(v) for v in pieced[3]]
    single = [[a.copy() for a in arrays] for arrays in pieced]
    before = [p.copy() for p in pieced[0]]
    for step in (1, 2):
        cpu.adam_step_multi(*pieced, 2e-4, 0.0, 0.9, 1e-8, 0.0, step)
        for p, g, m, v in zip(*single):
            cpu.adam_step(p, g, m, v, 2e-4, 0.0, 0.9, 1e-8, 0.0, step)
    for pieced_arrays, single_arrays in zip(pieced, single):
        for a, b in zip(pieced_arrays, single_arrays):
            np.testing.assert_array_equal(a, b)
    assert all((p != b).all() for p, b in zip(pieced[0], before))  # every element moved (lr > 0, g != 0)


@pytest.mark.parametrize("multi", [False, True], ids=["adam_step", "adam_step_multi"])
def test_adam_refuses_to_update_a_copy(multi):
    p = np.zeros((4, 4), np.float32)[:, ::2]  # a strided view: its flat view is a copy, and the update lost
    with pytest.raises(ValueError, match="C-contiguous"):
        if multi:
            cpu.adam_step_multi([p], [p], [p], [p], 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
        else:
            cpu.adam_step(p, p, p, p, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)


def test_adam_step_multi_rejects_lists_of_different_lengths(rng):
    params, grads, ms, vs = adam_state(rng, np.float64)
    with pytest.raises(ValueError, match="same length"):
        cpu.adam_step_multi(params, grads[:-1], ms, vs, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)


def test_every_kernel_runs_on_its_calling_thread_without_the_gil():
    """The design of minigan.backend.threads: no numba thread pool beside BLAS's (a parallel kernel would
    wait for the core a spinning BLAS worker holds), and nogil so that threads.parallel can run them."""
    import numba.core.registry

    kernels = [k for k in vars(cpu).values() if isinstance(k, numba.core.registry.CPUDispatcher)]
    assert len(kernels) >= 10
    for kernel in kernels:
        assert not kernel.targetoptions.get("parallel"), kernel.py_func.__name__
        assert kernel.targetoptions.get("nogil"), kernel.py_func.__name__
        assert type(kernel._cache).__name__ != "NullCache", kernel.py_func.__name__  # cache=True


# weight shape, the axis of W_mat's rows (0: Conv2d/Linear, 1: ConvTranspose2d), power steps
SPECTRAL_CASES = [((6, 5), 0, 1), ((7, 3, 4, 4), 0, 1), ((3, 7, 4, 4), 1, 1), ((5, 2, 3, 3), 0, 3),
                  ((1, 9), 0, 1), ((9, 1), 0, 2), ((64, 32, 4, 4), 0, 1), ((32, 64, 4, 4), 1, 1)]


@pytest.mark.parametrize("shape,dim,steps", SPECTRAL_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_spectral_power_is_the_power_step_and_its_sigma(rng, shape, dim, steps, dtype):
    """v <- normalize(W_mat^T u), u <- normalize(W_mat v), sigma = u^T W_mat v, against a dense W_mat in float64
    (rows counts 1, 3, 5, 7, 9, 32, 64: the four-row blocks and their remainders)."""
    w = rng.standard_normal(shape).astype(dtype)
    w_mat = np.moveaxis(w.astype(np.float64), dim, 0).reshape(shape[dim], -1)  # columns (a, b): before, after dim
    u = rng.standard_normal(shape[dim]).astype(dtype)
    v = np.zeros(w_mat.shape[1], dtype)
    ru = u.astype(np.float64)
    for _ in range(steps):
        rv = w_mat.T @ ru
        rv /= np.linalg.norm(rv)
        ru = w_mat @ rv
        ru /= np.linalg.norm(ru)
    w3 = w.reshape(int(np.prod(shape[:dim])), shape[dim], -1)
    sigma = cpu.spectral_power(w3, u, v, 1e-12, steps)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(u, ru, rtol=tol, atol=tol)
    np.testing.assert_allclose(v, rv, rtol=tol, atol=tol)
    np.testing.assert_allclose(sigma, ru @ w_mat @ rv, rtol=tol)
    assert u.dtype == v.dtype == dtype


def test_spectral_power_of_a_zero_weight_is_zero_not_nan():
    w3 = np.zeros((1, 4, 6), np.float32)
    u, v = np.ones(4, np.float32), np.ones(6, np.float32)
    assert cpu.spectral_power(w3, u, v, 1e-12, 1) == 0.0
    assert not u.any() and not v.any()


@pytest.mark.parametrize("shape,dim,steps", SPECTRAL_CASES)
def test_spectral_power_matches_the_array_module_form_a_gpu_runs(rng, shape, dim, steps):
    from minigan.nn.spectral_norm import _as_3d, _power_steps

    w3 = _as_3d(rng.standard_normal(shape).astype(np.float32), dim)
    u = rng.standard_normal(w3.shape[1]).astype(np.float32)
    u2, v, v2 = u.copy(), np.zeros(w3.shape[0] * w3.shape[2], np.float32), np.zeros(w3.shape[0] * w3.shape[2], np.float32)
    sigma = cpu.spectral_power(w3, u, v, 1e-12, steps)
    sigma2 = _power_steps(w3, u2, v2, 1e-12, steps)
    np.testing.assert_allclose(u, u2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v, v2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sigma, sigma2, rtol=1e-5)
