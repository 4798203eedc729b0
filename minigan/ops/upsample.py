"""Nearest-neighbour upsampling by an integer factor: x (N, C, H, W) -> (N, C, sH, sW)."""
from __future__ import annotations

from minigan import backend
from minigan.tensor import Function


class UpsampleNearest(Function):
    @staticmethod
    def forward(ctx, x, scale=2):
        ctx.scale = int(scale)
        return backend.kernels_for(x).upsample_nearest_forward(x, ctx.scale)

    @staticmethod
    def backward(ctx, g):
        return backend.kernels_for(g).upsample_nearest_backward(g, ctx.scale)


def upsample_nearest(x, scale=2):
    return UpsampleNearest.apply(x, scale=scale)
