"""cuda-emu's CuPy: a NumPy-backed stand-in for the ``cupy`` module and ``cupy.ndarray``.

On the cuda-emu device this module is ``xp``: every array the engine makes is
an :class:`ndarray` of this module, and cuda.py launches kernels/*.cu through
its :class:`RawModule` (the emulator, :mod:`minigan.backend.emu_kernels`).
Everything CuPy itself would compute (elementwise math, reductions, matmul,
indexing) runs on NumPy underneath.

Where CuPy behaves differently from NumPy, this module behaves like CuPy, so
that code which only works on NumPy fails here instead of on the first GPU:

* ``a.data`` is an opaque :class:`MemoryPointer` (with ``.ptr``), not a buffer;
* implicit conversion to NumPy -- ``np.asarray(a)``, ``np.array(a)``, anything
  that calls ``__array__`` -- raises TypeError, as CuPy's does; ``a.get()``,
  ``cupy.asnumpy(a)`` and ``backend.to_numpy(a)`` are the way out;
* a host NumPy array mixed into a device expression (``a + host``,
  ``np.where(mask, a, host)``, ``cupy.concatenate([a, host])``) raises
  TypeError ("Unsupported type"); Python and NumPy scalars are fine, and so
  are NumPy index arrays, which CuPy copies over;
* assigning a non-scalar NumPy array into a slice (``a[...] = host``) raises
  ValueError, as CuPy's fill does (an advanced index copies it over);
* reductions and scalar indexing give 0-d arrays, not NumPy scalars;
* ufuncs and array functions called through NumPy (``np.exp(a)``,
  ``np.concatenate([a, b])``) give device arrays, via ``__array_ufunc__`` and
  ``__array_function__``, as CuPy's do.
"""
from __future__ import annotations

import types

import numpy as np

from minigan.backend.emu_kernels import RawKernel as _Kernel
from minigan.backend.emu_kernels import RawModule

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")
# cupy.ndarray's methods: anything else NumPy's arrays have is an AttributeError here, as on CuPy
_METHODS = frozenset("""
    all any argmax argmin argpartition argsort astype choose clip compress conj conjugate copy cumprod cumsum
    diagonal dot fill flatten item max mean min nonzero partition prod ptp put ravel repeat reshape round sort
    squeeze std sum swapaxes take tobytes tolist trace transpose var view
""".split())
_HOST_OK = frozenset({"asarray", "array", "asanyarray"})  # the functions that copy host data over


class MemoryPointer:
    """What ``cupy.ndarray.data`` is: an address in device memory, not the array's values."""

    __slots__ = ("ptr", "_owner")

    def __init__(self, ptr: int, owner):
        self.ptr, self._owner = ptr, owner

    def __repr__(self):
        return f"<MemoryPointer 0x{self.ptr:x} (cuda-emu)>"


def _host_error(value):
    return TypeError(f"Unsupported type {type(value)}")


def _unwrap(value, host_ok: bool = False):
    """Device arrays -> their NumPy storage, recursively; a host array is refused unless ``host_ok``
    (the functions that copy host data over)."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray) and not host_ok:
        raise _host_error(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, host_ok) for v in value)
    return value


def _wrap(value):
    """NumPy results -> device arrays (scalars become 0-d arrays, as CuPy returns them)."""
    if isinstance(value, np.ndarray):
        out = object.__new__(ndarray)
        out._a = value
        return out
    if isinstance(value, np.generic):
        return _wrap(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _index(key):
    """An index for NumPy: device arrays unwrapped; host index arrays and lists are allowed (CuPy copies them)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return key._a if isinstance(key, ndarray) else key


def _is_advanced(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (ndarray, np.ndarray, list)) for k in keys)


def _function(name: str, fn):
    def device_function(*args, **kwargs):
        if name not in _HOST_OK:
            args, kwargs = _unwrap(args), {k: _unwrap(v) for k, v in kwargs.items()}
        else:
            args = _unwrap(args, host_ok=True)
        return _wrap(fn(*args, **kwargs))

    device_function.__name__ = device_function.__qualname__ = name
    device_function.__doc__ = f"cuda-emu: numpy.{name} on device arrays."
    return device_function


