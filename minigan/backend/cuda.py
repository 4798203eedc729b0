"""CUDA kernels (CuPy RawModule): the GPU side of the kernel contract.

Every function here has a twin of the same name and signature in
:mod:`minigan.backend.cpu` (read its docstring for the layouts);
``tests/kernels/test_parity.py`` compares the two. Arrays are CuPy arrays,
float32 or float64 -- or, on the cuda-emu device, arrays of
:mod:`minigan.backend.emu_cupy`, CuPy's NumPy-backed stand-in, whose
RawModule runs the same kernels on the CPU emulator. Every function takes
its ``cp`` (CuPy or the stand-in) from its first input at call time, so the
launcher code below is the same for both.

Where the kernels come from: ``kernels/*.cu``, CUDA C templates over the
element type. The first call that needs a kernel file for a dtype compiles it
with NVRTC through ``cupy.RawModule``, instantiating every kernel of the file
for that dtype with ``name_expressions`` (``"im2col_kernel<float>"``); the
module is then cached for the life of the process, and CuPy also caches the
binary on disk (``~/.cupy/kernel_cache``) keyed by the source text.

The .cu files are found in ``$MINIGAN_KERNEL_DIR`` when it is set (an edited
copy of the folder), else with ``importlib.resources`` as the package
``minigan._kernels`` (an installed wheel ships them there, see
``[tool.setuptools]`` in pyproject.toml), falling back to the ``kernels/``
folder of a source checkout.

Launch hygiene, the same for every kernel: inputs are made C-contiguous,
every scalar argument is an explicit ``numpy.int32`` / ``numpy.int64`` or a
float of the array's own dtype (a Python int or float would be passed with
the wrong width), and 1-D grids come from :func:`grid_size`. Flat indices are
64-bit inside the kernels; what they hold in an ``int`` -- single dimensions,
image planes (H*W), rows of the im2col matrix (N*OH*OW), a batch-norm
channel (N*H*W) -- must stay below 2^31, which is checked before each launch.
"""
from __future__ import annotations

import functools
import importlib.resources
import os
from pathlib import Path

import numpy as np

from minigan import backend
from minigan.backend.cpu import ACTIVATIONS, adam_scalars, check_adam_state

BLOCK = 256  # threads per block of every 1-D launch (kernels/common.cuh: MINIGAN_BLOCK)
MAX_BLOCKS = 65535  # grid cap for grid-stride kernels: past it threads loop instead
WARPS_PER_BLOCK = BLOCK // 32  # softmax: one warp per row
ADAM_CHUNK = 4096  # elements per block in adam_multi_kernel
_INT32_MAX = 2**31 - 1

#: kernel file -> the kernel templates it defines (each instantiated per dtype)
KERNELS = {
    "im2col.cu": ("im2col_kernel",),
    "col2im.cu": ("col2im_kernel",),
    "batchnorm.cu": ("batchnorm_forward_kernel", "batchnorm_backward_kernel"),
    "softmax.cu": ("softmax_forward_kernel", "softmax_backward_kernel"),
    "activations.cu": ("activation_forward_kernel", "activation_backward_kernel"),
    "upsample.cu": ("upsample_nearest_forward_kernel", "upsample_nearest_backward_kernel"),
    "adam.cu": ("adam_kernel", "adam_multi_kernel"),
}
_FILE_OF = {name: file for file, names in KERNELS.items() for name in names}
#: dtype -> the C type a kernel template is instantiated with
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
HEADER = "common.cuh"
_INCLUDE = f'#include "{HEADER}"'


# ---------------------------------------------------------------------------
# finding, loading and compiling the kernels
# ---------------------------------------------------------------------------
def packaged_kernel_dir():
    """The folder of the .cu files minigan ships: the installed package, else the checkout's kernels/."""
    try:
        root = importlib.resources.files("minigan._kernels")
        if root.joinpath(HEADER).is_file():
            return root
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "kernels"


def kernel_dir():
    """The folder the kernels are read from: $MINIGAN_KERNEL_DIR (an edited copy of kernels/, e.g.
    with a printf in a kernel) when set, else :func:`packaged_kernel_dir`."""
    override = os.environ.get("MINIGAN_KERNEL_DIR")
    if not override:
        return packaged_kernel_dir()
    if not (Path(override) / HEADER).is_file():
        raise RuntimeError(f"MINIGAN_KERNEL_DIR={override} holds no {HEADER}: point it at a copy of kernels/.")
    return Path(override)


