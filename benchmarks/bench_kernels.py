"""Every kernel of the contract and every convolution of the models, minigan against PyTorch.

    python benchmarks/bench_kernels.py                     # CPU: numba kernels vs PyTorch CPU, batch 5
    python benchmarks/bench_kernels.py --device cuda       # GPU: kernels/*.cu vs PyTorch (cuDNN)
    python benchmarks/bench_kernels.py --batch 16 --models sagan dcgan began --only conv --json k.json

Part 1, the kernel contract (``minigan.backend.cpu`` on the CPU, its twin
``minigan.backend.cuda`` on the GPU): im2col, col2im, batch norm forward and
backward, softmax forward and backward, the five activations forward and
backward, nearest upsampling forward and backward, and Adam -- each against
the PyTorch op that does the same work (``F.unfold``/``F.fold``,
``aten.native_batch_norm[_backward]``, ``aten._softmax_backward_data``,
``aten.*_backward``, ``torch.optim.Adam``), at shapes the models use. These
kernels are memory-bound, so beside the time is the bandwidth achieved,
counting the *least* traffic the work needs: every input read once and every
output written once (a kernel that makes three passes over its input shows as
a third of what it could reach). For reference: one core of a current server
CPU streams ~10-20 GB/s, a whole socket 100-400 GB/s, an H100's HBM3 ~3,350
GB/s.

Part 2, every convolution layer of the models (``--models``, default SAGAN
and DCGAN at 64x64), forward and backward, through ``minigan.ops``
(``Conv2d``/``ConvTranspose2d``: im2col/col2im + one GEMM) against
``torch.nn.functional.conv2d``/``conv_transpose2d`` and
``aten.convolution_backward``, with the GFLOP/s achieved (forward
``2*N*OC*OH*OW*C*KH*KW``, backward twice that: input and weight gradients).
A third column times minigan's GEMMs alone on operands of the same shapes:
the floor of the im2col approach; what minigan spends above it is layout work
(im2col, col2im, transposes). Peak for reference: ~100-200 GFLOP/s per
AVX-512 core (fp32), ~50-60 TFLOP/s for an H100's fp32 FMA units (cuBLAS
may use TF32: ~400+ TFLOP/s).

Timing: each repeat runs a case back to back for ``--target-ms`` (tiny
kernels many times), minigan and PyTorch interleaved, median of
``--repeats``; CUDA events on the GPU; PyTorch gets numba's thread count.
ratio = minigan / PyTorch (< 1: minigan faster).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

import _timing
from _timing import Case, format_table, gbps, gflops, ratio

F32 = 4  # bytes per float32


# ---------------------------------------------------------------------------
# arrays on both sides
# ---------------------------------------------------------------------------
class Arrays:
    """The same random float32 data as a minigan array (NumPy or CuPy) and a torch tensor."""

    def __init__(self, device: str, seed: int = 0):
        import torch

        from minigan import backend

        self.device, self.torch, self.backend = device, torch, backend
        self.rng = np.random.default_rng(seed)

    def pair(self, shape, low=-1.0, high=1.0):
        host = self.rng.uniform(low, high, shape).astype(np.float32)
        return self.backend.to_device(host, self.device), self.torch.from_numpy(host).to(self.device)


@dataclass
class Row:
    """One line of a table: what, at which shape, the two callables, and its work (bytes or FLOPs)."""

    name: str
    shape: str
    minigan: object
    torch: object
    work: float  # bytes moved (kernels) or FLOPs (convolutions)
    gemm: object = None  # convolutions: minigan's GEMMs alone


def shape_str(shape) -> str:
    return "x".join(map(str, shape))


# ---------------------------------------------------------------------------
# part 1: the kernel contract
# ---------------------------------------------------------------------------
def kernel_rows(arrays: Arrays, batch: int) -> list[Row]:
    from minigan.backend import cpu

    torch = arrays.torch
    aten = torch.ops.aten
    K = _kernel_module(arrays.device)
    n = batch
    rows = []

    # im2col / col2im at the geometries of SAGAN D (4x4 s2), DCGAN D (5x5 s2) and BEGAN (3x3 s1)
    for c, h, k, s, p in ((64, 32, 4, 2, 1), (128, 16, 5, 2, 2), (64, 64, 3, 1, 1)):
        o = (h + 2 * p - k) // s + 1
        x, tx = arrays.pair((n, c, h, h))
        cols, tcols = arrays.pair((c * k * k, n * o * o))
        tcols = tcols.reshape(c * k * k, n, o * o).transpose(0, 1).contiguous()  # torch's (N, C*K*K, L)
        geometry = f"{shape_str((n, c, h, h))} k{k} s{s}"
        traffic = (x.size + cols.size) * F32
        rows.append(Row("im2col", geometry, lambda x=x, k=k, s=s, p=p, o=o: K.im2col(x, k, k, s, s, p, p, o, o),
                        lambda tx=tx, k=k, s=s, p=p: torch.nn.functional.unfold(tx, k, padding=p, stride=s),
                        traffic))
        rows.append(Row("col2im", geometry,
                        lambda cols=cols, c=c, h=h, k=k, s=s, p=p, o=o: K.col2im(cols, n, c, h, h, k, k, s, s, p,
                                                                                 p, o, o),
                        lambda tcols=tcols, h=h, k=k, s=s, p=p: torch.nn.functional.fold(tcols, (h, h), k, padding=p,
                                                                                         stride=s),
                        traffic))

    # batch norm (training mode) at SAGAN G's first and last normalised layers
    for c, h in ((512, 4), (64, 32)):
        x, tx = arrays.pair((n, c, h, h))
        gy, tgy = arrays.pair((n, c, h, h))
        gamma, tgamma = arrays.pair((c,), 0.5, 1.5)
        beta, tbeta = arrays.pair((c,))
        _, mean, invstd = K.batchnorm_forward(x, gamma, beta, 1e-5)
        _, tmean, tinvstd = aten.native_batch_norm(tx, tgamma, tbeta, None, None, True, 0.1, 1e-5)
        geometry = shape_str(x.shape)
        rows.append(Row("batchnorm fwd", geometry, lambda x=x, g=gamma, b=beta: K.batchnorm_forward(x, g, b, 1e-5),
                        lambda x=tx, g=tgamma, b=tbeta: aten.native_batch_norm(x, g, b, None, None, True, 0.1, 1e-5),
                        2 * x.size * F32))
        rows.append(Row("batchnorm bwd", geometry,
                        lambda x=x, gy=gy, g=gamma, m=mean, i=invstd: K.batchnorm_backward(x, gy, g, m, i),
                        lambda x=tx, gy=tgy, g=tgamma, m=tmean, i=tinvstd: aten.native_batch_norm_backward(
                            gy, x, g, None, None, m, i, True, 1e-5, [True, True, True]),
                        3 * x.size * F32))

    # softmax over positions, as in SAGAN's attention: (N*L, L) for G's 32x32 and D's 8x8 maps
    for side in (32, 8):
        length = side * side
        x, tx = arrays.pair((n * length, length), -5, 5)
        gy, tgy = arrays.pair((n * length, length))
        y, ty = K.softmax_forward(x), torch.softmax(tx, -1)
        geometry = shape_str(x.shape)
        rows.append(Row("softmax fwd", geometry, lambda x=x: K.softmax_forward(x),
                        lambda x=tx: torch.softmax(x, -1), 2 * x.size * F32))
        rows.append(Row("softmax bwd", geometry, lambda y=y, gy=gy: K.softmax_backward(y, gy),
                        lambda y=ty, gy=tgy: aten._softmax_backward_data(gy, y, -1, torch.float32),
                        3 * x.size * F32))

    # activations: a small map (per-call overhead shows) and a large one (bandwidth shows)
    torch_act = {
        "relu": (torch.relu, lambda gy, x, y: aten.threshold_backward(gy, x, 0), 3),
        "leaky_relu": (lambda x: torch.nn.functional.leaky_relu(x, 0.2),
                       lambda gy, x, y: aten.leaky_relu_backward(gy, x, 0.2, False), 3),
        "elu": (torch.nn.functional.elu, lambda gy, x, y: aten.elu_backward(gy, 1.0, 1, 1, False, x), 3),
        "tanh": (torch.tanh, lambda gy, x, y: aten.tanh_backward(gy, y), 3),
        "sigmoid": (torch.sigmoid, lambda gy, x, y: aten.sigmoid_backward(gy, y), 3),
    }
    alpha = {"leaky_relu": 0.2, "elu": 1.0}
    for shape in ((n, 512, 4, 4), (n, 64, 64, 64)):
        x, tx = arrays.pair(shape)
        gy, tgy = arrays.pair(shape)
        for kind, (t_fwd, t_bwd, bwd_arrays) in torch_act.items():
            code, a = cpu.ACTIVATIONS[kind], alpha.get(kind, 0.0)
            y, ty = K.activation_forward(x, code, a), t_fwd(tx)
            rows.append(Row(f"{kind} fwd", shape_str(shape), lambda x=x, c=code, a=a: K.activation_forward(x, c, a),
                            lambda x=tx, f=t_fwd: f(x), 2 * x.size * F32))
            rows.append(Row(f"{kind} bwd", shape_str(shape),
                            lambda x=x, y=y, gy=gy, c=code, a=a: K.activation_backward(x, y, gy, c, a),
                            lambda x=tx, y=ty, gy=tgy, f=t_bwd: f(gy, x, y), bwd_arrays * x.size * F32))

    # nearest upsampling x2, as in BEGAN's decoder
    for h in (8, 32):
        x, tx = arrays.pair((n, 64, h, h))
        gy, tgy = arrays.pair((n, 64, 2 * h, 2 * h))
        traffic = 5 * x.size * F32  # x once, y (4x larger) once
        rows.append(Row("upsample fwd", shape_str(x.shape), lambda x=x: K.upsample_nearest_forward(x, 2),
                        lambda x=tx: torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"), traffic))
        rows.append(Row("upsample bwd", shape_str(x.shape), lambda gy=gy: K.upsample_nearest_backward(gy, 2),
                        lambda gy=tgy, h=h: aten.upsample_nearest2d_backward(gy, [2 * h, 2 * h], [n, 64, h, h],
                                                                             2.0, 2.0), traffic))

    rows += adam_rows(arrays, K)
    return rows


def adam_rows(arrays: Arrays, K) -> list[Row]:
    """Adam over every parameter of SAGAN's G and D (the seed's model), both ways minigan offers."""
    from minigan.models import build

    torch = arrays.torch
    gan = build("sagan")
    shapes = [p.shape for p in gan.G.parameters() + gan.D.parameters()]
    ours = [[arrays.pair(s)[0] for s in shapes] for _ in range(4)]  # params, grads, m, v
    for m in ours[2] + ours[3]:
        m[...] = 0.01  # v > 0: no division by (almost) zero
    theirs = []
    for s in shapes:
        p, g = arrays.pair(s)[1], arrays.pair(s)[1]
        p.grad = g
        theirs.append(p)
    hyper = dict(lr=1e-4, betas=(0.0, 0.9), eps=1e-8)
    loop = torch.optim.Adam(theirs, foreach=False, **hyper)
    try:
        fused = torch.optim.Adam(theirs, fused=True, **hyper)
        fused.step()
    except (RuntimeError, ValueError):  # an older PyTorch without a fused Adam on this device
        fused = torch.optim.Adam(theirs, foreach=True, **hyper)
    size = sum(int(np.prod(s)) for s in shapes)
    traffic = 7 * size * F32  # read p, g, m, v; write p, m, v
    label = f"{len(shapes)} tensors, {size / 1e6:.1f}M"
    step = [1]

    def one_by_one():  # what minigan.optim.Adam.step does today
        step[0] += 1
        for p, g, m, v in zip(*ours):
            K.adam_step(p, g, m, v, 1e-4, 0.0, 0.9, 1e-8, 0.0, step[0])

    def all_at_once():
        step[0] += 1
        K.adam_step_multi(*ours, 1e-4, 0.0, 0.9, 1e-8, 0.0, step[0])

    return [Row("adam (per tensor | torch for-loop)", label, one_by_one, loop.step, traffic),
            Row("adam (multi | torch fused)", label, all_at_once, fused.step, traffic)]


def _kernel_module(device: str):
    if device == "cpu":
        from minigan.backend import cpu

        return cpu
    from minigan.backend import cuda

    return cuda


# ---------------------------------------------------------------------------
# part 2: the convolution layers of the models
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvLayer:
    transposed: bool
    x_shape: tuple  # (N, C, H, W)
    w_shape: tuple  # conv: (OC, C, KH, KW); transposed: (C, OC, KH, KW)
    bias: bool
    stride: int
    padding: int
    output_padding: int = 0

    @property
    def label(self) -> str:
        n, c, h, w = self.x_shape
        oc = self.w_shape[0] if not self.transposed else self.w_shape[1]
        k = self.w_shape[2]
        kind = "convT" if self.transposed else "conv"
        return f"{kind} {k}x{k} s{self.stride} {c}->{oc} @{h}x{w}"

    @property
    def forward_flops(self) -> float:
        """2 * (multiply-adds): conv over its output pixels; convT over its input pixels (the adjoint)."""
        n, c, h, w = self.x_shape
        k = self.w_shape[2]
        if self.transposed:
            return 2.0 * n * c * h * w * self.w_shape[1] * k * k
        oh = (h + 2 * self.padding - k) // self.stride + 1
        ow = (w + 2 * self.padding - k) // self.stride + 1
        return 2.0 * n * self.w_shape[0] * oh * ow * c * k * k


def conv_layers(models, batch: int) -> dict[ConvLayer, list[str]]:
    """Every distinct convolution the models' G and D run (training mode), and which models use it.

    Found by running G and D once, on the CPU with a batch of one (only N
    depends on the batch), with ``minigan.ops.conv2d`` / ``conv_transpose2d``
    wrapped to note their arguments (the layers call them through ``minigan.ops``).
    """
    import minigan.ops as ops
    from minigan import Tensor, manual_seed, no_grad
    from minigan.models import build

    found: dict[ConvLayer, list[str]] = {}
    current = [""]

    def recorder(transposed, original):
        def wrapper(x, w, b=None, stride=1, padding=0, output_padding=0, **kw):
            layer = ConvLayer(transposed, (batch,) + tuple(x.shape[1:]), tuple(w.shape), b is not None, int(stride),
                              int(padding), int(output_padding))
            found.setdefault(layer, [])
            if current[0] not in found[layer]:
                found[layer].append(current[0])
            extra = {"output_padding": output_padding} if transposed else {}
            return original(x, w, b, stride, padding, **extra, **kw)
        return wrapper

    with _timing.Patches() as patches, no_grad():
        patches.patch(ops, "conv2d", recorder(False, ops.conv2d))
        patches.patch(ops, "conv_transpose2d", recorder(True, ops.conv_transpose2d))
        for name in models:
            current[0] = name
            manual_seed(0)
            gan = build(name)
            z = Tensor(gan.sample_z(1, np.random.default_rng(0)))
            gan.D(gan.G(z))
    return found


def conv_rows(arrays: Arrays, models, batch: int) -> list[tuple[Row, Row]]:
    """(forward, backward) rows for every convolution layer of ``models``."""
    out = []
    for layer, used_by in conv_layers(models, batch).items():
        name, shape = f"{layer.label} ({', '.join(used_by)})", shape_str(layer.x_shape)
        (m_fwd, m_bwd, y_shape), (t_fwd, t_bwd) = minigan_conv(arrays, layer), torch_conv(arrays, layer)
        gemm_fwd, gemm_bwd = gemm_only(arrays, layer, y_shape)
        out.append((Row(name, shape, m_fwd, t_fwd, layer.forward_flops, gemm_fwd),
                    Row(name, shape, m_bwd, t_bwd, 2 * layer.forward_flops, gemm_bwd)))
    return out


def _conv_operands(arrays: Arrays, layer: ConvLayer):
    """x, w, b (None without bias) and the output gradient g: minigan arrays and torch tensors, same values."""
    oc = layer.w_shape[1] if layer.transposed else layer.w_shape[0]
    n, _, h, w = layer.x_shape
    k, s, p = layer.w_shape[2], layer.stride, layer.padding
    if layer.transposed:
        oh, ow = ((size - 1) * s - 2 * p + k + layer.output_padding for size in (h, w))
    else:
        oh, ow = ((size + 2 * p - k) // s + 1 for size in (h, w))
    pairs = [arrays.pair(layer.x_shape), arrays.pair(layer.w_shape, -0.05, 0.05),
             arrays.pair((oc,)) if layer.bias else (None, None), arrays.pair((n, oc, oh, ow))]
    return [a for a, _ in pairs], [t for _, t in pairs]


def minigan_conv(arrays: Arrays, layer: ConvLayer):
    """Forward and backward of minigan's Function on raw arrays (no Tensor wrapping), and the output shape."""
    from minigan.ops.conv import Conv2d, ConvTranspose2d
    from minigan.tensor import Context

    (x, w, b, g), _ = _conv_operands(arrays, layer)
    fn = ConvTranspose2d if layer.transposed else Conv2d
    params = dict(stride=layer.stride, padding=layer.padding)
    if layer.transposed:
        params["output_padding"] = layer.output_padding

    def forward():
        ctx = Context()
        ctx.needs_grad = (True, True, layer.bias)  # as in training: every input wants its gradient
        return ctx, fn.forward(ctx, x, w, b, **params)

    ctx, y = forward()
    return (lambda: forward()), (lambda: fn.backward(ctx, g)), y.shape


