"""cuda-emu's RawModule: kernels/*.cu compiled for the host and run by an emulator.

The stand-in for ``cupy.RawModule`` / ``cupy.RawKernel`` behind the cuda-emu
device. A module's source (what cuda.py would hand to NVRTC) is compiled by the
system C++ compiler after ``kernels/cuda_emu.h``, which supplies what CUDA
would: thread and block indices, ``__syncthreads`` as a real barrier, warp
shuffles in lockstep, shared memory, ``__ldg``, the math functions (read its
header comment). Each name expression (``"im2col_kernel<float>"``) becomes an
explicit instantiation with an ``extern "C"`` launch entry that takes the grid,
the block and a ``void**`` of arguments, as ``cuLaunchKernel`` does, and is
called through ctypes.

Every launch checks its arguments against the kernel's C++ parameter list,
parsed from the source: the count, a device array (of the pointee's dtype) for
every pointer, and for every scalar a NumPy scalar of exactly the parameter's
width -- a Python int or float, whose width the caller did not choose, is
refused, as is a float64 for a ``float``. Each mistake is one TypeError
naming the kernel, the argument and the fix.

Compiled libraries are cached on disk, keyed by a hash of the whole
translation unit (header, source, instantiations) and the compiler command:
``$MINIGAN_EMU_CACHE``, else ``~/.cache/minigan/emu``. A library is written
under a temporary name and renamed into place, so two processes compiling
the same module at once are safe.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = "cuda_emu.h"
CXX_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-ffp-contract=off")
_ENTRY = "cuda_emu_launch_{}"
_LOCK = threading.Lock()  # the emulator keeps one launch's state in globals
_C_SCALARS = {
    "bool": np.bool_, "char": np.int8, "signed char": np.int8, "unsigned char": np.uint8,
    "short": np.int16, "unsigned short": np.uint16, "int": np.int32, "unsigned": np.uint32,
    "unsigned int": np.uint32, "long": np.int64, "unsigned long": np.uint64, "long long": np.int64,
    "unsigned long long": np.uint64, "size_t": np.uint64, "int32_t": np.int32, "uint32_t": np.uint32,
    "int64_t": np.int64, "uint64_t": np.uint64, "float": np.float32, "double": np.float64,
}
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict"}


class EmulatorError(RuntimeError):
    """A kernel failed to compile or to run on the emulator (the message says where)."""


# ---------------------------------------------------------------------------
# reading the kernels' C++ signatures
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str
    decl: str  # as written, comments dropped: "const T* __restrict__ x"
    ctype: str  # the base type after substitution: "float", "long long", "void"
    pointer: bool

    @property
    def dtype(self):
        """The NumPy dtype of the scalar (or the pointee), None for void/unknown."""
        kind = _C_SCALARS.get(self.ctype)
        return None if kind is None else np.dtype(kind)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _typedefs(source: str) -> dict[str, str]:
    return {alias: " ".join(target.split()) for target, alias in
            re.findall(r"typedef\s+([\w\s]+?)\s+(\w+)\s*;", source)}


def kernel_signatures(source: str) -> dict[str, tuple[list[str], list[tuple[str, str]]]]:
    """{kernel name: (template parameter names, [(parameter declaration, name)])} of every __global__."""
    text = _strip_comments(source)
    found = {}
    pattern = r"(?:template\s*<([^>]*)>\s*)?__global__\s+void\s+(\w+)\s*\(([^)]*)\)"
    for template, name, params in re.findall(pattern, text):
        names = [t.split()[-1] for t in template.split(",") if t.strip()] if template else []
        decls = [" ".join(p.split()) for p in params.split(",") if p.strip() and p.strip() != "void"]
        found[name] = (names, [(d, re.findall(r"\w+", d)[-1]) for d in decls])
    return found


def parse_name_expression(expr: str) -> tuple[str, list[str]]:
    """``"im2col_kernel<float>"`` -> ("im2col_kernel", ["float"])."""
    m = re.fullmatch(r"\s*(\w+)\s*(?:<(.*)>)?\s*", expr)
    if not m:
        raise EmulatorError(f"cannot read the name expression {expr!r} (expected kernel or kernel<type, ...>).")
    return m.group(1), [" ".join(a.split()) for a in m.group(2).split(",")] if m.group(2) else []


def parameters(source: str, expr: str) -> list[Param]:
    """The parameter list of the instantiation ``expr`` (template arguments and typedefs substituted)."""
    name, args = parse_name_expression(expr)
    signatures = kernel_signatures(source)
    if name not in signatures:
        raise EmulatorError(f"no __global__ function {name!r} in the source (name expression {expr!r}).")
    template, decls = signatures[name]
    if len(args) != len(template):
        raise EmulatorError(f"{expr}: {name} takes {len(template)} template argument(s), got {len(args)}.")
    aliases = {**_typedefs(_strip_comments(source)), **dict(zip(template, args))}
    out = []
    for decl, pname in decls:
        words = [w for w in re.findall(r"\w+", decl.replace("*", " ")) if w not in _QUALIFIERS][:-1]
        ctype = " ".join(words)
        for _ in range(8):  # typedef chains
            ctype = " ".join(aliases.get(w, w) for w in ctype.split())
        out.append(Param(pname, decl, ctype, "*" in decl or "[" in decl))
    return out


# ---------------------------------------------------------------------------
# compiling and caching
# ---------------------------------------------------------------------------
def compiler() -> str | None:
    """The C++ compiler the emulator uses: $CXX, else g++, else c++ (None if there is none)."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def header_path() -> Path:
    """kernels/cuda_emu.h, from the kernel folder in use (an edited copy may bring its own)."""
    from minigan.backend import cuda

    for folder in (cuda.kernel_dir(), cuda.packaged_kernel_dir()):
        if folder.joinpath(HEADER).is_file():
            return Path(str(folder.joinpath(HEADER)))
    raise EmulatorError(f"{HEADER} is missing from {cuda.packaged_kernel_dir()}: reinstall minigan.")


