"""The functional API: every differentiable op minigan has.

Each op is a :class:`minigan.tensor.Function` (or a composition of them) that
works on NumPy arrays on the CPU and CuPy arrays on the GPU.
"""
from minigan.ops.activation import elu, leaky_relu, relu, sigmoid, tanh
from minigan.ops.attention import attention
from minigan.ops.conv import conv2d, conv_transpose2d
from minigan.ops.dropout import dropout
from minigan.ops.elementwise import abs, add, div, exp, log, mul, neg, pow, sqrt, sub  # noqa: A004
from minigan.ops.losses import bce_with_logits, cross_entropy, hinge_d_loss, hinge_g_loss, l1_loss
from minigan.ops.matmul import linear, matmul
from minigan.ops.norm import batch_norm2d
from minigan.ops.reduce import max, mean, sum  # noqa: A004
from minigan.ops.shape import concat, flatten, getitem, pad2d, permute, reshape, transpose
from minigan.ops.softmax import log_softmax, softmax
from minigan.ops.upsample import upsample_nearest

__all__ = [
    "abs", "add", "attention", "batch_norm2d", "bce_with_logits", "concat", "conv2d",
    "conv_transpose2d", "cross_entropy", "div", "dropout", "elu", "exp", "flatten", "getitem",
    "hinge_d_loss", "hinge_g_loss", "l1_loss", "leaky_relu", "linear", "log", "log_softmax",
    "matmul", "max", "mean", "mul", "neg", "pad2d", "permute", "pow", "relu", "reshape",
    "sigmoid", "softmax", "sqrt", "sub", "sum", "tanh", "transpose", "upsample_nearest",
]