def torch_conv(arrays: Arrays, layer: ConvLayer):
    """torch.nn.functional's forward and ATen's convolution_backward (input, weight and bias gradients)."""
    torch = arrays.torch
    _, (x, w, b, g) = _conv_operands(arrays, layer)
    s, p, op = layer.stride, layer.padding, layer.output_padding
    if layer.transposed:
        def forward():
            return torch.nn.functional.conv_transpose2d(x, w, b, s, p, op)
    else:
        def forward():
            return torch.nn.functional.conv2d(x, w, b, s, p)

    def backward():
        return torch.ops.aten.convolution_backward(g, x, w, [b.shape[0]] if layer.bias else None, [s, s], [p, p],
                                                   [1, 1], layer.transposed, [op, op], 1, [True, True, layer.bias])
    return forward, backward


def gemm_only(arrays: Arrays, layer: ConvLayer, y_shape):
    """minigan's matrix products for this layer (the expressions of minigan/ops/conv.py), on ready operands."""
    n, c, h, w = layer.x_shape
    k = layer.w_shape[2]
    if not layer.transposed:  # W (OC, C*K*K) @ cols (C*K*K, N*OH*OW); backward W^T @ g and g @ cols^T
        oc = layer.w_shape[0]
        columns = n * y_shape[2] * y_shape[3]
        wm, cols, g = (arrays.pair(s)[0] for s in ((oc, c * k * k), (c * k * k, columns), (oc, columns)))
        return (lambda: wm @ cols), (lambda: (wm.T @ g, g @ cols.T))
    oc = layer.w_shape[1]  # W^T (OC*K*K, C) @ x (C, N*H*W); backward W @ gcols and x @ gcols^T
    wm, xc, gcols = (arrays.pair(s)[0] for s in ((c, oc * k * k), (c, n * h * w), (oc * k * k, n * h * w)))
    return (lambda: wm.T @ xc), (lambda: (wm @ gcols, xc @ gcols.T))


