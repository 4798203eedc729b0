"""Where minigan's CPU training step spends its time (SAGAN 64x64, batch 5 by default).

    python benchmarks/profile_cpu_step.py                      # SAGAN batch 5, 3 profiled steps
    python benchmarks/profile_cpu_step.py --model dcgan --batch 16 --steps 2 --top 30
    python benchmarks/profile_cpu_step.py --image-size 32 --width 32 --batch 16   # the main example's network

The step is ``bench_train_step.minigan_step`` (Trainer.step without data
loading). After warm-up steps (numba compilation, allocator) and a few plain
timed steps (the baseline the instrumentation is compared with), it prints:

1. cProfile's top functions by *own* time (``tottime``). A BLAS product
   written ``a @ b`` is not a function call, so its time shows as the own time
   of the Function whose forward/backward runs it; numba kernels show under
   their Python wrappers in ``minigan/backend/cpu.py``.
2. Per op: every ``Function``'s forward and backward (they never nest), in ms
   per step and % of the step, plus the engine's own overhead around them
   (``Function.apply`` and ``Tensor.backward`` minus the ops they run).
3. Inside the ops: each kernel of the contract and the layout helpers
   (transposes to and from channels-first), and the optimizer and
   spectral-norm regions. These rows nest inside the rows of table 2.
4. Per convolution layer (the geometry of each conv and transposed conv):
   forward and backward, with the GFLOP/s achieved.

The instrumentation wraps functions with ``time.perf_counter`` for the
profiled steps only, and puts everything back afterwards.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import statistics
import time
from collections import defaultdict

import _timing
from _timing import format_table
from bench_train_step import MODELS, minigan_step

# the kernel contract, and the helpers the ops use around it (module, name)
KERNELS = [("minigan.backend.cpu", name) for name in (
    "im2col", "col2im", "batchnorm_forward", "batchnorm_backward", "softmax_forward", "softmax_backward",
    "activation_forward", "activation_backward", "upsample_nearest_forward", "upsample_nearest_backward",
    "adam_step", "adam_step_multi")]
HELPERS = [("minigan.ops.conv", "_channels_first"), ("minigan.ops.conv", "_batch_first"),
           ("minigan.ops.softmax", "_rows"), ("minigan.ops.softmax", "_unrows"),
           ("minigan.tensor", "unbroadcast"), ("minigan.tensor", "_topological_order")]
# whole regions (class, method): they contain kernels and ops of their own
REGIONS = [("minigan.optim", "Adam", "step"), ("minigan.nn.spectral_norm", "SpectralNorm", "power_iteration"),
           ("minigan.nn.spectral_norm", "SpectralNorm", "normalized_weight"),
           ("minigan.tensor", "Tensor", "backward"), ("minigan.tensor", "Function", "apply")]


OP, LAYER = "op:", "layer:"  # label prefixes of table 2's and table 4's rows


class Recorder(_timing.Patches):
    """Accumulated seconds and call counts by label, and the patches that feed them."""

    def __init__(self):
        super().__init__()
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.flops = defaultdict(float)

    def add(self, label, seconds, flops=0.0):
        self.seconds[label] += seconds
        self.calls[label] += 1
        self.flops[label] += flops

    def timed(self, label, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - t0)
        return wrapper


def conv_layer(cls_name, ctx, w):
    """'Conv2d 4x4 s2 64->128 32x32->16x16' and its forward FLOPs, from the op's saved geometry."""
    if cls_name == "Conv2d":
        n, c, h, wd, kh, kw, sh, sw, ph, pw, oh, ow = ctx.geometry
        oc = w.shape[0]
        flops = 2.0 * n * oc * oh * ow * c * kh * kw
        return f"Conv2d {kh}x{kw} s{sh} {c}->{oc} {h}x{wd}->{oh}x{ow}", flops
    n, h, wd, kh, kw, sh, sw, ph, pw = ctx.geometry
    c, oc = w.shape[0], w.shape[1]
    flops = 2.0 * n * c * h * wd * oc * kh * kw  # the adjoint of a conv2d with this input as its output
    return f"ConvT {kh}x{kw} s{sh} {c}->{oc} {h}x{wd}->up", flops


def instrument(rec: Recorder):
    """Wrap every Function's forward/backward, the kernels, helpers and regions."""
    import importlib

    from minigan.tensor import Function

    for cls in Function.registry:
        for kind in ("forward", "backward"):
            if kind in cls.__dict__:
                rec.patch(cls, kind, staticmethod(_timed_op(rec, cls.__name__, kind,
                                                            cls.__dict__[kind].__func__)))
    for module, name in KERNELS + HELPERS:
        mod = importlib.import_module(module)
        rec.patch(mod, name, rec.timed(f"{module.rsplit('.', 1)[-1]}.{name}", getattr(mod, name)))
    for module, cls_name, method in REGIONS:
        cls = getattr(importlib.import_module(module), cls_name)
        original = cls.__dict__[method]
        label = f"{cls_name}.{method}"
        if isinstance(original, classmethod):
            rec.patch(cls, method, classmethod(rec.timed(label, original.__func__)))
        else:
            rec.patch(cls, method, rec.timed(label, original))


