"""What every model shares: the :class:`GAN` bundle the trainer receives, the
discriminator head with the trainer's tricks, and the feature-matching loss.

The tricks are those of Salimans et al. 2016, "Improved Techniques for
Training GANs", which the seeds tried:

* feature matching (sec. 3.1): train G to match the mean of D's last hidden
  features on real data -- :func:`feature_matching_loss` on the ``feats``
  that ``D(x, features=True)`` returns;
* minibatch discrimination (sec. 3.2): :class:`minigan.nn.MinibatchDiscrimination`
  between those features and the last layer;
* the semi-supervised discriminator (sec. 5): K + 1 logits, K real classes
  and "generated".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import minigan.ops as F
from minigan.nn import Linear, MinibatchDiscrimination, Module

SIZES = (32, 64, 128)  # the image sizes every model makes (stride-2 layers from its base)
Z_DISTRIBUTIONS = ("normal", "uniform")
LOSSES = ("hinge", "bce", "began", "fastgan")


@dataclass
class GAN:
    """A generator, a discriminator and what the trainer needs to know to train them.

    ``defaults`` is the original project's recipe: ``lr_d``, ``lr_g``, ``betas``
    (Adam), ``batch``, and for BEGAN ``gamma`` and ``lambda_k``. ``D`` is None
    when built with ``discriminator=False`` (enough to sample).
    """

    name: str
    G: Module
    D: Module | None
    z_dim: int
    z_dist: str  # "normal" (N(0, 1)) or "uniform" (U[-1, 1])
    image_size: int
    loss: str  # "hinge", "bce", "began" or "fastgan" (hinge + D's reconstructions)
    defaults: dict = field(default_factory=dict)
    num_classes: int = 0  # K > 0: D has K + 1 outputs (semi-supervised)
    tanh_output: bool = True  # False: G's images are not bounded (BEGAN) and samples are clipped to [-1, 1]

    def __post_init__(self):
        if self.z_dist not in Z_DISTRIBUTIONS:
            raise ValueError(f"z_dist must be one of {Z_DISTRIBUTIONS}, not {self.z_dist!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {self.loss!r}.")

    def sample_z(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n latent vectors, float32 (n, z_dim), drawn on the host from ``rng``."""
        if self.z_dist == "normal":
            z = rng.standard_normal((n, self.z_dim))
        else:
            z = rng.uniform(-1.0, 1.0, (n, self.z_dim))
        return z.astype(np.float32)


class Discriminator(Module):
    """A convolutional body, then the last layer; the trainer's tricks sit between them.

        x (N, 3, S, S) -> body -> (N, C, s, s) -> flatten -> feats (N, F)
          [-> minibatch discrimination -> (N, F + B)]
          -> Linear -> logits (N, out_dim)

    ``out_dim`` is 1, or K + 1 with ``num_classes = K`` (the last logit is
    "generated"). ``D(x, features=True)`` returns ``(logits, feats)``, feats
    being the flattened body output (before minibatch discrimination, which
    only appends batch statistics to it).
    """

    def __init__(self, body: Module, num_features: int, num_classes: int = 0,
                 minibatch_discrimination: bool = False, minibatch_kernels: int = 100,
                 minibatch_kernel_dim: int = 5):
        self.body = body
        self.num_classes = num_classes
        self.out_dim = num_classes + 1 if num_classes > 0 else 1
        self.minibatch = (MinibatchDiscrimination(num_features, minibatch_kernels, minibatch_kernel_dim)
                          if minibatch_discrimination else None)
        head_in = self.minibatch.out_features if self.minibatch is not None else num_features
        self.head = Linear(head_in, self.out_dim)

    def forward(self, x, features: bool = False):
        feats = F.flatten(self.body(x))  # (N, F)
        h = self.minibatch(feats) if self.minibatch is not None else feats
        logits = self.head(h)  # (N, out_dim)
        return (logits, feats) if features else logits


def feature_matching_loss(real_feats, fake_feats):
    """|| mean_batch(real_feats) - mean_batch(fake_feats) ||_2^2, real side detached.

    real_feats (N, F), fake_feats (M, F) -> scalar; only G learns from it.
    """
    diff = F.mean(real_feats.detach(), axis=0) - F.mean(fake_feats, axis=0)  # (F,)
    return F.sum(diff * diff)


def stride2_layers(name: str, image_size: int, base: int, sizes=SIZES) -> int:
    """How many stride-2 layers take ``base`` to ``image_size`` (a supported size)."""
    if image_size not in sizes:
        raise ValueError(f"{name} makes images of size {', '.join(map(str, sizes))}, "
                         f"not {image_size}.")
    return int(round(math.log2(image_size // base)))
