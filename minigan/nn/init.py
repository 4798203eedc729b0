"""Weight initialisation of a whole model: :func:`normal_init` (DCGAN's rule, used by SAGAN and DCGAN) and
:func:`glorot_init` (Keras' default, used by BEGAN), drawn from :mod:`minigan.random`."""
from __future__ import annotations

import math

import numpy as np

from minigan import backend, random
from minigan.nn.layers import BatchNorm2d, Conv2d, ConvTranspose2d, Linear
from minigan.nn.module import Module, Parameter
from minigan.nn.spectral_norm import SpectralNorm


def _fans(layer, shape):
    """(fan_in, fan_out) of a Linear (out, in), Conv2d (OC, C, K, K) or ConvTranspose2d (C, OC, K, K) weight."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    outs, ins = (shape[1], shape[0]) if isinstance(layer, ConvTranspose2d) else (shape[0], shape[1])
    return ins * receptive, outs * receptive


def _reinit(module: Module, draw, batch_norm_std: float | None) -> Module:
    """Redraw every conv/linear weight with ``draw(shape, fan_in, fan_out)`` and zero its bias;
    batch norm weights N(1, batch_norm_std) (or left at 1 when None), biases 0."""
    rng = random.get_rng()
    for m in module.modules():
        target = m.module if isinstance(m, SpectralNorm) else m
        weight = m.weight_orig if isinstance(m, SpectralNorm) else getattr(m, "weight", None)
        if isinstance(target, (Linear, Conv2d, ConvTranspose2d)) and isinstance(weight, Parameter):
            weight.data[...] = _to(draw(rng, weight.shape, *_fans(target, weight.shape)), weight)
            if target.bias is not None:
                target.bias.data[...] = 0
        elif isinstance(m, BatchNorm2d) and batch_norm_std is not None:
            m.weight.data[...] = _to(rng.normal(1.0, batch_norm_std, m.weight.shape), m.weight)
            m.bias.data[...] = 0
    return module


def normal_init(module: Module, std: float = 0.02) -> Module:
    """DCGAN's rule: conv/linear weights N(0, std), biases 0; batch norm weight N(1, std), bias 0."""
    return _reinit(module, lambda rng, shape, fan_in, fan_out: rng.normal(0.0, std, shape), std)


def glorot_init(module: Module) -> Module:
    """Glorot/Xavier uniform (Keras' default, the BEGAN seed's): U(+-sqrt(6 / (fan_in + fan_out))), biases 0."""
    def draw(rng, shape, fan_in, fan_out):
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, shape)

    return _reinit(module, draw, None)


def _to(values, like):
    return backend.to_device(values.astype(like.dtype), like.device)