def kernel_source(filename: str) -> str:
    """The source of ``kernels/<filename>`` with common.cuh pasted over its #include.

    Pasting (rather than ``-I``) makes the header part of the text CuPy hashes
    for its disk cache, so editing common.cuh recompiles every kernel.
    """
    root = kernel_dir()
    source = root.joinpath(filename).read_text(encoding="utf-8")
    if _INCLUDE not in source:
        raise RuntimeError(f"kernels/{filename} does not include {HEADER}.")
    return source.replace(_INCLUDE, root.joinpath(HEADER).read_text(encoding="utf-8"), 1)


def name_expression(kernel: str, ctype: str) -> str:
    """The C++ name of one instantiation, e.g. ``im2col_kernel<float>``."""
    return f"{kernel}<{ctype}>"


def _cp(a):
    """The CuPy module owning device array ``a``: cupy itself, or cuda-emu's stand-in."""
    cp = backend.array_module(a)
    if cp is np:
        raise TypeError(f"minigan's CUDA kernels take device arrays, got a host {type(a).__name__}; "
                        "move it with backend.to_device(a, device).")
    return cp


@functools.lru_cache(maxsize=None)
def _module(cp, filename: str, ctype: str):
    """One RawModule per (CuPy, kernel file, element type); NVRTC runs on the first get_function."""
    names = tuple(name_expression(k, ctype) for k in KERNELS[filename])
    return cp.RawModule(code=kernel_source(filename), name_expressions=names)


@functools.lru_cache(maxsize=None)
def _function(cp, kernel: str, ctype: str):
    return _module(cp, _FILE_OF[kernel], ctype).get_function(name_expression(kernel, ctype))


def clear_caches() -> None:
    """Forget the compiled modules (after kernel_dir() changed, e.g. to an edited copy of kernels/)."""
    _function.cache_clear()
    _module.cache_clear()


def _dtype(a) -> np.dtype:
    """The kernels' element type for array ``a``, or a ValueError saying how to fix it."""
    dtype = np.dtype(a.dtype)
    if dtype not in CTYPES:
        raise ValueError(f"minigan's CUDA kernels take float32 or float64, got {dtype}; "
                         "cast with .astype(...).")
    return dtype


def _inputs(first, *others):
    """``first`` and ``others`` as C-contiguous CuPy arrays of first's float dtype, that dtype and CuPy."""
    dtype, cp = _dtype(first), _cp(first)
    arrays = [cp.ascontiguousarray(first)]
    arrays += [cp.ascontiguousarray(a, dtype=dtype) for a in others]
    return arrays, dtype, cp


def _check_int32(*values) -> None:
    """Sizes the kernels hold in an int must lie in [0, 2^31): a clear error, not a silent wrap."""
    for v in values:
        if not 0 <= int(v) <= _INT32_MAX:
            raise ValueError(f"minigan's CUDA kernels take sizes in [0, 2^31), got {v}.")


def _i32(*values):
    """Kernel ``int`` arguments."""
    _check_int32(*values)
    return [np.int32(v) for v in values]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def grid_size(threads: int) -> int:
    """Blocks for ``threads`` threads of a grid-stride kernel (0 when there is no work)."""
    return min(ceil_div(threads, BLOCK), MAX_BLOCKS)


def _launch(cp, kernel: str, dtype: np.dtype, blocks: int, args) -> None:
    """Launch ``kernel<ctype of dtype>`` on ``blocks`` blocks of BLOCK threads (none: no launch).

    The one launch helper of this module: every contract function below only
    allocates its outputs and lists the kernel's arguments in order.
    """
    if blocks > 0:  # a 0-block grid is a CUDA launch error, and there is nothing to do
        _function(cp, kernel, CTYPES[dtype])((int(blocks),), (BLOCK,), tuple(args))


