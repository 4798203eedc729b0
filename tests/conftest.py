"""Shared fixtures: the device parametrization.

Tests run on the cpu device unless they ask for another: the default device
is pinned to cpu here, whatever the machine has (a GPU must not turn the
CPU-only tests -- bit-exact resume, numba threads -- into GPU tests), and
MINIGAN_DEVICE is taken out of the environment so that the CLI runs the tests
start in subprocesses stay on cpu too.

* ``device``: cpu, cuda-emu (the CUDA path on the CPU emulator: runs
  everywhere) and cuda (skipped where no GPU is present);
* ``kernel_device``: the devices that run kernels/*.cu, cuda-emu and cuda.
  ``MINIGAN_DEVICE=cuda-emu`` (or ``cuda``) narrows it to that one device, so
  ``MINIGAN_DEVICE=cuda-emu pytest tests/kernels/test_parity.py`` runs every
  CUDA case on the emulator with nothing skipped.
"""
import os
import shutil

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp: its idle threads must not spin

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minigan import backend  # noqa: E402

ASKED = os.environ.pop("MINIGAN_DEVICE", "").strip().lower()
backend.set_default_device("cpu")

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not backend.cuda_available(),
                                                     reason="no CUDA GPU (CuPy) on this machine"))
EMU = backend.EMU
DEVICES = ["cpu", EMU, CUDA]
KERNEL_DEVICES = {EMU: [EMU], "cuda": [CUDA]}.get(ASKED, [EMU, CUDA])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(params=KERNEL_DEVICES)
def kernel_device(request):
    return request.param


# a planted bug for the tests that must catch one: im2col reads the padding as 1 instead of 0
PADDING_READ_AS_ONE = ("im2col.cu", "? __ldg(plane + (index_t)y * W + xx) : T(0);",
                       "? __ldg(plane + (index_t)y * W + xx) : T(1);")


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """plant(file, old, new): a copy of kernels/ with one edit, in use (MINIGAN_KERNEL_DIR) until the test ends.

    kernels/ itself is never touched.
    """
    from minigan.backend import cuda

    folder = tmp_path / "kernels"
    shutil.copytree(cuda.packaged_kernel_dir(), folder)

    def plant(filename, old, new):
        text = (folder / filename).read_text()
        assert text.count(old) == 1, f"the line this test plants a bug in is gone from {filename}: update the test"
        (folder / filename).write_text(text.replace(old, new))
        monkeypatch.setenv("MINIGAN_KERNEL_DIR", str(folder))
        cuda.clear_caches()

    yield plant
    monkeypatch.delenv("MINIGAN_KERNEL_DIR", raising=False)
    cuda.clear_caches()


def has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


requires_torch = pytest.mark.skipif(not has_torch(), reason="PyTorch is not installed")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
