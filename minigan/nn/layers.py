"""Layers: Linear, Conv2d, ConvTranspose2d, BatchNorm2d, activations, Sequential, ...

Default initialisation follows PyTorch's (uniform in +-1/sqrt(fan_in)); the
GAN models re-initialise with :func:`normal_init` (N(0, 0.02), DCGAN's rule).
"""
from __future__ import annotations

import math

import numpy as np

import minigan.ops as F
from minigan import random
from minigan.nn.module import Module, Parameter


def _uniform(shape, fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return random.get_rng().uniform(-bound, bound, size=shape).astype(np.float32)


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        self.weight = Parameter(_uniform((out_features, in_features), in_features))  # (out, in)
        self.bias = Parameter(_uniform((out_features,), in_features)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        k = kernel_size
        fan_in = in_channels * k * k
        self.weight = Parameter(_uniform((out_channels, in_channels, k, k), fan_in))  # (OC, C, K, K)
        self.bias = Parameter(_uniform((out_channels,), fan_in)) if bias else None
        self.stride, self.padding = stride, padding

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class ConvTranspose2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True):
        k = kernel_size
        fan_in = out_channels * k * k  # PyTorch computes it from weight.size(1)
        self.weight = Parameter(_uniform((in_channels, out_channels, k, k), fan_in))  # (C, OC, K, K)
        self.bias = Parameter(_uniform((out_channels,), fan_in)) if bias else None
        self.stride, self.padding, self.output_padding = stride, padding, output_padding

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding)


class BatchNorm2d(Module):
    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5):
        self.weight = Parameter(np.ones(num_features, dtype=np.float32))
        self.bias = Parameter(np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))
        self.momentum, self.eps = momentum, eps

    def forward(self, x):
        return F.batch_norm2d(x, self.weight, self.bias, self.running_mean, self.running_var,
                              training=self.training, momentum=self.momentum, eps=self.eps)


class ReLU(Module):
    def forward(self, x): return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, slope: float = 0.2):
        self.slope = slope

    def forward(self, x): return F.leaky_relu(x, self.slope)


class ELU(Module):
    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def forward(self, x): return F.elu(x, self.alpha)


class Tanh(Module):
    def forward(self, x): return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x): return F.sigmoid(x)


class UpsampleNearest(Module):
    def __init__(self, scale: int = 2):
        self.scale = scale

    def forward(self, x): return F.upsample_nearest(x, self.scale)


class Flatten(Module):
    def forward(self, x): return F.flatten(x)


class Reshape(Module):
    def __init__(self, *shape):
        self.shape = shape

    def forward(self, x): return F.reshape(x, (x.shape[0],) + self.shape)


class Sequential(Module):
    def __init__(self, *layers):
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)


def _fans(layer, shape):
    """(fan_in, fan_out) of a Linear (out, in), Conv2d (OC, C, K, K) or ConvTranspose2d (C, OC, K, K) weight."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    outs, ins = (shape[1], shape[0]) if isinstance(layer, ConvTranspose2d) else (shape[0], shape[1])
    return ins * receptive, outs * receptive


def _reinit(module: Module, draw, batch_norm_std: float | None) -> Module:
    """Redraw every conv/linear weight with ``draw(shape, fan_in, fan_out)`` and zero its bias;
    batch norm weights N(1, batch_norm_std) (or left at 1 when None), biases 0."""
    from minigan.nn.spectral_norm import SpectralNorm

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
    from minigan import backend

    return backend.to_device(values.astype(like.dtype), like.device)