# ---------------------------------------------------------------------------
# timing and tables
# ---------------------------------------------------------------------------
def time_row(row: Row, device: str, repeats: int, target_s: float) -> dict:
    cases = [Case("minigan", row.minigan, _timing.clock_for(device, "minigan")),
             Case("torch", row.torch, _timing.clock_for(device, "torch"))]
    if row.gemm is not None:
        cases.append(Case("gemm", row.gemm, _timing.clock_for(device, "minigan")))
    _timing.time_interleaved(cases, repeats=repeats, warmup=2, target_s=target_s)
    return {c.name: c.median for c in cases}


def kernel_table(rows, times) -> str:
    body = [[r.name, r.shape, t["minigan"] * 1e6, t["torch"] * 1e6, gbps(r.work, t["minigan"]),
             gbps(r.work, t["torch"]), ratio(t["minigan"], t["torch"])] for r, t in zip(rows, times)]
    return format_table(["kernel", "shape", "minigan us", "torch us", "minigan GB/s", "torch GB/s", "ratio"], body)


def conv_table(rows, times, passes) -> str:
    body = [[r.name, f"{pass_} {r.shape}", t["minigan"] * 1e3, t["torch"] * 1e3, t["gemm"] * 1e3,
             gflops(r.work, t["minigan"]), gflops(r.work, t["torch"]), gflops(r.work, t["gemm"]),
             ratio(t["minigan"], t["torch"])] for r, t, pass_ in zip(rows, times, passes)]
    return format_table(["layer (models)", "pass, input", "minigan ms", "torch ms", "GEMM-only ms", "minigan GF/s",
                         "torch GF/s", "GEMM GF/s", "ratio"], body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=5, help="N of every shape (default 5, SAGAN's batch)")
    parser.add_argument("--models", nargs="+", default=["sagan", "dcgan"], help="whose convolutions (part 2)")
    parser.add_argument("--only", choices=("kernels", "conv"), help="run one part only")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-ms", type=float, default=10.0, help="length of one repeat of one case")
    parser.add_argument("--json", metavar="PATH")
    args, threads = _timing.parse_args(parser, "bench_kernels")
    if threads is None:
        return
    machine = _timing.describe_machine(args.device)
    target_s = args.target_ms / 1e3
    print(f"minigan kernels vs PyTorch on {machine}, {_timing.describe_threads(threads)}, float32, batch {args.batch}; "
          f"median of {args.repeats} repeats of ~{args.target_ms:g} ms; ratio = minigan / torch\n")
    arrays = Arrays(args.device)
    payload = {"benchmark": "kernels", "machine": machine, "threads": threads, "batch": args.batch,
               "kernels": [], "conv": []}

    if args.only in (None, "kernels"):
        rows = kernel_rows(arrays, args.batch)
        times = []
        for row in rows:
            times.append(time_row(row, args.device, args.repeats, target_s))
        print("1. the kernel contract (GB/s: each input read once + each output written once)")
        print(kernel_table(rows, times))
        payload["kernels"] = [{"kernel": r.name, "shape": r.shape, "bytes": r.work, **t} for r, t in zip(rows, times)]
        print()

    if args.only in (None, "conv"):
        rows, times, passes = [], [], []
        for fwd, bwd in conv_rows(arrays, args.models, args.batch):
            for pass_, row in (("fwd", fwd), ("bwd", bwd)):
                rows.append(row)
                passes.append(pass_)
                times.append(time_row(row, args.device, args.repeats, target_s))
        print(f"2. convolution layers of {', '.join(args.models)} (GF/s = GFLOP/s; bwd = input + weight gradients)")
        print(conv_table(rows, times, passes))
        payload["conv"] = [{"layer": r.name, "pass": p, "flops": r.work, **t} for r, t, p in zip(rows, times, passes)]
        total = {k: sum(t[k] for t in times) for k in ("minigan", "torch", "gemm")}
        print(f"   all layers, one forward + one backward each: minigan {total['minigan'] * 1e3:.1f} ms, "
              f"torch {total['torch'] * 1e3:.1f} ms, minigan's GEMMs alone {total['gemm'] * 1e3:.1f} ms "
              f"(ratio {ratio(total['minigan'], total['torch']):.2f})")
    _timing.write_json(args.json, payload)


if __name__ == "__main__":
    main()
