"""A few training steps of each model on cuda-emu give the cpu losses (float32 tolerance).

The models run through the whole engine as they would on a GPU: the CuPy
stand-in's arrays, cuda.py's launchers and kernels/*.cu on the emulator.
The steps are the trainer's (a D step on real and detached fake images, then
a G step, Adam on each; minigan.check.train_step), driven by hand.
"""
import numpy as np
import pytest

from minigan import backend
from minigan.check import MODELS, make_optimizers, small_gan, step_inputs, train_step

STEPS = 3


def losses(name, device):
    gan = small_gan(name, device)
    optimizers = make_optimizers(gan)
    x, z = step_inputs(gan, 2, device)
    history = [train_step(gan, optimizers, x, z) for _ in range(STEPS)]
    return np.array(history), {n: backend.to_numpy(p.data) for n, p in gan.G.named_parameters()}


@pytest.mark.parametrize("name", MODELS)
def test_training_steps_on_cuda_emu_match_cpu(name):
    cpu_losses, cpu_g = losses(name, "cpu")
    emu_losses, emu_g = losses(name, backend.EMU)
    assert np.all(np.isfinite(cpu_losses))
    np.testing.assert_allclose(emu_losses, cpu_losses, rtol=1e-4, atol=1e-5)
    assert cpu_g.keys() == emu_g.keys()
    for key in cpu_g:  # G after its steps: the same weights
        np.testing.assert_allclose(emu_g[key], cpu_g[key], rtol=1e-3, atol=1e-5, err_msg=key)
    assert not np.allclose(cpu_losses[0], cpu_losses[-1])  # the steps did something
