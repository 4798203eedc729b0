"""A FastGAN-style model (Liu et al. 2021, "Towards Faster and Stabilized GAN
Training for High-fidelity Few-shot Image Synthesis"), scaled to 32-128 pixels
and written from the paper's description on minigan's existing ops.

The two ideas the paper shows matter on ~100 images, both kept:

* **skip-layer excitation (SLE)** in G: a low-resolution feature map gates,
  channel by channel, a map four times finer:
  ``high * sigmoid(conv1x1(swish(conv4x4_valid(avgpool_to_4x4(low)))))``;
* a **self-supervised D**: small decoders must reconstruct what D was shown
  of a *real* image from D's own 8x8 features (the whole image, at 32x32 or
  less) and from a random quadrant of its 16x16 features (that quadrant of
  the image). D must keep a description of the image rather than memorise
  the few it is shown. The paper compares reconstructions with a perceptual
  (LPIPS) loss on pretrained VGG features; minigan downloads nothing, so the
  loss is the pixel L1 distance (:class:`minigan.train.losses.FastGANLoss`).

Differences from the paper, for a CPU-sized model: one conv per up-block (the
paper's up-blocks at high resolutions have two and noise injection), a plain
strided-conv D (no two-path down-blocks), SLE from 4x below (the paper gates
from 16x below, which a 32x32 model does not have), logits from a 4x4 map
through a Linear layer. GLU (``a * sigmoid(b)``, the two halves of the
channels) follows each up-block's batch norm, as in the paper.

Shapes at 32x32, width 32::

    G: z (N, 64) -> ConvT 4x4 (from 1x1), BN, GLU      (N, 128, 4, 4)   feat_4
       up, conv 3x3, BN, GLU                            (N, 64, 8, 8)    feat_8
       up, conv 3x3, BN, GLU; * SLE(feat_4)             (N, 32, 16, 16)
       up, conv 3x3, BN, GLU; * SLE(feat_8)             (N, 16, 32, 32)
       conv 3x3, tanh                                   (N, 3, 32, 32)
    D: SN conv 4x4 s2, LeakyReLU(0.2)                   (N, 32, 16, 16)  feat_16
       SN conv 4x4 s2, BN, LeakyReLU(0.2)               (N, 64, 8, 8)    feat_8
       SN conv 4x4 s2, BN, LeakyReLU(0.2)               (N, 128, 4, 4)
       flatten, Linear                                  (N, 1)
       decoders: feat_8 -> (N, 3, 16, 16); a quadrant of feat_16 -> (N, 3, 16, 16)
"""
from __future__ import annotations

import minigan.ops as F
from minigan.models.base import GAN, stride2_layers
from minigan.nn import (BatchNorm2d, Conv2d, ConvTranspose2d, LeakyReLU, Linear, Module, Sequential,
                        SpectralNorm, UpsampleNearest, normal_init)

RECON_SIZE = 32  # the decoders reconstruct at most 32x32
QUADRANTS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) halves of an image or a feature map


def glu(x):
    """Gated linear unit over channels: x (N, 2C, H, W) -> a * sigmoid(b), (N, C, H, W)."""
    c = x.shape[1] // 2
    return x[:, :c] * F.sigmoid(x[:, c:])


def swish(x):
    return x * F.sigmoid(x)


def avg_pool(x, size: int):
    """Mean over non-overlapping windows: x (N, C, H, W) -> (N, C, size, size); H a multiple of size."""
    n, c, h, w = x.shape
    k = h // size
    if k == 1:
        return x
    return F.mean(F.reshape(x, (n, c, size, k, size, k)), axis=(3, 5))


def quadrant(x, q: int):
    """The q-th quadrant (QUADRANTS order) of x (N, C, H, W): (N, C, H/2, W/2)."""
    h, w = x.shape[2] // 2, x.shape[3] // 2
    row, col = QUADRANTS[q]
    return x[:, :, row * h:(row + 1) * h, col * w:(col + 1) * w]


class GLUBlock(Module):
    """conv (2 * c_out channels), BN, GLU; ``up``: nearest-neighbour upsampling first."""

    def __init__(self, c_in: int, c_out: int, up: bool = True):
        self.up = up
        self.conv = Conv2d(c_in, 2 * c_out, 3, padding=1, bias=False)
        self.bn = BatchNorm2d(2 * c_out)

    def forward(self, x):
        if self.up:
            x = F.upsample_nearest(x, 2)
        return glu(self.bn(self.conv(x)))


class SkipExcitation(Module):
    """SLE: channel gates for a fine map from a coarse one. low (N, C_low, h, h), h >= 4 -> (N, C_high, 1, 1)."""

    def __init__(self, c_low: int, c_high: int):
        self.squeeze = Conv2d(c_low, c_high, 4, bias=False)  # 4x4 valid on the 4x4 pooled map: (N, C_high, 1, 1)
        self.excite = Conv2d(c_high, c_high, 1, bias=False)

    def forward(self, low, high):
        gate = F.sigmoid(self.excite(swish(self.squeeze(avg_pool(low, 4)))))
        return high * gate


