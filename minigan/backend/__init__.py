"""Device choice and the kernel contract.

minigan runs on three devices:

* ``cpu``  -- arrays are NumPy arrays, hot spots run as numba kernels
  (:mod:`minigan.backend.cpu`);
* ``cuda`` -- arrays are CuPy arrays, hot spots run as hand-written CUDA
  kernels from ``kernels/*.cu`` (:mod:`minigan.backend.cuda`);
* ``cuda-emu`` -- the cuda path exactly, without a GPU: arrays are
  :mod:`minigan.backend.emu_cupy` arrays (NumPy storage, CuPy's semantics),
  and the same cuda.py launchers run the unmodified ``kernels/*.cu``
  compiled for the host by the emulator (:mod:`minigan.backend.emu_kernels`).

The kernel modules export the same function names with the same signatures
(the *kernel contract*), so an op calls ``kernels_for(x).im2col(...)`` and does
not care where ``x`` lives. Ordinary array code uses ``xp = array_module(x)``
and runs on every device unchanged.

CuPy is imported only when the GPU is asked for: ``import minigan`` on a CPU
machine needs numpy, numba and pillow alone.
"""
from __future__ import annotations

import functools
import os
from types import ModuleType

import numpy as np

DEVICES = ("cpu", "cuda", "cuda-emu")
EMU = "cuda-emu"

_cupy: ModuleType | None = None
_cupy_error: str | None = None
_default: str | None = None


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot provide."""


def _try_import_cupy() -> ModuleType | None:
    """Import CuPy once and check that it sees a GPU; remember why not if not."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy
    try:
        import cupy  # noqa: WPS433 (imported only when the GPU is asked for)

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device is visible")
        _cupy = cupy
    except Exception as exc:  # ImportError, CUDARuntimeError, missing driver...
        _cupy_error = f"{type(exc).__name__}: {exc}"
    return _cupy


@functools.lru_cache(maxsize=None)
def _emu_ready() -> bool:
    """True when the emulator's C++ compiler is there (checked once)."""
    from minigan.backend.emu_kernels import compiler

    return compiler() is not None


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    return _try_import_cupy() is not None


def check_device(name: str) -> str:
    """Validate a device name and make sure the device exists; returns the name."""
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}: use one of {', '.join(DEVICES)}.")
    if name == "cuda" and not cuda_available():
        raise DeviceError(
            "device 'cuda' was asked for but no usable GPU was found "
            f"({_cupy_error}); install CuPy with `pip install minigan[cuda12]` "
            "(or [cuda13]) on a machine with an NVIDIA GPU, or use --device cpu "
            "(or cuda-emu, the CUDA path emulated on the CPU)."
        )
    if name == EMU and not _emu_ready():
        raise DeviceError("device 'cuda-emu' compiles kernels/*.cu for the host and needs a C++ compiler: "
                          "install g++ (apt-get install g++) or set $CXX, or use --device cpu.")
    return name


def default_device() -> str:
    """``MINIGAN_DEVICE`` if set, else ``cuda`` when a GPU is usable, else ``cpu``."""
    global _default
    if _default is None:
        env = os.environ.get("MINIGAN_DEVICE", "").strip().lower()
        if env:
            _default = check_device(env)
        else:
            _default = "cuda" if cuda_available() else "cpu"
    return _default


def set_default_device(name: str) -> None:
    global _default
    _default = check_device(name)


def resolve(device: str | None) -> str:
    return default_device() if device is None else check_device(device)


def _emu() -> ModuleType:
    from minigan.backend import emu_cupy

    return emu_cupy


def _is_emu(a) -> bool:
    """True for a cuda-emu array (without importing the emulator for anything else)."""
    return type(a).__module__ == "minigan.backend.emu_cupy"


def xp_for(device: str) -> ModuleType:
    """The array module of a device: numpy, cupy, or cuda-emu's NumPy-backed stand-in for cupy."""
    if device == "cpu":
        return np
    check_device(device)
    return _emu() if device == EMU else _cupy


def array_module(a) -> ModuleType:
    """numpy, cupy or cuda-emu's cupy, whichever owns array ``a`` (Chainer's get_array_module)."""
    if isinstance(a, np.ndarray):
        return np
    if _is_emu(a):
        return _emu()
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy
    return np


def device_of(a) -> str:
    xp = array_module(a)
    return "cpu" if xp is np else EMU if xp is not _cupy else "cuda"


def kernels_for(a) -> ModuleType:
    """The kernel module (same contract on every device) for array ``a``: cuda.py serves cuda and cuda-emu."""
    if array_module(a) is np:
        from minigan.backend import cpu

        return cpu
    from minigan.backend import cuda

    return cuda


def to_numpy(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    if _is_emu(a):
        return _emu().asnumpy(a)
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy.asnumpy(a)
    return np.asarray(a)


def to_device(a, device: str):
    """Copy ``a`` (a NumPy, CuPy or cuda-emu array, or anything array-like) to ``device``."""
    if device == "cpu":
        return to_numpy(a)
    xp = xp_for(device)
    if device_of(a) not in ("cpu", device):  # between two devices: through the host
        a = to_numpy(a)
    return xp.asarray(a)
