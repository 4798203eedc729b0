"""BEGAN (Berthelot et al. 2017, "BEGAN: Boundary Equilibrium Generative
Adversarial Networks") in the layout of carpedm20/BEGAN-tensorflow, as the
seed's Keras BEGAN on faces used it.

D is an autoencoder and its loss is how badly it reconstructs:
L(v) = mean |v - D(v)|, L_D = L(x) - k_t L(G(z)), L_G = L(G(z)), with k_t
steered towards the equilibrium gamma = L(G(z)) / L(x) (see the trainer).
G has the architecture of D's decoder, with its own weights.

Every convolution is 3x3 with ELU; the hidden size h = 64 is both z's size
and the autoencoder's bottleneck; n = 64 filters (``width``). There is no
tanh on the output, as in the paper. The stride-2 downsampling convolutions
use padding 1 (TensorFlow's "SAME" pads 0 before and 1 after: the same
layer class), and the base is 8x8 at every image size.
"""
from __future__ import annotations

from minigan.models.base import GAN, stride2_layers
from minigan.nn import ELU, Conv2d, Flatten, Linear, Module, Reshape, Sequential, UpsampleNearest, glorot_init


def _conv_elu(c_in, c_out, stride=1):
    return [Conv2d(c_in, c_out, 3, stride, padding=1), ELU()]


def began_decoder(h: int, n: int, image_size: int) -> Sequential:
    """The decoder, shared by G and D. At 64x64, h = n = 64::

        (N, 64) -> Linear, reshape               (N, 64, 8, 8)
        [Conv 3x3, ELU, Conv 3x3, ELU, up x2]    (N, 64, 16, 16)
        [same]                                   (N, 64, 32, 32)
        [same]                                   (N, 64, 64, 64)
        Conv 3x3, ELU, Conv 3x3, ELU             (N, 64, 64, 64)
        Conv 3x3                                 (N, 3, 64, 64)
    """
    scales = stride2_layers("began", image_size, base=8) + 1  # 8, 16, 32, 64
    layers = [Linear(h, n * 8 * 8), Reshape(n, 8, 8)]
    for scale in range(scales):
        layers += _conv_elu(n, n) + _conv_elu(n, n)
        if scale < scales - 1:
            layers.append(UpsampleNearest(2))
    layers.append(Conv2d(n, 3, 3, padding=1))
    return Sequential(*layers)


def began_encoder(h: int, n: int, image_size: int) -> Sequential:
    """D's encoder; the channels grow by n at each scale. At 64x64, h = n = 64::

        x                                        (N, 3, 64, 64)
        Conv 3x3, ELU                            (N, 64, 64, 64)
        [Conv, ELU, Conv, ELU, Conv s2, ELU]     (N, 64, 32, 32)
        [same, 128 filters]                      (N, 128, 16, 16)
        [same, 192 filters]                      (N, 192, 8, 8)
        Conv 3x3, ELU, Conv 3x3, ELU             (N, 256, 8, 8)
        flatten, Linear                          (N, 64)
    """
    scales = stride2_layers("began", image_size, base=8) + 1  # 64, 32, 16, 8
    layers, c_in = _conv_elu(3, n), n
    for scale in range(scales):
        c = n * (scale + 1)
        layers += _conv_elu(c_in, c) + _conv_elu(c, c)
        if scale < scales - 1:
            layers += _conv_elu(c, c, stride=2)  # downsample
        c_in = c
    layers += [Flatten(), Linear(c * 8 * 8, h)]
    return Sequential(*layers)


class BEGANGenerator(Module):
    """z (N, h) -> the decoder -> (N, 3, S, S)."""

    def __init__(self, z_dim: int = 64, image_size: int = 64, width: int = 64):
        self.decoder = began_decoder(z_dim, width, image_size)

    def forward(self, z):
        return self.decoder(z)


class BEGANDiscriminator(Module):
    """The autoencoder: x (N, 3, S, S) -> encoder (N, h) -> decoder -> reconstruction (N, 3, S, S)."""

    def __init__(self, z_dim: int = 64, image_size: int = 64, width: int = 64):
        self.encoder = began_encoder(z_dim, width, image_size)
        self.decoder = began_decoder(z_dim, width, image_size)

    def encode(self, x):
        return self.encoder(x)  # (N, h)

    def forward(self, x):
        return self.decoder(self.encoder(x))


RECIPE = {"lr_d": 1e-4, "lr_g": 1e-4, "betas": (0.5, 0.999), "batch": 16, "gamma": 0.5, "lambda_k": 0.001}


def began(image_size: int = 64, z_dim: int = 64, width: int = 64, num_classes: int = 0,
          minibatch_discrimination: bool = False, discriminator: bool = True) -> GAN:
    """The original BEGAN (Glorot-uniform init, as its Keras code): z ~ U[-1, 1], Adam 1e-4 betas (0.5, 0.999),
    batch 16, gamma 0.5, lambda_k 0.001. G has no tanh: samples are clipped to [-1, 1]."""
    if num_classes or minibatch_discrimination:
        raise ValueError("began's discriminator is an autoencoder with no logits: it takes neither "
                         "num_classes nor minibatch_discrimination.")
    G = glorot_init(BEGANGenerator(z_dim, image_size, width))
    D = glorot_init(BEGANDiscriminator(z_dim, image_size, width)) if discriminator else None
    return GAN("began", G, D, z_dim=z_dim, z_dist="uniform", image_size=image_size, loss="began",
               defaults=dict(RECIPE), tanh_output=False)
