"""Every kernels/*.cu compiles for float and double, without a GPU.

* nvcc -ptx for two architectures (skipped when nvcc is not on PATH), with
  warnings as errors, on exactly the source cuda.py hands to CuPy (common.cuh
  pasted in) plus a reference to every ``kernel<float>`` / ``kernel<double>``
  instantiation, then checks that each one is a PTX entry point;
* NVRTC through ctypes, the way CuPy's RawModule compiles them (name
  expressions, lowered names), when an NVRTC library can be found: the system
  one, or the ``nvidia-cuda-nvrtc-cu12`` wheel (in the ``test`` extra: it
  brings libnvrtc without a GPU, so this runs in CI). Skipped where there is
  none, unless ``MINIGAN_REQUIRE_NVRTC=1`` (set by .ci/run) makes that a failure;
* the kernel table in cuda.py names every ``__global__`` template of every
  kernel file, and nothing else (no GPU or compiler needed).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from minigan.backend import cuda

NVCC = shutil.which("nvcc")
ARCHS = ["80", "90"]  # Ampere (a generic target) and Hopper
FILES = sorted(cuda.KERNELS)
KERNEL_FOLDER = Path(cuda.kernel_dir())


def instances(filename):
    """(kernel, C type, name expression) for every instantiation cuda.py asks for."""
    return [(k, t, cuda.name_expression(k, t)) for k in cuda.KERNELS[filename] for t in cuda.CTYPES.values()]


def mangled_prefix(kernel, ctype):
    """Itanium mangling of ``kernel<ctype>(...)``: _Z<len><name>I<f|d>E..."""
    return f"_Z{len(kernel)}{kernel}I{ctype[0]}E"


def nvcc_ptx(tmp_path, name, source, arch):
    """Compile ``source`` with nvcc -ptx; returns (returncode, stderr, ptx text)."""
    src, ptx = tmp_path / f"{name}.cu", tmp_path / f"{name}.sm_{arch}.ptx"
    src.write_text(source)
    run = subprocess.run([NVCC, "-ptx", f"-arch=sm_{arch}", "-Werror", "all-warnings", "-o", str(ptx), str(src)],
                         capture_output=True, text=True, timeout=120)
    return run.returncode, run.stderr, ptx.read_text() if run.returncode == 0 else ""


def with_instances(filename):
    """cuda.py's source plus a global that takes every instantiation's address (forces nvcc to emit it)."""
    refs = ", ".join(f"(void*)&{expr}" for _, _, expr in instances(filename))
    return cuda.kernel_source(filename) + f"\nvoid* minigan_instances[] = {{{refs}}};\n"


needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", FILES)
def test_nvcc_compiles_float_and_double(tmp_path, filename, arch):
    rc, err, ptx = nvcc_ptx(tmp_path, Path(filename).stem, with_instances(filename), arch)
    assert rc == 0, f"nvcc -ptx -arch=sm_{arch} failed on kernels/{filename}:\n{err}"
    entries = re.findall(r"\.entry\s+(\w+)", ptx)
    for kernel, ctype, expr in instances(filename):
        assert any(e.startswith(mangled_prefix(kernel, ctype)) for e in entries), f"{expr} missing from the PTX"


@needs_nvcc
def test_nvcc_check_fails_on_a_syntax_error(tmp_path):
    """The harness above really fails a broken kernel (it does not just pass everything)."""
    source = with_instances("activations.cu")
    broken = source.replace("return v <= T(0) ? T(0) : v;", "return v <= T(0) ? T(0) : v", 1)  # drop a ';'
    assert broken != source, "the line this test breaks is gone: update the test"
    rc, err, _ = nvcc_ptx(tmp_path, "broken", broken, ARCHS[0])
    assert rc != 0 and "error" in err


# ---------------------------------------------------------------------------
# NVRTC, as CuPy uses it
# ---------------------------------------------------------------------------
def _nvrtc_library():
    candidates = [ctypes.util.find_library("nvrtc"), "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"]
    spec = importlib.util.find_spec("nvidia")  # the nvidia-cuda-nvrtc wheel (a CuPy dependency)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidates += sorted(str(p) for p in Path(folder).glob("*/lib/libnvrtc.so*") if "builtins" not in p.name)
    for name in filter(None, candidates):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


NVRTC = _nvrtc_library()


def nvrtc_compile(source, name_expressions, options):
    """nvrtcCompileProgram with name expressions; returns (ok, log, {expression: lowered name}, ptx)."""
    lib, prog = NVRTC, ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"kernel.cu", 0, None, None) == 0
    try:
        for expr in name_expressions:
            assert lib.nvrtcAddNameExpression(prog, expr.encode()) == 0
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        ok = lib.nvrtcCompileProgram(prog, len(options), opts) == 0
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        if not ok:
            return False, log.value.decode(), {}, ""
        lowered = {}
        for expr in name_expressions:
            out = ctypes.c_char_p()
            assert lib.nvrtcGetLoweredName(prog, expr.encode(), ctypes.byref(out)) == 0
            lowered[expr] = out.value.decode()
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(prog, ptx)
        return True, log.value.decode(), lowered, ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def test_nvrtc_is_found_where_it_is_required():
    if NVRTC is None and os.environ.get("MINIGAN_REQUIRE_NVRTC") == "1":
        pytest.fail("MINIGAN_REQUIRE_NVRTC=1 but no libnvrtc was found: pip install nvidia-cuda-nvrtc-cu12 "
                    "(it is in minigan's test extra).")


@pytest.mark.skipif(NVRTC is None, reason="no NVRTC library (libnvrtc) found")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", FILES)
def test_nvrtc_compiles_name_expressions(filename, arch):
    for ctype in cuda.CTYPES.values():  # one RawModule per (file, dtype), as cuda._module builds them
        exprs = [expr for _, t, expr in instances(filename) if t == ctype]
        # -ftz=true is what CuPy adds to every compile
        ok, log, lowered, ptx = nvrtc_compile(cuda.kernel_source(filename), exprs,
                                              [f"--gpu-architecture=compute_{arch}", "-ftz=true"])
        assert ok, f"NVRTC failed on kernels/{filename} ({ctype}):\n{log}"
        assert not log.strip(), f"NVRTC warnings on kernels/{filename}:\n{log}"
        for expr, name in lowered.items():
            assert re.search(rf"\.entry\s+{re.escape(name)}\b", ptx), f"{expr} ({name}) missing from the PTX"


# ---------------------------------------------------------------------------
# the kernel table matches the files
# ---------------------------------------------------------------------------
def test_kernel_table_names_every_kernel_template():
    on_disk = sorted(p.name for p in KERNEL_FOLDER.glob("*.cu"))
    assert FILES == on_disk, "cuda.KERNELS and kernels/*.cu list different files"
    for filename in FILES:
        text = (KERNEL_FOLDER / filename).read_text()
        declared = re.findall(r"template\s*<typename T>\s*__global__\s+void\s+(\w+)", text)
        assert sorted(declared) == sorted(cuda.KERNELS[filename]), filename
        assert cuda.kernel_source(filename).count("MINIGAN_COMMON_CUH") >= 1  # the header is pasted in
    header = (KERNEL_FOLDER / cuda.HEADER).read_text()
    assert re.search(r"#define MINIGAN_BLOCK (\d+)", header).group(1) == str(cuda.BLOCK)


def test_kernel_files_open_with_a_teaching_comment():
    for filename in FILES:
        text = (KERNEL_FOLDER / filename).read_text()
        head = text.split("#include", 1)[0]
        assert head.startswith(f"// {filename} -- "), filename
        for topic in ("Layout", "Launch", "CPU twin", "Test", "Benchmark"):
            assert topic in head, f"kernels/{filename}'s opening comment does not cover {topic!r}"
