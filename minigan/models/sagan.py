"""SAGAN (Zhang et al. 2019, "Self-Attention Generative Adversarial Networks")
as the seed's "mel icon" generator used it: the architecture of
heykeetae/Self-Attention-GAN (``sagan_models.py``), z of 20 numbers, hinge
loss, Adam betas (0, 0.9) with D lr 4e-4 and G lr 1e-4 (the two time-scale
rule), batch 5.

Differences from that code, none of which changes the function computed:

* a convolution followed by batch norm has no bias (the batch mean cancels
  it; batch norm's own shift is the bias), so Adam does not push weights the
  loss cannot see;
* D's last layer, a 4x4 valid convolution over a 4x4 map, is written as the
  Linear layer it is (flatten, then the same weights reshaped), so minibatch
  discrimination can slot in before it;
* the self-attention 1x1 convolutions are spectrally normalised too (the
  paper normalises every layer; heykeetae's code leaves them plain).
"""
from __future__ import annotations

import minigan.ops as F
from minigan.models.base import GAN, Discriminator, stride2_layers
from minigan.nn import (BatchNorm2d, Conv2d, ConvTranspose2d, LeakyReLU, Module, ReLU, SelfAttention,
                        Sequential, SpectralNorm, normal_init)


def _attention_after(i: int, count: int) -> bool:
    """Self-attention follows the last two of ``count`` stride-2 layers (S/4 and S/2 in G)."""
    return i >= count - 2


class SAGANGenerator(Module):
    """At 64x64 and width 64 (the seed)::

        z (N, 20) -> reshape                     (N, 20, 1, 1)
        SN(ConvT 4x4 s1), BN, ReLU               (N, 512, 4, 4)
        SN(ConvT 4x4 s2 p1), BN, ReLU            (N, 256, 8, 8)
        SN(ConvT 4x4 s2 p1), BN, ReLU            (N, 128, 16, 16)
        SelfAttention(128)                       (N, 128, 16, 16)
        SN(ConvT 4x4 s2 p1), BN, ReLU            (N, 64, 32, 32)
        SelfAttention(64)                        (N, 64, 32, 32)
        ConvT 4x4 s2 p1, tanh                    (N, 3, 64, 64)

    32x32 has one stride-2 hidden layer fewer, 128x128 one more (the channels
    double towards the 4x4 base, ``width`` being the last hidden layer's).
    """

    def __init__(self, z_dim: int = 20, image_size: int = 64, width: int = 64):
        hidden = stride2_layers("sagan", image_size, base=4) - 1  # stride-2 ConvTs before the last
        channels = [width * 2 ** (hidden - i) for i in range(hidden + 1)]  # [512, 256, 128, 64]
        self.blocks = [self._block(z_dim, channels[0], stride=1, padding=0)]  # 1x1 -> 4x4
        for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
            self.blocks.append(self._block(c_in, c_out, stride=2, padding=1))
            if _attention_after(i, hidden):
                self.blocks.append(SelfAttention(c_out, spectral=True))
        self.to_rgb = ConvTranspose2d(channels[-1], 3, 4, stride=2, padding=1)

    @staticmethod
    def _block(c_in, c_out, stride, padding):
        return Sequential(SpectralNorm(ConvTranspose2d(c_in, c_out, 4, stride, padding, bias=False)),
                          BatchNorm2d(c_out), ReLU())

    def forward(self, z):
        h = F.reshape(z, (z.shape[0], z.shape[1], 1, 1))  # (N, Z, 1, 1)
        for block in self.blocks:
            h = block(h)
        return F.tanh(self.to_rgb(h))  # (N, 3, S, S)


class SAGANDiscriminator(Discriminator):
    """At 64x64 and width 64 (the seed)::

        x                                        (N, 3, 64, 64)
        SN(Conv 4x4 s2 p1), LeakyReLU(0.1)       (N, 64, 32, 32)
        SN(Conv 4x4 s2 p1), LeakyReLU(0.1)       (N, 128, 16, 16)
        SN(Conv 4x4 s2 p1), LeakyReLU(0.1)       (N, 256, 8, 8)
        SelfAttention(256)                       (N, 256, 8, 8)
        SN(Conv 4x4 s2 p1), LeakyReLU(0.1)       (N, 512, 4, 4)
        SelfAttention(512)                       (N, 512, 4, 4)
        flatten -> feats                         (N, 8192)
        Linear (the seed's Conv 4x4, valid)      (N, 1) or (N, K + 1)

    Mirrors the generator: one stride-2 layer per halving down to 4x4.
    """

    def __init__(self, image_size: int = 64, width: int = 64, **tricks):
        layers = stride2_layers("sagan", image_size, base=4)
        channels = [width * 2 ** i for i in range(layers)]  # [64, 128, 256, 512]
        blocks = []
        for i, (c_in, c_out) in enumerate(zip([3] + channels, channels)):
            blocks.append(Sequential(SpectralNorm(Conv2d(c_in, c_out, 4, stride=2, padding=1)), LeakyReLU(0.1)))
            if _attention_after(i, layers):
                blocks.append(SelfAttention(c_out, spectral=True))
        super().__init__(Sequential(*blocks), channels[-1] * 4 * 4, **tricks)


RECIPE = {"lr_d": 4e-4, "lr_g": 1e-4, "betas": (0.0, 0.9), "batch": 5}  # the original project's


def sagan(image_size: int = 64, z_dim: int = 20, width: int = 64, discriminator: bool = True, **tricks) -> GAN:
    """The original SAGAN: z ~ N(0, I), hinge loss, the two time-scale Adam recipe; N(0, 0.02) init."""
    G = normal_init(SAGANGenerator(z_dim, image_size, width))
    D = normal_init(SAGANDiscriminator(image_size, width, **tricks)) if discriminator else None
    return GAN("sagan", G, D, z_dim=z_dim, z_dist="normal", image_size=image_size, loss="hinge",
               defaults=dict(RECIPE), num_classes=tricks.get("num_classes", 0))