def cache_dir() -> Path:
    env = os.environ.get("MINIGAN_EMU_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minigan" / "emu"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"minigan-emu-{os.getuid() if hasattr(os, 'getuid') else 0}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def translation_unit(source: str, name_expressions) -> str:
    """The C++ file handed to the compiler: header, the kernel source as written, one launch entry per name."""
    entries = "".join(
        f'extern "C" __attribute__((visibility("default"))) int {_ENTRY.format(i)}'
        "(const unsigned* grid, const unsigned* block, void** args, char* error, size_t error_size) "
        f"{{ return cuda_emu::launch(&{expr}, grid, block, args, error, error_size); }}\n"
        for i, expr in enumerate(name_expressions))
    return (f"{header_path().read_text(encoding='utf-8')}\n#line 1 \"kernel.cu\"\n{source}\n"
            f"#line 1 \"cuda-emu launch entries\"\n{entries}")


def build(source: str, name_expressions) -> Path:
    """Compile (or find in the cache) the library for ``source`` and its name expressions."""
    cxx = compiler()
    if cxx is None:
        raise EmulatorError("the cuda-emu device needs a C++ compiler and none was found: install g++ "
                            "(apt-get install g++) or point $CXX at one.")
    unit = translation_unit(source, name_expressions)
    key = hashlib.sha256("\0".join([unit, cxx, *CXX_FLAGS]).encode()).hexdigest()[:32]
    folder = cache_dir()
    library = folder / f"{key}.so"
    if library.is_file():
        return library
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".so", dir=folder)
    os.close(fd)
    cpp = Path(tmp).with_suffix(".cpp")
    try:
        cpp.write_text(unit, encoding="utf-8")
        run = subprocess.run([cxx, *CXX_FLAGS, "-o", tmp, str(cpp)], capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            raise EmulatorError(f"{Path(cxx).name} could not compile the kernel source for cuda-emu "
                                f"({', '.join(name_expressions)}):\n{run.stderr.strip()}")
        os.replace(tmp, library)
        os.replace(cpp, folder / f"{key}.cpp")  # kept beside the library, for a reader of compiler errors
    finally:
        for leftover in (tmp, cpp):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return library


# ---------------------------------------------------------------------------
# RawModule / RawKernel
# ---------------------------------------------------------------------------
class RawModule:
    """cupy.RawModule for cuda-emu: ``get_function(name expression)`` returns a launchable kernel.

    As with NVRTC, nothing is compiled until the first get_function.
    """

    def __init__(self, code: str, name_expressions=(), options=(), **_):
        self.code = code
        self.name_expressions = tuple(name_expressions) or tuple(
            name for name, (template, _) in kernel_signatures(code).items() if not template)
        self.options = tuple(options)
        self._library = None

    def _load(self):
        if self._library is None:
            self._library = ctypes.CDLL(str(build(self.code, self.name_expressions)))
        return self._library

    def get_function(self, name: str) -> "RawKernel":
        if name not in self.name_expressions:
            raise EmulatorError(f"{name!r} is not one of this module's name expressions "
                                f"({', '.join(self.name_expressions)}).")
        entry = getattr(self._load(), _ENTRY.format(self.name_expressions.index(name)))
        entry.restype = ctypes.c_int
        entry.argtypes = [ctypes.POINTER(ctypes.c_uint)] * 2 + [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        return RawKernel(name, parameters(self.code, name), entry)


class RawKernel:
    """One instantiated kernel: ``kernel(grid, block, args)`` as CuPy's RawKernel is called."""

    def __init__(self, name: str, params: list[Param], entry):
        self.name, self.params, self._entry = name, params, entry

    def __call__(self, grid, block, args, shared_mem: int = 0, stream=None):
        grid, block = _dims(grid, "grid", self.name), _dims(block, "block", self.name)
        _check_launch(self.name, grid, block, shared_mem)
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"{self.name}: the arguments must be a tuple, got {type(args).__name__}.")
        if len(args) != len(self.params):
            listed = ", ".join(p.name for p in self.params)
            raise TypeError(f"{self.name} takes {len(self.params)} arguments ({listed}), got {len(args)}.")
        slots = [_slot(self.name, i, p, a) for i, (p, a) in enumerate(zip(self.params, args))]
        pointers = (ctypes.c_void_p * max(1, len(slots)))(*[ctypes.addressof(s) for s in slots])
        error = ctypes.create_string_buffer(1024)
        with _LOCK:
            status = self._entry((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), pointers, error,
                                 len(error))
        if status != 0:
            raise EmulatorError(f"{self.name} failed on cuda-emu: {error.value.decode(errors='replace')}")


def _dims(value, what, name) -> tuple[int, int, int]:
    dims = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                          for d in dims):
        raise TypeError(f"{name}: the {what} must be 1 to 3 ints, got {value!r}.")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def _check_launch(name, grid, block, shared_mem):
    if min(grid) < 1 or min(block) < 1:
        raise EmulatorError(f"{name}: grid {grid} and block {block} must be at least 1 in every dimension "
                            "(CUDA refuses an empty launch).")
    if block[0] > 1024 or block[1] > 1024 or block[2] > 64 or block[0] * block[1] * block[2] > 1024:
        raise EmulatorError(f"{name}: a block of {block} threads is more than CUDA's 1024.")
    if grid[0] > 2**31 - 1 or grid[1] > 65535 or grid[2] > 65535:
        raise EmulatorError(f"{name}: grid {grid} is past CUDA's limits (2^31-1, 65535, 65535).")
    if shared_mem:
        raise EmulatorError(f"{name}: dynamic shared memory (shared_mem={shared_mem}) is not emulated; "
                            "declare a fixed-size __shared__ array instead.")


