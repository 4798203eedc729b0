"""Self-attention over image positions (Zhang et al. 2019, SAGAN).

For a feature map with L = H*W positions and projections
    q (N, Cq, L), k (N, Cq, L), v (N, Cv, L):
    energy[n, j, i] = sum_c q[n, c, j] * k[n, c, i]       (N, L, L)
    beta = softmax over i of energy                        (each output j attends to all i)
    out[n, :, j] = sum_i beta[n, j, i] * v[n, :, i]        (N, Cv, L)

Two ways to compute it, with the same values:

* **Composed** (the GPU, and the CPU while one image's L x L fits a block):
  matmul and softmax, so its gradient is theirs. The (N, L, L) arrays are
  kept with the softmax axis i last and contiguous in BOTH passes: the output
  is computed as out^T = beta @ v^T (N, L, Cv) and transposed (a view), so
  the gradient reaching beta is ``g^T @ v``, a fresh C-contiguous (N, L, L)
  array the softmax kernel reads as it is (out = v @ beta^T would hand it a
  strided transpose to copy first). Only small (N, L, Cv) arrays are ever
  transposed.
* **Fused** (:class:`Attention`, the CPU for larger maps and batches, see
  :func:`_fused`): image by image and
  block of ``ATTENTION_BLOCK`` elements of rows j by block, energy, beta and
  the output rows are computed while the block is in the core's cache, and
  the backward pass recomputes beta block by block (from q and k: Cq = C/8,
  the cheap product) instead of keeping it. The (N, L, L) arrays are never
  written to memory, which is what the composed form spends its time on at
  L = 1024 (SAGAN 64x64's 32x32 map), and at L = 4096 they would be 64 MB
  an image. At L = 256 one image's (L, L) is a single block, and the fused
  form wins once the batch's (N, L, L) arrays are large (4 MB at batch 16):
  the main example's generator has such a map.
"""
from __future__ import annotations

import numpy as np

from minigan import backend
from minigan.backend import threads
from minigan.ops.matmul import matmul
from minigan.ops.shape import transpose
from minigan.ops.softmax import softmax
from minigan.tensor import Function

#: elements of a block of the (L, L) matrix (rows j, all of i) in the fused CPU
#: form: 1 MiB of float32, half this Xeon's L2, with room for the backward's two
#: more. Measured on the 2-core machine, attention forward + backward of
#: (16, 8, 64, 1024) float32: 148-161 ms composed; fused 160 ms at 32K
#: elements, 110 ms at 128K, 102 ms at 256K, 92-99 ms at 512K-1M; at L = 256
#: (one block an image) the fused form was slower, 15.9 against 11.7 ms.
ATTENTION_BLOCK = 1 << 18

#: the fused backward's partial sums of dk and dv per image: two, so that an
#: odd batch still shares out evenly over two threads; added in a fixed order.
PARTS = 2


def _blocks(length):
    rows = max(1, ATTENTION_BLOCK // length)
    return [(j0, min(length, j0 + rows)) for j0 in range(0, length, rows)]


def _beta(kernels, q, k, j0, j1):
    """Rows j0:j1 of one image's beta: softmax over i of q[:, j]^T k[:, i], (j1 - j0, L)."""
    return kernels.softmax_forward(q[:, j0:j1].T @ k)


class Attention(Function):
    """The fused CPU form (see the module docstring); q (N, Cq, L), k (N, Cq, L), v (N, Cv, L)."""

    @staticmethod
    def forward(ctx, q, k, v):
        ctx.save(q, k, v)
        kernels = backend.kernels_for(q)
        n, _, length = q.shape
        out_t = np.empty((n, length, v.shape[1]), dtype=v.dtype)

        def rows(item):
            i, (j0, j1) = item
            out_t[i, j0:j1] = _beta(kernels, q[i], k[i], j0, j1) @ v[i].T

        threads.parallel(rows, [(i, b) for i in range(n) for b in _blocks(length)])
        return out_t.transpose(0, 2, 1)  # (N, Cv, L), as the composed form's

    @staticmethod
    def backward(ctx, g):
        q, k, v = ctx.saved
        kernels = backend.kernels_for(q)
        n, cq, length = q.shape
        blocks = _blocks(length)
        parts = min(PARTS, len(blocks))
        per_part = -(-len(blocks) // parts)
        gq = np.empty_like(q)
        gk = np.zeros((n, parts, cq, length), dtype=q.dtype)
        gv = np.zeros((n, parts, v.shape[1], length), dtype=v.dtype)

        def part(item):
            i, p = item
            for j0, j1 in blocks[p * per_part:(p + 1) * per_part]:
                beta = _beta(kernels, q[i], k[i], j0, j1)  # the forward's bits: same product, same kernel
                g_rows = g[i][:, j0:j1]  # (Cv, B)
                gv[i, p] += g_rows @ beta  # out[:, j] = v beta[j]^T, so dv = g beta
                gbeta = g_rows.T @ v[i]  # (B, L)
                genergy = kernels.softmax_backward(beta, gbeta)  # (B, L)
                gk[i, p] += q[i][:, j0:j1] @ genergy
                gq[i][:, j0:j1] = k[i] @ genergy.T

        threads.parallel(part, [(i, p) for i in range(n) for p in range(parts)])
        return gq, gk.sum(axis=1), gv.sum(axis=1)  # the parts in order: the same bits on every run


#: ... and from this length, when the batch's (N, L, L) holds at least FUSED_MIN_ELEMENTS, though one
#: image's (L, L) is a single block. Measured on the 2-core AMD EPYC (AVX2), forward + backward, fused /
#: composed, median of 7: (N, Cq, Cv, L) = (16, 4, 32, 256) 7.2 / 17.0 ms (the main example's 16x16 map),
#: (16, 16, 128, 256) 15.4 / 23.3, but (5, 16, 128, 256) 5.7 / 5.6 and (5, 4, 32, 256) 3.2 / 2.9; at
#: L = 64 the composed form wins 3.6x at batch 16 (the fused form's per-image work is Python's).
#: The composed form's four (N, L, L) arrays (energy, beta and their gradients) are what it loses on.
FUSED_MIN_LENGTH = 256
FUSED_MIN_ELEMENTS = 1 << 20


def _fused(q):
    """The fused form where it measured faster, on the CPU: when one image's (L, L) is more than a
    block, or when L is at least FUSED_MIN_LENGTH and the batch's (N, L, L) at least FUSED_MIN_ELEMENTS."""
    n, length = q.shape[0], q.shape[-1]
    return q.device == "cpu" and (length * length > ATTENTION_BLOCK or (
        length >= FUSED_MIN_LENGTH and n * length * length >= FUSED_MIN_ELEMENTS))


def attention(q, k, v):
    if _fused(q):
        return Attention.apply(q, k, v)
    energy = matmul(transpose(q, 0, 2, 1), k)  # (N, L, L), energy[n, j, i]: i last and contiguous
    beta = softmax(energy, axis=-1)  # (N, L, L), rows contiguous
    out_t = matmul(beta, transpose(v, 0, 2, 1))  # (N, L, Cv) = beta @ v^T
    return transpose(out_t, 0, 2, 1)  # (N, Cv, L)
