"""The seeds' architectures, by name.

    gan = build("sagan")                       # the seed's SAGAN at 64x64
    gan = build("dcgan", image_size=32, num_classes=10, minibatch_discrimination=True)
    z = gan.sample_z(16, rng); images = gan.G(Tensor(z))

========  =========================================  ======  =====  ========
name      seed                                       sizes   z      loss
========  =========================================  ======  =====  ========
sagan     "mel icon" SAGAN (heykeetae)               32-128  20 N   hinge
dcgan     logo generator (carpedm20 DCGAN)           32-128  100 U  bce
dcgan128  Simpsons faces (DCGAN, 8x8 base)           32-128  100 U  bce
began     Keras BEGAN on faces (carpedm20 BEGAN)     32-128  64 U   began
fastgan   FastGAN-style (Liu et al. 2021; no seed)   32-128  64 N   hinge+rec
========  =========================================  ======  =====  ========

SAGAN and DCGAN are initialised N(0, 0.02), BEGAN Glorot-uniform (as its
Keras original), all from :mod:`minigan.random`, so ``manual_seed(s)`` before
``build`` reproduces the weights. ``build(name, discriminator=False)`` builds G
alone (sampling from a checkpoint needs no D).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from minigan.models import began as _began, dcgan as _dcgan, fastgan as _fastgan, sagan as _sagan
from minigan.models.base import GAN, SIZES, Discriminator, feature_matching_loss


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture: its builder and the original project's training recipe."""

    build: Callable[..., GAN]
    recipe: dict  # lr_d, lr_g, betas, batch (what `None` options resolve to)
    sizes: tuple[int, ...] = SIZES  # image sizes it makes
    classifier: bool = True  # D is the classifier head of models.base: the classifier tricks apply
    logits: bool = True  # D outputs logits (False: BEGAN's autoencoder): LeCam applies


# The one list of models: the CLI's --model choices, config validation and build() all read it.
MODELS = {
    "sagan": ModelEntry(_sagan.sagan, _sagan.RECIPE),
    "dcgan": ModelEntry(_dcgan.dcgan, _dcgan.RECIPE),
    "dcgan128": ModelEntry(_dcgan.dcgan128, _dcgan.RECIPE_128),
    "began": ModelEntry(_began.began, _began.RECIPE, classifier=False, logits=False),
    "fastgan": ModelEntry(_fastgan.fastgan, _fastgan.RECIPE, classifier=False),
}
MODEL_NAMES = tuple(MODELS)
IMAGE_SIZES = tuple(sorted({size for entry in MODELS.values() for size in entry.sizes}))


def build(name: str, image_size: int | None = None, z_dim: int | None = None, width: int | None = None,
          num_classes: int = 0, minibatch_discrimination: bool = False, **kw) -> GAN:
    """Build a model by name; None leaves the original's value.

    ``width`` is the channel count of the widest-resolution hidden layer (64
    in every original); ``num_classes = K > 0`` gives D K + 1 logits;
    ``minibatch_discrimination`` adds that layer before D's last one (its
    size through ``minibatch_kernels`` and ``minibatch_kernel_dim``).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}.")
    given = {"image_size": image_size, "z_dim": z_dim, "width": width}
    options = {key: value for key, value in given.items() if value is not None}
    return MODELS[name].build(num_classes=num_classes, minibatch_discrimination=minibatch_discrimination,
                              **options, **kw)


__all__ = ["GAN", "IMAGE_SIZES", "MODELS", "MODEL_NAMES", "Discriminator", "ModelEntry", "build",
           "feature_matching_loss"]
