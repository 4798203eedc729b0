"""The FastGAN model's pieces are compositions of checked Functions (slices, sigmoid, mul, mean over a reshape,
upsampling, conv); their composed gradients against finite differences in float64 all the same."""
import numpy as np

from minigan import manual_seed
from minigan.models import build
from minigan.models.fastgan import avg_pool, glu, quadrant
from tests.gradcheck.helpers import check, tensor
from tests.gradcheck.test_modules import _to64


def test_glu_gradient(device):
    check(glu, tensor((2, 4, 3, 3), device))


def test_avg_pool_and_quadrant_gradients(device):
    check(lambda x: avg_pool(x, 2), tensor((2, 3, 4, 4), device, 1))
    check(lambda x: quadrant(x, 2), tensor((1, 2, 4, 6), device, 2))


def test_skip_excitation_gradient(device):
    manual_seed(0)
    G = _to64(build("fastgan", image_size=32, width=8, discriminator=False).G, device)
    sle = G.sles[0]
    low, high = tensor((2, G.channels[0], 4, 4), device, 3), tensor((2, G.channels[2], 16, 16), device, 4)
    check(lambda low, high, w: sle(low, high), low, high, sle.squeeze.weight, mode="directional")


def test_discriminator_reconstruction_gradient(device):
    manual_seed(1)
    D = _to64(build("fastgan", image_size=32, width=4).D, device).eval()  # eval: fixed BN and SN statistics
    x = tensor((2, 3, 32, 32), device, 5)
    w = D.decode_part.to_rgb.weight
    check(lambda x, w: D(x, reconstruct=1)[2], x, w, mode="directional")
    check(lambda x: D(x, reconstruct=3)[1], x, mode="directional")
