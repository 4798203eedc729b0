"""Layers and modules built on :mod:`minigan.ops`."""
from minigan.nn.attention import SelfAttention
from minigan.nn.layers import (ELU, BatchNorm2d, Conv2d, ConvTranspose2d, Flatten, LeakyReLU, Linear,
                               ReLU, Reshape, Sequential, Sigmoid, Tanh, UpsampleNearest)
from minigan.nn.init import glorot_init, normal_init
from minigan.nn.minibatch import MinibatchDiscrimination as MinibatchDiscrimination
from minigan.nn.module import Module, Parameter, StateDictError
from minigan.nn.spectral_norm import SpectralNorm

__all__ = [
    "BatchNorm2d", "Conv2d", "ConvTranspose2d", "ELU", "Flatten", "LeakyReLU", "Linear", "Module",
    "Parameter", "ReLU", "Reshape", "SelfAttention", "Sequential", "Sigmoid", "SpectralNorm",
    "StateDictError", "Tanh", "UpsampleNearest", "glorot_init", "normal_init",
]