# ---------------------------------------------------------------------------
# the kernel contract (same names, signatures and layouts as cpu.py)
# ---------------------------------------------------------------------------
def im2col(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """x (N, C, H, W) -> columns (C*KH*KW, N*OH*OW)."""
    (x,), dtype, cp = _inputs(x)
    n, c, h, w = x.shape
    _check_int32(n * oh * ow)  # a row of cols is indexed with an int in the kernel
    cols = cp.empty((c * kh * kw, n * oh * ow), dtype=dtype)
    total = c * n * oh * ow
    _launch(cp, "im2col_kernel", dtype, grid_size(total),
            [x, cols, np.int64(total), *_i32(n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)])
    return cols


def col2im(cols, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    """columns (C*KH*KW, N*OH*OW) -> image (N, C, H, W), summing overlaps (a gather)."""
    (cols,), dtype, cp = _inputs(cols)
    if cols.shape != (c * kh * kw, n * oh * ow):
        raise ValueError(f"col2im: columns of shape {cols.shape} do not match ({c * kh * kw}, {n * oh * ow}) "
                         f"for N={n}, C={c}, a {kh}x{kw} kernel and a {oh}x{ow} output.")
    _check_int32(n * oh * ow, h * w)  # a row of cols and an image plane are indexed with ints
    x = cp.empty((n, c, h, w), dtype=dtype)
    _launch(cp, "col2im_kernel", dtype, grid_size(x.size),
            [cols, x, np.int64(x.size), *_i32(n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)])
    return x


def _per_channel_sizes(x):
    """N, C, H*W for the batch-norm kernels, which count a channel's N*H*W values in an int."""
    n, c, h, w = x.shape
    _check_int32(n * h * w)
    return _i32(n, c, h * w)


def batchnorm_forward(x, gamma, beta, eps):
    """Normalise x (N, C, H, W) per channel with batch statistics (biased variance).

    Returns (y, mean (C,), invstd (C,)).
    """
    (x, gamma, beta), dtype, cp = _inputs(x, gamma, beta)
    c = x.shape[1]
    y = cp.empty_like(x)
    mean = cp.empty(c, dtype=dtype)
    invstd = cp.empty(c, dtype=dtype)
    _launch(cp, "batchnorm_forward_kernel", dtype, c,
            [x, gamma, beta, y, mean, invstd, *_per_channel_sizes(x), dtype.type(eps)])
    return y, mean, invstd


def batchnorm_backward(x, gy, gamma, mean, invstd):
    """Gradients of training-mode batch norm: returns (gx, ggamma, gbeta)."""
    (x, gy, gamma, mean, invstd), dtype, cp = _inputs(x, gy, gamma, mean, invstd)
    c = x.shape[1]
    gx = cp.empty_like(x)
    ggamma = cp.empty(c, dtype=dtype)
    gbeta = cp.empty(c, dtype=dtype)
    _launch(cp, "batchnorm_backward_kernel", dtype, c,
            [x, gy, gamma, mean, invstd, gx, ggamma, gbeta, *_per_channel_sizes(x)])
    return gx, ggamma, gbeta


def _rows_grid(a):
    if a.ndim != 2:
        raise ValueError(f"softmax kernels take a 2-D (rows, cols) array, got shape {a.shape}.")
    rows, cols = a.shape
    blocks = 0 if cols == 0 else min(ceil_div(rows, WARPS_PER_BLOCK), MAX_BLOCKS)
    return blocks, [np.int64(rows), *_i32(cols)]


def softmax_forward(x):
    """Row-wise softmax of x (rows, cols), max-subtracted for stability."""
    (x,), dtype, cp = _inputs(x)
    y = cp.empty_like(x)
    blocks, sizes = _rows_grid(x)
    _launch(cp, "softmax_forward_kernel", dtype, blocks, [x, y, *sizes])
    return y


def softmax_backward(y, gy):
    """gx = y * (gy - sum(y * gy)) row by row."""
    (y, gy), dtype, cp = _inputs(y, gy)
    gx = cp.empty_like(y)
    blocks, sizes = _rows_grid(y)
    _launch(cp, "softmax_backward_kernel", dtype, blocks, [y, gy, gx, *sizes])
    return gx


def _activation_code(kind):
    if kind not in ACTIVATIONS.values():
        raise ValueError(f"unknown activation code {kind!r}: use one of {ACTIVATIONS}.")
    return np.int32(kind)


def activation_forward(x, kind, alpha):
    """y = act(x) for act in ACTIVATIONS (``kind`` is its code)."""
    (x,), dtype, cp = _inputs(x)
    y = cp.empty_like(x)
    _launch(cp, "activation_forward_kernel", dtype, grid_size(x.size),
            [x, y, np.int64(x.size), _activation_code(kind), dtype.type(alpha)])
    return y


def activation_backward(x, y, gy, kind, alpha):
    """gx from the input x, the output y and the output gradient gy."""
    (x, y, gy), dtype, cp = _inputs(x, y, gy)
    gx = cp.empty_like(x)
    _launch(cp, "activation_backward_kernel", dtype, grid_size(x.size),
            [x, y, gy, gx, np.int64(x.size), _activation_code(kind), dtype.type(alpha)])
    return gx


def upsample_nearest_forward(x, scale):
    """x (N, C, H, W) -> (N, C, H*scale, W*scale), each pixel repeated."""
    (x,), dtype, cp = _inputs(x)
    n, c, h, w = x.shape
    y = cp.empty((n, c, h * scale, w * scale), dtype=dtype)
    _launch(cp, "upsample_nearest_forward_kernel", dtype, grid_size(y.size),
            [x, y, np.int64(y.size), *_i32(h, w, h * scale, w * scale, scale)])
    return y


def upsample_nearest_backward(gy, scale):
    """Sum each scale x scale block of gy (N, C, H*s, W*s) into gx (N, C, H, W)."""
    (gy,), dtype, cp = _inputs(gy)
    n, c, oh, ow = gy.shape
    gx = cp.empty((n, c, oh // scale, ow // scale), dtype=dtype)
    _launch(cp, "upsample_nearest_backward_kernel", dtype, grid_size(gx.size),
            [gy, gx, np.int64(gx.size), *_i32(oh // scale, ow // scale, oh, ow, scale)])
    return gx


# ---------------------------------------------------------------------------
# Adam, in place
# ---------------------------------------------------------------------------
def adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam update of ``param`` (and its moments ``m``, ``v``) in place.

    ``step`` counts from 1; weight decay is the L2 kind (added to the gradient),
    as in ``torch.optim.Adam``.
    """
    dtype, cp = _dtype(param), _cp(param)
    check_adam_state(dtype, param, m, v)
    grad = cp.ascontiguousarray(grad, dtype=dtype)
    _launch(cp, "adam_kernel", dtype, grid_size(param.size),
            [param, grad, m, v, np.int64(param.size),
             *adam_scalars(dtype, lr, beta1, beta2, eps, weight_decay, step)])


_adam_table_cache: dict = {}  # the last pointer table uploaded, keyed by its contents


def _adam_table(cp, params, grads, ms, vs):
    """The (6, P) int64 table of adam_multi_kernel (see kernels/adam.cu) and the chunk count."""
    sizes = np.array([p.size for p in params], dtype=np.int64)
    chunks = -(-sizes // ADAM_CHUNK)
    first_chunk = np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(np.int64)
    ptrs = np.array([[a.data.ptr for a in arrays] for arrays in (params, grads, ms, vs)], dtype=np.int64)
    host = np.vstack([ptrs, sizes, first_chunk])  # (6, P)
    key = (cp.__name__, cp.cuda.Device().id, host.tobytes())
    if _adam_table_cache.get("key") != key:  # gradients are often reallocated at the same address
        _adam_table_cache.update(key=key, table=cp.asarray(host))
    return _adam_table_cache["table"], int(chunks.sum())


def adam_step_multi(params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, step):
    """adam_step on every (param, grad, m, v) of the lists, in ONE kernel launch.

    The lists have equal lengths, one dtype, and a gradient for every parameter.
    """
    if not len(params) == len(grads) == len(ms) == len(vs):
        raise ValueError("adam_step_multi: params, grads, ms and vs must have the same length.")
    keep = [i for i, p in enumerate(params) if p.size > 0]
    if not keep:
        return
    dtype, cp = _dtype(params[keep[0]]), _cp(params[keep[0]])
    params, ms, vs = ([arrays[i] for i in keep] for arrays in (params, ms, vs))
    check_adam_state(dtype, *params, *ms, *vs)
    grads = [cp.ascontiguousarray(grads[i], dtype=dtype) for i in keep]
    table, n_chunks = _adam_table(cp, params, grads, ms, vs)
    _launch(cp, "adam_multi_kernel", dtype, n_chunks,
            [table, *_i32(len(params), ADAM_CHUNK),
             *adam_scalars(dtype, lr, beta1, beta2, eps, weight_decay, step)])