def _g_channels(levels: int, width: int) -> list[int]:
    """Channels at 4, 8, ..., S: halving from 4 * width at 4x4, never below 8."""
    return [max(8, width * 4 // 2 ** i) for i in range(levels + 1)]


class FastGANGenerator(Module):
    def __init__(self, z_dim: int = 64, image_size: int = 32, width: int = 32):
        levels = stride2_layers("fastgan", image_size, base=4)  # up-blocks after 4x4
        self.channels = ch = _g_channels(levels, width)
        self.init = ConvTranspose2d(z_dim, 2 * ch[0], 4, bias=False)  # (N, Z, 1, 1) -> (N, 2 ch0, 4, 4)
        self.init_bn = BatchNorm2d(2 * ch[0])
        self.ups = [GLUBlock(ch[i], ch[i + 1]) for i in range(levels)]
        # the map at level j (resolution 4 * 2^j) is gated by level j - 2 (4x coarser), from 16x16 on
        self.sles = [SkipExcitation(ch[j - 2], ch[j]) for j in range(2, levels + 1)]
        self.to_rgb = Conv2d(ch[-1], 3, 3, padding=1)

    def forward(self, z):
        h = glu(self.init_bn(self.init(F.reshape(z, (z.shape[0], z.shape[1], 1, 1)))))
        feats = [h]  # feats[j]: resolution 4 * 2^j
        for j, up in enumerate(self.ups, start=1):
            h = up(h)
            if j >= 2:
                h = self.sles[j - 2](feats[j - 2], h)
            feats.append(h)
        return F.tanh(self.to_rgb(h))  # (N, 3, S, S)


def _down(c_in: int, c_out: int, batch_norm: bool = True) -> Sequential:
    layers = [SpectralNorm(Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not batch_norm))]
    if batch_norm:
        layers.append(BatchNorm2d(c_out))
    return Sequential(*layers, LeakyReLU(0.2))


class Decoder(Module):
    """Feature map (N, C, 8, 8) -> image (N, 3, 8 * 2^ups, 8 * 2^ups) in [-1, 1]: (up, conv 3x3, BN, GLU) x ups."""

    def __init__(self, c_in: int, ups: int, width: int):
        chans = [c_in] + [max(8, width // 2 ** i) for i in range(ups)]
        self.blocks = Sequential(*[GLUBlock(a, b) for a, b in zip(chans, chans[1:])])
        self.to_rgb = Conv2d(chans[-1], 3, 3, padding=1)

    def forward(self, x):
        return F.tanh(self.to_rgb(self.blocks(x)))


class FastGANDiscriminator(Module):
    """Strided convs S -> 4x4, a Linear logit; two decoders on the 8x8 and 16x16 maps (S >= 32)."""

    def __init__(self, image_size: int = 32, width: int = 32):
        layers = stride2_layers("fastgan", image_size, base=4)
        ch = [width * 2 ** i for i in range(layers)]  # doubling at each halving, as SAGAN's D
        self.image_size = image_size
        self.downs = [_down(c_in, c_out, batch_norm=i > 0) for i, (c_in, c_out) in enumerate(zip([3] + ch, ch))]
        self.i8, self.i16 = layers - 2, layers - 3  # indices of the 8x8 and 16x16 maps among the downs' outputs
        self.head = Linear(ch[-1] * 4 * 4, 1)
        # both reconstruct at half the image size (at most RECON_SIZE): the decoders cost little next to G
        self.recon_size = self.part_size = min(image_size // 2, RECON_SIZE)
        self.decode_full = Decoder(ch[self.i8], _log2(self.recon_size // 8), width // 2)
        self.decode_part = Decoder(ch[self.i16], _log2(self.part_size // 8), width // 2)

    def forward(self, x, reconstruct: int | None = None, features: bool = False):
        """x (N, 3, S, S) -> logits (N, 1); with ``reconstruct = q`` (a quadrant, 0-3) also the two
        reconstructions, (N, 3, R, R) of the whole image and of its quadrant q; with ``features``
        (logits, the flattened 4x4 map (N, C * 16)), as the classifier Ds give them."""
        maps = []
        h = x
        for down in self.downs:
            h = down(h)
            maps.append(h)
        feats = F.flatten(h)
        logits = self.head(feats)
        if features:
            return logits, feats
        if reconstruct is None:
            return logits
        full = self.decode_full(maps[self.i8])
        part = self.decode_part(quadrant(maps[self.i16], reconstruct))
        return logits, full, part

    def targets(self, x, q: int):
        """What the decoders should produce from x (N, 3, S, S): x and its quadrant q, average-pooled."""
        return avg_pool(x, self.recon_size), avg_pool(quadrant(x, q), self.part_size)


def _log2(n: int) -> int:
    return n.bit_length() - 1


RECIPE = {"lr_d": 2e-4, "lr_g": 2e-4, "betas": (0.5, 0.999), "batch": 8}  # the paper's


def fastgan(image_size: int = 32, z_dim: int = 64, width: int = 32, discriminator: bool = True,
            num_classes: int = 0, minibatch_discrimination: bool = False) -> GAN:
    """FastGAN-style G (SLE) and self-supervised D; z ~ N(0, I), hinge + reconstruction; N(0, 0.02) init."""
    if num_classes or minibatch_discrimination:
        raise ValueError("fastgan's discriminator has no classifier head for the semi-supervised D or "
                         "minibatch discrimination: use sagan or dcgan for those.")
    G = normal_init(FastGANGenerator(z_dim, image_size, width))
    D = normal_init(FastGANDiscriminator(image_size, width)) if discriminator else None
    return GAN("fastgan", G, D, z_dim=z_dim, z_dist="normal", image_size=image_size, loss="fastgan",
               defaults=dict(RECIPE))
