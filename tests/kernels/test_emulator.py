"""The cuda-emu device itself: its CuPy stand-in, its argument checks, its threads, and planted kernel bugs.

* The stand-in behaves like CuPy where CuPy differs from NumPy (an opaque
  ``.data``, no implicit conversion, no host arrays in device expressions).
* Every launch checks its arguments against the kernel's C++ parameters.
* The threads of a block are concurrent: a missing ``__syncthreads`` gives a
  wrong answer, a barrier in divergent code and a shuffle with a bad mask are
  errors; shuffles exchange in lockstep; printf works.
* A planted bug in a copy of kernels/ (a padding read as 1 in im2col, the
  barrier removed from common.cuh's block reduction) fails the parity test
  that guards it.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigan import backend
from minigan.backend import cpu, cuda, emu_cupy as ecp
from minigan.backend import emu_kernels
from tests.conftest import PADDING_READ_AS_ONE
from tests.kernels import test_parity
from tests.kernels.test_cpu_kernels import BATCHNORM_SHAPES, CONV_GEOMETRIES, DTYPES

EMU = backend.EMU


def dev(a):
    return backend.to_device(a, EMU)


# ---------------------------------------------------------------------------
# the CuPy stand-in
# ---------------------------------------------------------------------------
def test_data_is_an_opaque_pointer_not_the_values():
    a = dev(np.arange(6.0))
    assert isinstance(a.data, ecp.MemoryPointer) and a.data.ptr != 0
    with pytest.raises(TypeError, match="MemoryPointer"):
        float(a.data)
    assert not np.isscalar(a.data)


@pytest.mark.parametrize("convert", [np.asarray, np.array, lambda a: np.float64(1.0) * np.ones(3) + a.__array__()])
def test_implicit_conversion_to_numpy_raises_as_on_cupy(convert):
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        convert(dev(np.ones(3)))


def test_explicit_ways_out():
    host = np.arange(5.0)
    a = dev(host)
    for out in (a.get(), ecp.asnumpy(a), backend.to_numpy(a)):
        assert isinstance(out, np.ndarray)
        np.testing.assert_array_equal(out, host)


@pytest.mark.parametrize("mix", [
    lambda a, h: a + h,
    lambda a, h: h * a,
    lambda a, h: ecp.where(a > 0, a, h),
    lambda a, h: ecp.concatenate([a, h]),
    lambda a, h: np.concatenate([a, h]),
    lambda a, h: ecp.maximum(a, h),
], ids=["add", "rmul", "where", "concatenate", "np.concatenate", "maximum"])
def test_a_host_array_in_a_device_expression_raises(mix):
    with pytest.raises(TypeError, match="Unsupported type"):
        mix(dev(np.ones(3)), np.ones(3))


def test_assigning_a_host_array_into_a_slice_raises_as_cupy_fill():
    a = dev(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray"):
        a[...] = np.ones((2, 3))
    a[...] = dev(np.ones((2, 3)))  # a device value, a scalar and a host index array are fine
    a[0] = 2.0
    a[np.array([1]), np.array([2])] = 5.0
    np.testing.assert_array_equal(a.get(), [[2, 2, 2], [1, 1, 5]])


def test_device_results_are_device_arrays():
    a = dev(np.arange(6.0).reshape(2, 3))
    for result in (a.sum(), a[0, 1], np.exp(a), np.concatenate([a, a]), a @ a.T, ecp.linalg.norm(a), a.max(axis=0),
                   ecp.take_along_axis(a, dev(np.zeros((2, 1), np.int64)), axis=1)):
        assert isinstance(result, ecp.ndarray), type(result)
    assert a.sum().ndim == 0 and float(a.sum()) == 15.0  # a 0-d array, not a NumPy scalar
    assert backend.array_module(a) is ecp and backend.device_of(a) == EMU and backend.kernels_for(a) is cuda


def test_views_write_through_and_add_at_accumulates():
    a = dev(np.zeros(4))
    a[1:3] += 1.0
    ecp.add.at(a, dev(np.array([0, 0, 3])), 1.0)
    np.testing.assert_array_equal(a.get(), [2, 1, 1, 1])


def test_numpy_only_attributes_are_missing():
    with pytest.raises(AttributeError):
        dev(np.ones(2)).ctypes  # noqa: B018


# ---------------------------------------------------------------------------
# the argument check against the kernel's C++ parameter list
# ---------------------------------------------------------------------------
@pytest.fixture
def relu_float():
    """activation_forward_kernel<float>(const float* x, float* y, index_t n, int kind, float alpha), and args."""
    kernel = cuda._function(ecp, "activation_forward_kernel", "float")
    x, y = dev(np.linspace(-1, 1, 8, dtype=np.float32)), dev(np.zeros(8, np.float32))
    return kernel, [x, y, np.int64(8), np.int32(cpu.RELU), np.float32(0.0)]


def launch(kernel, args):
    kernel((1,), (cuda.BLOCK,), tuple(args))


def test_correct_arguments_run(relu_float):
    kernel, args = relu_float
    launch(kernel, args)
    np.testing.assert_array_equal(args[1].get(), np.maximum(args[0].get(), 0))


@pytest.mark.parametrize("position,value,message", [
    (3, cpu.RELU, r"argument 3 \(kind, `int kind`\) is a Python int, which CuPy passes as a 64-bit int"),
    (3, np.int64(0), r"argument 3 \(kind.*numpy.int64; the kernel's int is numpy.int32"),
    (4, np.float64(0.0), r"argument 4 \(alpha, `T alpha`\) is a numpy.float64; the kernel's float is numpy.float32"),
    (4, 0.0, r"argument 4 \(alpha.*Python float, which CuPy passes as a double"),
    (2, 8, r"argument 2 \(n, `index_t n`\) is a Python int"),
    (0, np.linspace(-1, 1, 8, dtype=np.float32), r"argument 0 \(x.*NumPy array, in host memory"),
    (1, "y", r"argument 1 \(y.*is a str; the pointer needs a device array"),
    (0, "float64 array", r"argument 0 \(x.*is a float64 array; the kernel reads float"),
    (2, "array", r"argument 2 \(n.*is an array; the parameter is a long long scalar"),
], ids=["python-int-for-int", "int64-for-int", "float64-for-float", "python-float-for-float",
        "python-int-for-index_t", "host-array-for-pointer", "str-for-pointer", "wrong-pointee", "array-for-scalar"])
def test_a_wrong_argument_is_one_clear_error(relu_float, position, value, message):
    kernel, args = relu_float
    made = {"float64 array": lambda: dev(np.zeros(8)), "array": lambda: dev(np.zeros(1, np.int64))}
    args[position] = made[value]() if isinstance(value, str) and value in made else value
    with pytest.raises(TypeError, match=message):
        launch(kernel, args)


def test_a_wrong_argument_count_is_one_clear_error(relu_float):
    kernel, args = relu_float
    with pytest.raises(TypeError, match=r"takes 5 arguments \(x, y, n, kind, alpha\), got 4"):
        launch(kernel, args[:4])


def test_parameters_are_read_from_the_source():
    params = emu_kernels.parameters(cuda.kernel_source("adam.cu"), "adam_multi_kernel<double>")
    assert [(p.name, p.ctype, p.pointer) for p in params[:3]] == [
        ("table", "long long", True), ("P", "int", False), ("chunk", "int", False)]
    assert all(p.ctype == "double" for p in params[3:])


# ---------------------------------------------------------------------------
# threads: barriers, shuffles, errors, printf
# ---------------------------------------------------------------------------
REVERSE = r"""
extern "C" __global__ void reverse(const float* x, float* y) {
    __shared__ float tile[64];
    const int t = threadIdx.x;
    tile[t] = x[t];
    SYNC
    y[t] = tile[blockDim.x - 1 - t];
}
"""


@pytest.mark.parametrize("barrier", [True, False], ids=["with-syncthreads", "without"])
def test_a_missing_syncthreads_gives_a_wrong_answer(barrier):
    source = REVERSE.replace("SYNC", "__syncthreads();" if barrier else "")
    kernel = ecp.RawKernel(source, "reverse")
    x, y = dev(np.arange(64, dtype=np.float32)), dev(np.zeros(64, np.float32))
    kernel((1,), (64,), (x, y))
    correct = np.array_equal(y.get(), np.arange(64, dtype=np.float32)[::-1])
    assert correct == barrier  # without the barrier thread 0 reads tile[63] before thread 63 wrote it


SHUFFLES = r"""
template <typename T>
__global__ void shuffles(const T* x, T* out) {
    const int t = threadIdx.x, lane = t & 31;
    const T v = x[t];
    out[0 * 64 + t] = __shfl_xor_sync(0xffffffffu, v, 1);
    out[1 * 64 + t] = __shfl_down_sync(0xffffffffu, v, 3);
    out[2 * 64 + t] = __shfl_up_sync(0xffffffffu, v, 2);
    out[3 * 64 + t] = __shfl_sync(0xffffffffu, v, 5);
    out[4 * 64 + t] = (T)__ballot_sync(0xffffffffu, lane % 3 == 0);
    T s = v;  // common.cuh's butterfly
    for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_xor_sync(0xffffffffu, s, offset);
    out[5 * 64 + t] = s;
}
"""


def test_warp_shuffles_exchange_in_lockstep():
    kernel = ecp.RawModule(code=SHUFFLES, name_expressions=["shuffles<double>"]).get_function("shuffles<double>")
    x = np.arange(64, dtype=np.float64) ** 2
    out = dev(np.zeros(6 * 64))
    kernel((1,), (64,), (dev(x), out))
    got = out.get().reshape(6, 64)
    lane = np.arange(64) % 32
    warp = np.arange(64) - lane
    np.testing.assert_array_equal(got[0], x[warp + (lane ^ 1)])
    np.testing.assert_array_equal(got[1], np.where(lane + 3 < 32, x[np.minimum(np.arange(64) + 3, 63)], x))
    np.testing.assert_array_equal(got[2], np.where(lane >= 2, x[np.maximum(np.arange(64) - 2, 0)], x))
    np.testing.assert_array_equal(got[3], x[warp + 5])
    assert set(got[4]) == {float(sum(1 << b for b in range(32) if b % 3 == 0))}
    np.testing.assert_array_equal(got[5], np.repeat([x[:32].sum(), x[32:].sum()], 32))


@pytest.mark.parametrize("body,message", [
    ("if (threadIdx.x < 16) return; __syncthreads();", "exited"),
    ("if (threadIdx.x < 8) return; y[0] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);", "names lane 0, which has exited"),
    ("y[0] = __shfl_xor_sync(0x0000ffffu, 1.0f, 16);", "not include its own lane|not in its mask"),
    ("if (threadIdx.x < 16) __syncthreads(); else y[0] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);", "deadlock"),
], ids=["barrier-after-exit", "mask-names-exited-lane", "lane-outside-mask", "deadlock"])
def test_thread_misuse_is_an_error_not_a_hang(body, message):
    source = 'extern "C" __global__ void misuse(float* y) { ' + body + " }"
    kernel = ecp.RawKernel(source, "misuse")
    with pytest.raises(emu_kernels.EmulatorError, match=message):
        kernel((1,), (64,), (dev(np.zeros(1, np.float32)),))


def test_printf_in_a_kernel_prints(capfd):
    source = r'''extern "C" __global__ void hello(int n) {
        if (threadIdx.x == 0) printf("block %u of %u says %d\n", blockIdx.x, gridDim.x, n); }'''
    ecp.RawKernel(source, "hello")((3,), (32,), (np.int32(7),))
    lines = capfd.readouterr().out.splitlines()
    assert [line for line in lines if "says" in line] == [f"block {b} of 3 says 7" for b in range(3)]


def test_a_compile_error_names_the_kernel_line():
    with pytest.raises(emu_kernels.EmulatorError, match=r"kernel\.cu:1.*error"):
        ecp.RawKernel('extern "C" __global__ void broken(float* y) { y[0] = undeclared; }', "broken")


def test_libraries_are_cached_by_source_text(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGAN_EMU_CACHE", str(tmp_path))
    source = 'extern "C" __global__ void k(float* y) { y[threadIdx.x] = 1.0f; }'
    first = emu_kernels.build(source, ["k"])
    assert emu_kernels.build(source, ["k"]) == first  # the same text: the same library, not rebuilt
    assert emu_kernels.build(source.replace("1.0f", "2.0f"), ["k"]) != first
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".cpp", ".cpp", ".so", ".so"]


# ---------------------------------------------------------------------------
# planted bugs in a copy of kernels/ fail the parity tests that guard them
# ---------------------------------------------------------------------------
def outcomes(test, cases):
    """{case: True if the parity test passed} for each keyword-argument set in ``cases``."""
    gpu = lambda a: backend.to_device(a, EMU)  # noqa: E731
    results = {}
    for key, kwargs in cases.items():
        try:
            test(rng=np.random.default_rng(1234), gpu=gpu, **kwargs)
            results[key] = True
        except AssertionError:
            results[key] = False
    return results


def test_a_padding_read_as_one_fails_the_im2col_parity_test(planted):
    planted(*PADDING_READ_AS_ONE)
    cases = {g: dict(geometry=g, dtype=d, grid_cap="grid") for g in CONV_GEOMETRIES for d in DTYPES[:1]}
    passed = outcomes(test_parity.test_im2col, cases)
    padded = {g: g[3] != (0, 0) for g in CONV_GEOMETRIES}
    assert any(padded.values()) and not all(padded.values())
    assert passed == {g: not padded[g] for g in CONV_GEOMETRIES}  # every padded geometry fails, no other


def test_a_removed_syncthreads_in_the_block_reduction_fails_the_batchnorm_parity_test(planted):
    planted("common.cuh", "    if (lane == 0) partial[warp] = v;\n    __syncthreads();\n",
            "    if (lane == 0) partial[warp] = v;\n")
    cases = {s: dict(shape=s, offset=0.0, dtype=np.float64) for s in BATCHNORM_SHAPES}
    passed = outcomes(test_parity.test_batchnorm_forward, cases)
    # Without the barrier, warp 0 reads the other warps' slots before they are written, so it sums stale
    # partials. A channel of at most 32 values has data in warp 0 alone: every other partial is 0, stale
    # or fresh, and the bug cannot show; every larger channel must fail.
    more_than_a_warp = {s: s[0] * s[2] * s[3] > 32 for s in BATCHNORM_SHAPES}
    assert sum(more_than_a_warp.values()) >= 2
    assert passed == {s: not more_than_a_warp[s] for s in BATCHNORM_SHAPES}


def test_the_unplanted_copy_passes(planted):
    """The harness above, with an edit that changes nothing, passes: the failures are the bugs'."""
    planted("im2col.cu", "// im2col.cu -- ", "// im2col.cu (a copy) -- ")
    cases = {g: dict(geometry=g, dtype=np.float32, grid_cap="grid") for g in CONV_GEOMETRIES}
    assert all(outcomes(test_parity.test_im2col, cases).values())
    assert all(outcomes(test_parity.test_batchnorm_forward,
                        {s: dict(shape=s, offset=0.0, dtype=np.float64) for s in BATCHNORM_SHAPES}).values())
