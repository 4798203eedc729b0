"""Layers: Linear, Conv2d, ConvTranspose2d, BatchNorm2d, activations, Sequential, ...

Default initialisation follows PyTorch's (uniform in +-1/sqrt(fan_in)); the
GAN models re-initialise with :mod:`minigan.nn.init` (N(0, 0.02) or Glorot).

``forward(x, weight=None)`` of Linear, Conv2d and ConvTranspose2d takes an
optional weight to use instead of ``self.weight``: SpectralNorm passes its
normalised weight that way.
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

    def forward(self, x, weight=None):
        return F.linear(x, self.weight if weight is None else weight, self.bias)


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        k = kernel_size
        fan_in = in_channels * k * k
        self.weight = Parameter(_uniform((out_channels, in_channels, k, k), fan_in))  # (OC, C, K, K)
        self.bias = Parameter(_uniform((out_channels,), fan_in)) if bias else None
        self.stride, self.padding = stride, padding

    def forward(self, x, weight=None):
        return F.conv2d(x, self.weight if weight is None else weight, self.bias, self.stride, self.padding)


class ConvTranspose2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True):
        k = kernel_size
        fan_in = out_channels * k * k  # PyTorch computes it from weight.size(1)
        self.weight = Parameter(_uniform((in_channels, out_channels, k, k), fan_in))  # (C, OC, K, K)
        self.bias = Parameter(_uniform((out_channels,), fan_in)) if bias else None
        self.stride, self.padding, self.output_padding = stride, padding, output_padding

    def forward(self, x, weight=None):
        return F.conv_transpose2d(x, self.weight if weight is None else weight, self.bias, self.stride,
                                  self.padding, self.output_padding)


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