class _Ufunc:
    """A NumPy ufunc over device arrays (``xp.add(a, b)``, ``xp.add.at(a, i, v)``, ``xp.maximum.reduce``)."""

    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        if any(isinstance(a, ndarray) for a in args):
            return self._ufunc(*args, **kwargs)  # through ndarray.__array_ufunc__
        return _wrap(self._ufunc(*_unwrap(args), **kwargs))

    def __getattr__(self, method):
        bound = getattr(self._ufunc, method)
        if not callable(bound):
            return bound

        def call(*args, **kwargs):
            if any(isinstance(a, ndarray) for a in args):
                return getattr(self._ufunc, method)(*args, **kwargs)  # through ndarray.__array_ufunc__
            return _wrap(bound(*_unwrap(args), **kwargs))

        return call


class _Namespace(types.SimpleNamespace):
    """A NumPy submodule (linalg, fft, random) over device arrays."""

    def __init__(self, module):
        super().__init__()
        object.__setattr__(self, "_module", module)

    def __getattr__(self, name):
        return _convert(name, getattr(self._module, name))


def _convert(name, value):
    if isinstance(value, np.ufunc):
        return _Ufunc(value)
    if isinstance(value, type):
        return value
    if isinstance(value, types.ModuleType):
        return _Namespace(value)
    if callable(value):
        return _function(name, value)
    return value


def _binary(ufunc, reflected=False):
    def op(self, other):
        if getattr(other, "__array_priority__", 0) > self.__array_priority__ and not isinstance(other, ndarray):
            return NotImplemented  # e.g. a Tensor: its reflected operator runs instead (CuPy's rule)
        return ufunc(other, self) if reflected else ufunc(self, other)

    return op


def _inplace(ufunc):
    def op(self, other):
        ufunc(self, other, out=self)
        return self

    return op


class ndarray:
    """A device array of cuda-emu: NumPy storage, CuPy's interface (see the module docstring)."""

    __slots__ = ("_a",)
    __array_priority__ = 100  # cupy.ndarray's

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None:
            raise NotImplementedError("cuda-emu arrays cannot be built over a raw MemoryPointer.")
        self._a = np.empty(shape, dtype=dtype, order=order)

    # -- what CuPy has and NumPy spells differently ------------------------------
    @property
    def data(self) -> MemoryPointer:
        return MemoryPointer(self._a.__array_interface__["data"][0], self)

    def get(self, stream=None, order="C", out=None) -> np.ndarray:
        """A host (NumPy) copy."""
        host = np.array(self._a, order=order)
        if out is not None:
            out[...] = host
            return out
        return host

    def set(self, arr, stream=None):
        """Copy a host array of the same shape in."""
        self._a[...] = np.asarray(arr, dtype=self.dtype)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for a in inputs:
            if isinstance(a, (np.ndarray, list, tuple)) and not (method == "at" and a is inputs[1]):
                raise _host_error(a)  # CuPy's elementwise kernels take device arrays and scalars only
            if not isinstance(a, (ndarray, np.generic, int, float, complex, bool, np.ndarray, list, tuple)):
                return NotImplemented  # e.g. a Tensor
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*[_index(a) for a in inputs], **kwargs)
        if method == "at":
            return None
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        own = globals().get(func.__name__)
        if func.__module__ == "numpy" and isinstance(own, types.FunctionType):
            return own(*args, **kwargs)
        return _function(func.__name__, func)(*args, **kwargs)

    # -- array facts -----------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: _wrap(self._a.T))
    real = property(lambda self: _wrap(self._a.real))
    imag = property(lambda self: _wrap(self._a.imag))
    device = property(lambda self: cuda.Device(0))

    @property
    def base(self):
        return None if self._a.base is None else _wrap(np.asarray(self._a.base))

    def __getattr__(self, name):
        if name not in _METHODS:
            raise AttributeError(f"'cupy.ndarray' (cuda-emu) object has no attribute {name!r}")
        method = getattr(self._a, name)

        def call(*args, **kwargs):
            if name == "fill" and isinstance(args[0] if args else None, np.ndarray) and np.ndim(args[0]) > 0:
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            result = method(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
            return result if name in ("item", "tolist", "tobytes") else _wrap(result)

        return call

    # -- Python protocols --------------------------------------------------------
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and value.ndim > 0 and not _is_advanced(key):
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        self._a[_index(key)] = value._a if isinstance(value, ndarray) else value

    def __repr__(self):
        return repr(self._a)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a.item() if self.ndim == 0 else self._a, spec)

    def __bool__(self):
        return bool(self._a)

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __complex__(self):
        return complex(self._a)

    def __index__(self):
        return self._a.__index__()

    def __copy__(self):
        return _wrap(self._a.copy())

    def __deepcopy__(self, memo):
        return _wrap(self._a.copy())

    def __reduce__(self):
        return _wrap, (self._a.copy(),)

    __hash__ = None

    __add__, __radd__, __iadd__ = _binary(np.add), _binary(np.add, True), _inplace(np.add)
    __sub__, __rsub__, __isub__ = _binary(np.subtract), _binary(np.subtract, True), _inplace(np.subtract)
    __mul__, __rmul__, __imul__ = _binary(np.multiply), _binary(np.multiply, True), _inplace(np.multiply)
    __truediv__, __rtruediv__ = _binary(np.true_divide), _binary(np.true_divide, True)
    __itruediv__ = _inplace(np.true_divide)
    __floordiv__, __rfloordiv__ = _binary(np.floor_divide), _binary(np.floor_divide, True)
    __mod__, __rmod__ = _binary(np.remainder), _binary(np.remainder, True)
    __pow__, __rpow__, __ipow__ = _binary(np.power), _binary(np.power, True), _inplace(np.power)
    __matmul__, __rmatmul__ = _binary(np.matmul), _binary(np.matmul, True)
    __and__, __rand__ = _binary(np.bitwise_and), _binary(np.bitwise_and, True)
    __or__, __ror__ = _binary(np.bitwise_or), _binary(np.bitwise_or, True)
    __xor__, __rxor__ = _binary(np.bitwise_xor), _binary(np.bitwise_xor, True)
    __lshift__, __rshift__ = _binary(np.left_shift), _binary(np.right_shift)
    __lt__, __le__ = _binary(np.less), _binary(np.less_equal)
    __gt__, __ge__ = _binary(np.greater), _binary(np.greater_equal)
    __eq__, __ne__ = _binary(np.equal), _binary(np.not_equal)

    def __neg__(self):
        return np.negative(self)

    def __pos__(self):
        return np.positive(self)

    def __abs__(self):
        return np.absolute(self)

    def __invert__(self):
        return np.invert(self)


