"""Self-attention over image positions (Zhang et al. 2019, SAGAN).

For a feature map with L = H*W positions and projections
    q (N, Cq, L), k (N, Cq, L), v (N, Cv, L):
    energy[n, j, i] = sum_c q[n, c, j] * k[n, c, i]       (N, L, L)
    beta = softmax over i of energy                        (each output j attends to all i)
    out[n, :, j] = sum_i beta[n, j, i] * v[n, :, i]        (N, Cv, L)
Built from matmul and softmax, so its gradient is theirs.
"""
from __future__ import annotations

from minigan.ops.matmul import matmul
from minigan.ops.shape import transpose
from minigan.ops.softmax import softmax


def attention(q, k, v):
    energy = matmul(transpose(q, 0, 2, 1), k)  # (N, L, L)
    beta = softmax(energy, axis=-1)
    return matmul(v, transpose(beta, 0, 2, 1))  # (N, Cv, L)
