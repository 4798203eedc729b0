"""DCGAN (Radford et al. 2016, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks") in the layout of
carpedm20/DCGAN-tensorflow, which both DCGAN seeds build on:

* ``dcgan``: the seed logo generator. 64x64 from a 4x4 base, z of 100 numbers
  uniform in [-1, 1], BCE, Adam lr 2e-4 beta1 0.5, batch 64.
* ``dcgan128``: the seed Simpsons faces. 128x128 from an 8x8 base with a
  generator twice as wide (1024 channels at the base), D lr 4e-5 and G lr
  4e-4.

Both come from one pair of classes, parametrised by the base size and the
generator's width. Notes on the layout:

* 5x5 stride-2 convolutions use padding 2 (and output_padding 1 when
  transposed), PyTorch's way of halving (doubling) the size; TensorFlow's
  "SAME" pads 1 before and 2 after instead: the same layer class.
* a convolution (or the projection) followed by batch norm has no bias: the
  batch mean cancels it and batch norm's shift plays its part.
"""
from __future__ import annotations

import minigan.ops as F
from minigan.models.base import GAN, Discriminator, stride2_layers
from minigan.nn import (BatchNorm2d, Conv2d, ConvTranspose2d, LeakyReLU, Linear, Module, ReLU, Sequential,
                        normal_init)


class DCGANGenerator(Module):
    """At 64x64 (``dcgan``, width 64)::

        z (N, 100) -> Linear, reshape            (N, 512, 4, 4)
        BN, ReLU
        ConvT 5x5 s2 p2 op1, BN, ReLU            (N, 256, 8, 8)
        ConvT 5x5 s2 p2 op1, BN, ReLU            (N, 128, 16, 16)
        ConvT 5x5 s2 p2 op1, BN, ReLU            (N, 64, 32, 32)
        ConvT 5x5 s2 p2 op1, tanh                (N, 3, 64, 64)

    ``dcgan128`` (base 8, last hidden layer 128 wide): Linear to (N, 1024, 8, 8)
    -> 512@16 -> 256@32 -> 128@64 -> 3@128. Other sizes add or remove
    stride-2 layers, the channels doubling towards the base.
    """

    def __init__(self, z_dim: int, image_size: int, base: int, last_hidden: int, name: str = "dcgan"):
        layers = stride2_layers(name, image_size, base)
        channels = [last_hidden * 2 ** (layers - 1 - i) for i in range(layers)]  # [512, 256, 128, 64]
        self.base_shape = (channels[0], base, base)
        self.project = Linear(z_dim, channels[0] * base * base, bias=False)
        self.project_norm = BatchNorm2d(channels[0])
        self.blocks = [Sequential(ConvTranspose2d(c_in, c_out, 5, 2, 2, output_padding=1, bias=False),
                                  BatchNorm2d(c_out), ReLU())
                       for c_in, c_out in zip(channels, channels[1:])]
        self.to_rgb = ConvTranspose2d(channels[-1], 3, 5, 2, 2, output_padding=1)

    def forward(self, z):
        h = F.reshape(self.project(z), (z.shape[0],) + self.base_shape)  # (N, C, B, B)
        h = F.relu(self.project_norm(h))
        for block in self.blocks:
            h = block(h)
        return F.tanh(self.to_rgb(h))  # (N, 3, S, S)


class DCGANDiscriminator(Discriminator):
    """At 64x64 (``dcgan``, width 64)::

        x                                        (N, 3, 64, 64)
        Conv 5x5 s2 p2, LeakyReLU(0.2)           (N, 64, 32, 32)
        Conv 5x5 s2 p2, BN, LeakyReLU(0.2)       (N, 128, 16, 16)
        Conv 5x5 s2 p2, BN, LeakyReLU(0.2)       (N, 256, 8, 8)
        Conv 5x5 s2 p2, BN, LeakyReLU(0.2)       (N, 512, 4, 4)
        flatten -> feats                         (N, 8192)
        Linear                                   (N, 1) or (N, K + 1)

    ``dcgan128``: 64@64 -> 128@32 -> 256@16 -> 512@8 -> feats (N, 32768).
    """

    def __init__(self, image_size: int, base: int, width: int, name: str = "dcgan", **tricks):
        layers = stride2_layers(name, image_size, base)
        channels = [width * 2 ** i for i in range(layers)]  # [64, 128, 256, 512]
        blocks = [Sequential(Conv2d(3, channels[0], 5, 2, 2), LeakyReLU(0.2))]  # no batch norm on the input
        blocks += [Sequential(Conv2d(c_in, c_out, 5, 2, 2, bias=False), BatchNorm2d(c_out), LeakyReLU(0.2))
                   for c_in, c_out in zip(channels, channels[1:])]
        super().__init__(Sequential(*blocks), channels[-1] * base * base, **tricks)


RECIPE = {"lr_d": 2e-4, "lr_g": 2e-4, "betas": (0.5, 0.999), "batch": 64}  # the logo generator's
RECIPE_128 = {"lr_d": 4e-5, "lr_g": 4e-4, "betas": (0.5, 0.999), "batch": 64}  # the Simpsons faces'


def _dcgan(name, *, base, g_scale, defaults, image_size, z_dim=100, width=64, discriminator=True,
           **tricks) -> GAN:
    """The builder both originals share: G's last hidden layer is ``g_scale * width`` wide; N(0, 0.02) init."""
    G = normal_init(DCGANGenerator(z_dim, image_size, base, g_scale * width, name=name))
    D = normal_init(DCGANDiscriminator(image_size, base, width, name=name, **tricks)) if discriminator else None
    return GAN(name, G, D, z_dim=z_dim, z_dist="uniform", image_size=image_size, loss="bce",
               defaults=dict(defaults), num_classes=tricks.get("num_classes", 0))


def dcgan(image_size: int = 64, **options) -> GAN:
    """The original logo generator (64x64)."""
    return _dcgan("dcgan", base=4, g_scale=1, image_size=image_size, defaults=RECIPE, **options)


def dcgan128(image_size: int = 128, **options) -> GAN:
    """The original Simpsons faces (128x128)."""
    return _dcgan("dcgan128", base=8, g_scale=2, image_size=image_size, defaults=RECIPE_128, **options)