# ---------------------------------------------------------------------------
# the functions that move data, and CuPy's own names
# ---------------------------------------------------------------------------
def asarray(a, dtype=None, order=None, blocking=False):
    """Host data (or a device array) as a device array; a device array of the same dtype is returned as is."""
    if isinstance(a, ndarray) and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    return _wrap(np.array(_unwrap(a, host_ok=True), dtype=dtype, order=order or "K", copy=True))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, blocking=False):
    if isinstance(obj, ndarray) and not copy and (dtype is None or np.dtype(dtype) == obj.dtype) \
            and ndmin <= obj.ndim:
        return obj
    return _wrap(np.array(_unwrap(obj, host_ok=True), dtype=dtype, copy=True, order=order, ndmin=ndmin))


asanyarray = asarray


def asnumpy(a, stream=None, order="C", out=None, blocking=True) -> np.ndarray:
    """A host copy of a device array (anything else goes through numpy.asarray)."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def ascontiguousarray(a, dtype=None):
    """CuPy's takes device arrays only."""
    if not isinstance(a, ndarray):
        raise TypeError(f"Argument 'a' has incorrect type (expected cupy.ndarray, got {type(a).__name__})")
    if a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    return _wrap(np.ascontiguousarray(a._a, dtype=dtype))


def get_array_module(*args):
    return cupy_module if any(isinstance(a, ndarray) for a in args) else np


class _Device:
    def __init__(self, device=0):
        self.id = int(device)

    def synchronize(self):
        pass

    def use(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    compute_capability = "emu"


class _Stream:
    def synchronize(self):
        pass


class _MemoryPool:
    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


cuda = types.SimpleNamespace(
    Device=_Device,
    Stream=types.SimpleNamespace(null=_Stream()),
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
    get_current_stream=lambda: _Stream(),
)


def RawKernel(code: str, name: str, options=(), **kwargs) -> _Kernel:  # noqa: N802 (CuPy's name)
    return RawModule(code=code, name_expressions=(name,), options=options).get_function(name)


def get_default_memory_pool():
    return _MemoryPool()


def __getattr__(name):
    """Any other NumPy name, over device arrays (creation functions give device arrays)."""
    if name.startswith("__") or not hasattr(np, name):
        raise AttributeError(f"module 'cupy' (cuda-emu) has no attribute {name!r}")
    value = _convert(name, getattr(np, name))
    globals()[name] = value  # cached
    return value


import sys as _sys  # noqa: E402

cupy_module = _sys.modules[__name__]