def _slot(kernel, i, param: Param, value):
    """The ctypes storage holding argument ``i``'s value, after checking its kind and width."""
    from minigan.backend import emu_cupy

    where = f"{kernel}: argument {i} ({param.name}, `{param.decl}`)"
    want = param.dtype
    if param.pointer:
        if isinstance(value, emu_cupy.ndarray):
            if want is not None and value.dtype != want:
                raise TypeError(f"{where} is a {value.dtype} array; the kernel reads {param.ctype}: "
                                f"pass a {want} array.")
            return ctypes.c_void_p(value.data.ptr)
        if isinstance(value, np.ndarray):
            raise TypeError(f"{where} is a NumPy array, in host memory; a kernel reads device memory: "
                            "move it with cupy.asarray(...) (minigan: backend.to_device).")
        raise TypeError(f"{where} is a {type(value).__name__}; the pointer needs a device array.")
    if isinstance(value, (emu_cupy.ndarray, np.ndarray)):
        raise TypeError(f"{where} is an array; the parameter is a {param.ctype} scalar.")
    if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
        width = "a 64-bit int" if isinstance(value, int) else "a double"
        raise TypeError(f"{where} is a Python {type(value).__name__}, which CuPy passes as {width}: "
                        f"pass numpy.{want.name if want is not None else param.ctype}(...) so the width is "
                        "the kernel's.")
    if not isinstance(value, np.generic):
        raise TypeError(f"{where} is a {type(value).__name__}; the parameter is a {param.ctype} scalar.")
    if want is None:
        raise TypeError(f"{where}: the emulator does not know the C type {param.ctype!r}.")
    if value.dtype != want:
        raise TypeError(f"{where} is a numpy.{value.dtype.name}; the kernel's {param.ctype} is "
                        f"numpy.{want.name}: pass numpy.{want.name}(...).")
    return np.ctypeslib.as_ctypes_type(want)(value.item())