def _timed_op(rec, name, kind, fn):
    """A Function's forward or backward, timed under 'Name.kind' (and per layer for convolutions)."""
    def wrapper(ctx, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(ctx, *args, **kwargs)
        dt = time.perf_counter() - t0
        label = name
        if name == "Activation":  # one row per activation kind
            from minigan.backend.cpu import ACTIVATIONS

            label = f"Activation({dict((v, k) for k, v in ACTIVATIONS.items())[ctx.code]})"
        rec.add(f"{OP}{label}.{kind}", dt)
        if name in ("Conv2d", "ConvTranspose2d"):
            layer, flops = conv_layer(name, ctx, ctx.saved[1])
            rec.add(f"{LAYER}{layer} | {kind}", dt, flops * (2 if kind == "backward" else 1))
        return out
    return wrapper


@contextlib.contextmanager
def instrumented():
    with Recorder() as rec:
        instrument(rec)
        yield rec


# ---------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------
def cprofile_report(step, steps: int, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()


def rows_for(rec, labels, steps, step_s):
    """[label, calls/step, ms/step, % of step], slowest first (label prefixes dropped)."""
    rows = []
    for label in sorted(labels, key=lambda k: -rec.seconds[k]):
        ms = rec.seconds[label] / steps * 1e3
        rows.append([label.split(":", 1)[-1], rec.calls[label] // steps, ms, 100 * ms / (step_s * 1e3)])
    return rows


def op_tables(rec: Recorder, steps: int, step_s: float) -> str:
    ops = [k for k in rec.seconds if k.startswith(OP)]
    op_total = sum(rec.seconds[k] for k in ops)
    fwd = sum(rec.seconds[k] for k in ops if k.endswith(".forward"))
    bwd = op_total - fwd
    engine = {  # the autograd engine's own work: wrapping arrays, graph walk, unbroadcast, grad sums
        "(engine) Function.apply outside forward": ("Function.apply", rec.seconds["Function.apply"] - fwd),
        "(engine) Tensor.backward outside backward": ("Tensor.backward", rec.seconds["Tensor.backward"] - bwd),
    }
    for label, (region, seconds) in engine.items():
        rec.seconds[label], rec.calls[label] = seconds, rec.calls[region]
    header = ["", "calls/step", "ms/step", "% of step"]
    out = ["2. per op (forward and backward of every Function; rows do not nest)",
           format_table(["op"] + header[1:], rows_for(rec, ops + list(engine), steps, step_s)),
           f"   ops total {op_total / steps * 1e3:.1f} ms/step = {100 * op_total / steps / step_s:.0f}% "
           "of the step; the rest is Python between the ops (modules, spectral norm, optimizer loop)."]
    inner = [f"{m.rsplit('.', 1)[-1]}.{n}" for m, n in KERNELS + HELPERS] + [
        f"{c}.{m}" for _, c, m in REGIONS if c not in ("Tensor", "Function")]
    out += ["", "3. inside the ops: kernels, layout helpers, regions (these rows nest in table 2)",
            format_table(["function"] + header[1:], rows_for(rec, [k for k in inner if rec.calls[k]], steps,
                                                            step_s))]
    layers = [k for k in rec.seconds if k.startswith(LAYER)]
    rows = rows_for(rec, layers, steps, step_s)
    for row, label in zip(rows, sorted(layers, key=lambda k: -rec.seconds[k])):
        row.append(_timing.gflops(rec.flops[label], rec.seconds[label]))
    out += ["", "4. per convolution layer (backward = input and weight gradients: 2x the forward FLOPs)",
            format_table(["layer | pass"] + header[1:] + ["GFLOP/s"], rows)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=MODELS, default="sagan")
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (each report)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--top", type=int, default=25, help="rows of the cProfile report")
    parser.add_argument("--image-size", type=int, default=64, choices=(32, 64, 128))
    parser.add_argument("--width", type=int, default=64, help="base channel width (default 64, the seeds')")
    args, threads = _timing.parse_args(parser, "profile_cpu_step")
    step = minigan_step(args.model, args.batch, "cpu", args.image_size, args.width)
    for _ in range(args.warmup):
        step()
    plain = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        plain.append(time.perf_counter() - t0)
    step_s = statistics.median(plain)
    print(f"minigan {args.model} {args.image_size}x{args.image_size} width {args.width} batch {args.batch}, CPU ({_timing.describe_machine('cpu')}, {_timing.describe_threads(threads)}): "
          f"{step_s * 1e3:.0f} ms/step (median of {args.steps} uninstrumented steps)\n")

    print(f"1. cProfile, {args.steps} steps, top {args.top} by own time")
    print(cprofile_report(step, args.steps, args.top))

    with instrumented() as rec:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        instrumented_s = (time.perf_counter() - t0) / args.steps
    print(f"instrumented steps: {instrumented_s * 1e3:.0f} ms/step; percentages below are of this time\n")
    print(op_tables(rec, args.steps, instrumented_s))


if __name__ == "__main__":
    main()
