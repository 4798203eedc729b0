"""Minibatch discrimination (Salimans et al. 2016, "Improved Techniques for
Training GANs", section 3.2): let the discriminator see the whole batch, so a
generator that collapses to one mode is easy to spot.

For features f (N, A) and a learned tensor T (A, B*C):

    M = f @ T, reshaped to (N, B, C)                 B kernels of C numbers per sample
    c_b(x_i, x_j) = exp(-||M[i, b] - M[j, b]||_L1)    closeness of two samples under kernel b
    o(x_i)_b = sum_j c_b(x_i, x_j)                    (N, B)
    output = concat(f, o)                             (N, A + B)

The sum over j *includes* j = i, as in the paper's formula; that term is the
constant exp(0) = 1 (OpenAI's code masks it out instead: the same features
shifted by one, which the next linear layer's bias absorbs). Built from
existing differentiable ops, so its gradient is theirs (checked in
``tests/gradcheck/test_gan_pieces.py``). Memory is O(N^2 * B * C).
"""
from __future__ import annotations

import numpy as np

import minigan.ops as F
from minigan import random
from minigan.nn.module import Module, Parameter


class MinibatchDiscrimination(Module):
    def __init__(self, in_features: int, num_kernels: int = 100, kernel_dim: int = 5, std: float = 0.02):
        self.in_features, self.num_kernels, self.kernel_dim = in_features, num_kernels, kernel_dim
        shape = (in_features, num_kernels * kernel_dim)
        self.T = Parameter(random.get_rng().normal(0.0, std, shape).astype(np.float32))  # (A, B*C)

    @property
    def out_features(self) -> int:
        return self.in_features + self.num_kernels

    def forward(self, f):
        n, b, c = f.shape[0], self.num_kernels, self.kernel_dim
        m = F.matmul(f, self.T)  # (N, B*C)
        rows = F.reshape(m, (n, 1, b, c))  # M_i, broadcast over j
        cols = F.reshape(m, (1, n, b, c))  # M_j, broadcast over i
        l1 = F.sum(F.abs(rows - cols), axis=3)  # (N, N, B): ||M_i,b - M_j,b||_1
        o = F.sum(F.exp(-l1), axis=1)  # (N, B): sum over j of c_b(x_i, x_j)
        return F.concat([f, o], axis=1)  # (N, A + B)
