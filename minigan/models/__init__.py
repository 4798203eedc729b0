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
========  =========================================  ======  =====  ========

Every model is initialised N(0, 0.02) from :mod:`minigan.random`, so
``manual_seed(s)`` before ``build`` reproduces the weights.
"""
from __future__ import annotations

from minigan.models.base import GAN, Discriminator, feature_matching_loss
from minigan.models.began import began
from minigan.models.dcgan import dcgan, dcgan128
from minigan.models.sagan import sagan

MODELS = {"sagan": sagan, "dcgan": dcgan, "dcgan128": dcgan128, "began": began}


def build(name: str, image_size: int | None = None, z_dim: int | None = None, width: int | None = None,
          num_classes: int = 0, minibatch_discrimination: bool = False, **kw) -> GAN:
    """Build a model by name; None leaves the seed's value.

    ``width`` is the channel count of the widest-resolution hidden layer (64
    in every seed); ``num_classes = K > 0`` gives D K + 1 logits;
    ``minibatch_discrimination`` adds that layer before D's last one (its
    size through ``minibatch_kernels`` and ``minibatch_kernel_dim``).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}.")
    given = {"image_size": image_size, "z_dim": z_dim, "width": width}
    options = {key: value for key, value in given.items() if value is not None}
    return MODELS[name](num_classes=num_classes, minibatch_discrimination=minibatch_discrimination,
                        **options, **kw)


__all__ = ["GAN", "MODELS", "Discriminator", "build", "feature_matching_loss"]
