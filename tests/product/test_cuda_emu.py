"""The product on the cuda-emu device: what a first GPU run would hit, found without a GPU.

* The `.data` bugs: ``getattr(x, "data", x)`` unwrapped a raw array into its
  buffer -- a memoryview on NumPy (which np.isscalar accepts and turns back
  into the array), a MemoryPointer on CuPy -- so every DCGAN step failed on
  a GPU (bce_with_logits with array targets, cross_entropy with array labels)
  and so did writing device images (imageio.to_uint8). Each case runs on
  cuda-emu against cpu.
* `minigan train --device cuda-emu` end to end, and `minigan check` on cpu
  and cuda-emu (and the same command's failure when a library is missing).
"""
from __future__ import annotations

import numpy as np
import pytest

import minigan.ops as F
from minigan import Tensor, backend, checkpoint, imageio
from minigan.cli import main
from tests.conftest import PADDING_READ_AS_ONE

EMU = backend.EMU
TINY = ["--image-size", "32", "--width", "4", "--batch", "2", "--iters", "2", "--sample-every", "2",
        "--checkpoint-every", "2", "--quiet"]


def on(device, a):
    return backend.to_device(np.asarray(a), device)


def both(fn):
    """fn(device) on cpu and on cuda-emu, as NumPy."""
    return [backend.to_numpy(fn(d)) for d in ("cpu", EMU)]


@pytest.mark.parametrize("targets", ["array", "tensor", "scalar"])
def test_bce_with_logits_takes_device_targets(targets):
    logits = np.linspace(-3, 3, 10).reshape(5, 2)
    labels = (np.arange(10).reshape(5, 2) % 2).astype(np.float64)

    def loss(device):
        t = {"array": lambda: on(device, labels), "tensor": lambda: Tensor(on(device, labels)),
             "scalar": lambda: 1.0}[targets]()
        return F.bce_with_logits(Tensor(on(device, logits)), t).data

    cpu_loss, emu_loss = both(loss)
    np.testing.assert_allclose(emu_loss, cpu_loss, rtol=1e-12)


@pytest.mark.parametrize("labels_as", ["array", "tensor", "list"])
def test_cross_entropy_takes_device_labels(labels_as):
    logits = np.random.default_rng(0).standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2])

    def loss(device):
        y = {"array": lambda: on(device, labels), "tensor": lambda: Tensor(on(device, labels)),
             "list": lambda: labels.tolist()}[labels_as]()
        return F.cross_entropy(Tensor(on(device, logits)), y).data

    cpu_loss, emu_loss = both(loss)
    np.testing.assert_allclose(emu_loss, cpu_loss, rtol=1e-12)


@pytest.mark.parametrize("wrap", [lambda a: a, Tensor], ids=["array", "tensor"])
def test_to_uint8_takes_device_images(wrap):
    images = np.random.default_rng(1).uniform(-1, 1, (2, 3, 4, 5))
    cpu_u8, emu_u8 = (imageio.to_uint8(wrap(on(d, images))) for d in ("cpu", EMU))
    assert emu_u8.dtype == np.uint8 and emu_u8.shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(emu_u8, cpu_u8)


def test_train_on_cuda_emu_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "dcgan", "--device", EMU, "--out", str(out), *TINY]) == 0
    assert (out / checkpoint.FILENAME).is_file() and (out / "samples" / "step_000002.png").is_file()


# ---------------------------------------------------------------------------
# minigan check
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cpu", EMU])
def test_check_passes(device, capsys):
    assert main(["check", "--device", device]) == 0
    out = capsys.readouterr().out
    for model in ("sagan", "dcgan", "began"):
        assert f"train step {model}" in out
    assert "FAIL" not in out and ("kernel im2col float64" in out) == (device == EMU)


def test_check_fails_on_a_kernel_mismatch(planted, capsys):
    planted(*PADDING_READ_AS_ONE)
    assert main(["check", "--device", EMU]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if "FAIL" in line]
    assert failed and all(line.startswith("kernel im2col") for line in failed), failed


def test_check_names_the_pip_package_of_a_missing_cuda_library(monkeypatch, capsys):
    from minigan.backend import cuda, emu_kernels

    def no_nvrtc(*args, **kwargs):
        raise OSError("libnvrtc.so.12: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(emu_kernels, "build", no_nvrtc)
    cuda.clear_caches()
    try:
        assert main(["check", "--device", EMU]) == 2
    finally:
        cuda.clear_caches()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minigan: error: ") and "pip install nvidia-cuda-nvrtc-cu12" in err[0]


def test_check_on_cuda_without_a_gpu_is_one_line(capsys):
    if backend.cuda_available():
        pytest.skip("a GPU is present")
    assert main(["check", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minigan: error: ") and "cuda" in err[0]
