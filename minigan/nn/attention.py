"""SAGAN's self-attention block: x + gamma * attention(x), gamma starting at 0.

x (N, C, H, W); query and key are 1x1 convolutions to C/8 channels, value a
1x1 convolution to C channels; every position attends to every other
(:func:`minigan.ops.attention`). With gamma = 0 the block starts as the
identity and the network learns how much non-local evidence to mix in.
"""
from __future__ import annotations

import numpy as np

import minigan.ops as F
from minigan.nn.layers import Conv2d
from minigan.nn.module import Module, Parameter
from minigan.nn.spectral_norm import SpectralNorm


class SelfAttention(Module):
    def __init__(self, channels: int, spectral: bool = True, reduction: int = 8):
        inner = max(1, channels // reduction)
        wrap = SpectralNorm if spectral else (lambda m: m)
        self.query = wrap(Conv2d(channels, inner, 1))
        self.key = wrap(Conv2d(channels, inner, 1))
        self.value = wrap(Conv2d(channels, channels, 1))
        self.gamma = Parameter(np.zeros(1, dtype=np.float32))

    def forward(self, x):
        n, c, h, w = x.shape
        q = F.reshape(self.query(x), (n, -1, h * w))  # (N, C/8, L)
        k = F.reshape(self.key(x), (n, -1, h * w))  # (N, C/8, L)
        v = F.reshape(self.value(x), (n, c, h * w))  # (N, C, L)
        o = F.reshape(F.attention(q, k, v), (n, c, h, w))
        return x + self.gamma * o
