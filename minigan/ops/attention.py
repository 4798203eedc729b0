"""Self-attention over image positions (Zhang et al. 2019, SAGAN).

For a feature map with L = H*W positions and projections
    q (N, Cq, L), k (N, Cq, L), v (N, Cv, L):
    energy[n, j, i] = sum_c q[n, c, j] * k[n, c, i]       (N, L, L)
    beta = softmax over i of energy                        (each output j attends to all i)
    out[n, :, j] = sum_i beta[n, j, i] * v[n, :, i]        (N, Cv, L)
Built from matmul and softmax, so its gradient is theirs.

Layout: the (N, L, L) arrays are the big ones (L = 1024 at 32x32), so they
are kept with the softmax axis i last and contiguous in BOTH passes. The
output is computed as out^T = beta @ v^T (N, L, Cv) and transposed (a view),
so the gradient reaching beta is ``g^T @ v``: a fresh C-contiguous (N, L, L)
array that the softmax kernel reads as it is. Writing out = v @ beta^T
instead would hand softmax the gradient of beta^T, whose transpose is a
strided view that must be copied (an extra pass over N*L*L) before the
row-wise kernel can use it. Only small (N, L, Cv) arrays are ever transposed.
"""
from __future__ import annotations

from minigan.ops.matmul import matmul
from minigan.ops.shape import transpose
from minigan.ops.softmax import softmax


def attention(q, k, v):
    energy = matmul(transpose(q, 0, 2, 1), k)  # (N, L, L), energy[n, j, i]: i last and contiguous
    beta = softmax(energy, axis=-1)  # (N, L, L), rows contiguous
    out_t = matmul(beta, transpose(v, 0, 2, 1))  # (N, L, Cv) = beta @ v^T
    return transpose(out_t, 0, 2, 1)  # (N, Cv, L)
