"""``minigan check [--device cpu|cuda|cuda-emu]``: does this machine run minigan right?

For a user who has just installed CuPy (or anyone, on any device):

1. compiles every kernel of kernels/*.cu for float and double (NVRTC on a
   GPU, the host compiler on cuda-emu; the numba twins on cpu);
2. runs each kernel on small shapes against its CPU twin;
3. runs one training step (a D step and a G step with Adam) of each model at
   32x32 and reports its time;

and prints one table. The exit status is 0 when every row passed, 1 on any
mismatch, 2 when the device cannot be used at all (no CuPy, no GPU, a CUDA
library missing: the message names the pip package that brings it).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from minigan import backend

# pip packages that bring the CUDA libraries CuPy loads, by the name in the loader's error
CUDA_LIBRARIES = {"nvrtc": "nvidia-cuda-nvrtc-cu12", "cublas": "nvidia-cublas-cu12",
                  "cudart": "nvidia-cuda-runtime-cu12", "curand": "nvidia-curand-cu12"}
MODELS = ("sagan", "dcgan", "began")
TOLERANCE = {np.dtype(np.float32): 3e-5, np.dtype(np.float64): 1e-10}


@dataclass
class Row:
    what: str
    ok: bool
    detail: str
    seconds: float


# ---------------------------------------------------------------------------
# the kernels against their twins
# ---------------------------------------------------------------------------
def kernel_cases(rng):
    """(name, dtype, fn(kernels, to_device) -> list of outputs) for every kernel of the contract."""
    from minigan.backend import cpu

    def r(*shape, dtype):
        return rng.standard_normal(shape).astype(dtype)

    cases = []
    for dtype in (np.float32, np.float64):
        x, cols = r(2, 3, 7, 6, dtype=dtype), r(3 * 9, 2 * 4 * 3, dtype=dtype)
        conv = (3, 3, 2, 2, 1, 1, 4, 3)
        g, b = r(3, dtype=dtype), r(3, dtype=dtype)
        soft, act = r(9, 37, dtype=dtype), r(5, 301, dtype=dtype)
        _, mean, invstd = cpu.batchnorm_forward(x, g, b, 1e-5)
        adam = [[r(5000, dtype=dtype), r(3, 4, dtype=dtype)] for _ in range(4)]
        adam[3] = [np.abs(v) for v in adam[3]]

        def adam_multi(k, d, adam=adam):
            state = [[d(a.copy()) for a in arrays] for arrays in adam]
            k.adam_step_multi(*state, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3)
            return [a for arrays in (state[0], state[2], state[3]) for a in arrays]

        cases += [
            ("im2col", dtype, lambda k, d, x=x: [k.im2col(d(x), *conv)]),
            ("col2im", dtype, lambda k, d, c=cols: [k.col2im(d(c), 2, 3, 7, 6, *conv)]),
            ("batchnorm_forward", dtype, lambda k, d, x=x, g=g, b=b: list(k.batchnorm_forward(d(x), d(g), d(b), 1e-5))),
            ("batchnorm_backward", dtype, lambda k, d, x=x, g=g, m=mean, s=invstd:
                list(k.batchnorm_backward(d(x), d(x[::-1].copy()), d(g), d(m), d(s)))),
            ("softmax", dtype, lambda k, d, s=soft: [k.softmax_forward(d(s)), k.softmax_backward(d(s), d(s[::-1].copy()))]),
            ("activations", dtype, lambda k, d, a=act: [k.activation_forward(d(a), code, 0.2)
                                                         for code in cpu.ACTIVATIONS.values()]),
            ("upsample_nearest", dtype, lambda k, d, x=x: [k.upsample_nearest_forward(d(x), 2),
                                                            k.upsample_nearest_backward(d(x), 2)]),
            ("adam_step_multi", dtype, adam_multi),
        ]
    return cases


def check_kernels(device: str) -> list[Row]:
    from minigan.backend import cpu

    kernels = backend.kernels_for(backend.xp_for(device).zeros(1))
    rows = []
    for name, dtype, run in kernel_cases(np.random.default_rng(0)):
        start = time.perf_counter()
        try:
            got = [backend.to_numpy(a) for a in run(kernels, lambda a: backend.to_device(a, device))]
        except Exception as exc:  # a compile or launch error is this row's result
            rows.append(Row(f"kernel {name} {np.dtype(dtype).name}", False, _one_line(exc), 0.0))
            continue
        seconds = time.perf_counter() - start
        want = run(cpu, lambda a: a)
        worst = max((float(np.max(np.abs(g - w) / (1.0 + np.abs(w)))) if g.size else 0.0)
                    for g, w in zip(got, want))
        ok = all(g.shape == w.shape and g.dtype == w.dtype for g, w in zip(got, want)) and \
            worst <= TOLERANCE[np.dtype(dtype)]
        rows.append(Row(f"kernel {name} {np.dtype(dtype).name}", ok, f"max error {worst:.1e}", seconds))
    return rows


# ---------------------------------------------------------------------------
# one training step of each model
# ---------------------------------------------------------------------------
def small_gan(name: str, device: str, width: int = 8, image_size: int = 32, seed: int = 0):
    """The model ``name`` at a small size, on ``device``."""
    from minigan import manual_seed
    from minigan.models import build

    manual_seed(seed)
    gan = build(name, image_size=image_size, width=width)
    gan.G.to(device)
    gan.D.to(device)
    return gan


def d_loss(gan, real, fake):
    import minigan.ops as F

    if gan.loss == "hinge":
        return F.hinge_d_loss(gan.D(real), gan.D(fake))
    if gan.loss == "bce":
        return F.bce_with_logits(gan.D(real), 1.0) + F.bce_with_logits(gan.D(fake), 0.0)
    k_t = 0.3  # BEGAN's k_t held fixed, so the fake term reaches D
    return F.l1_loss(gan.D(real), real) - k_t * F.l1_loss(gan.D(fake), fake)


def g_loss(gan, fake):
    import minigan.ops as F

    if gan.loss == "hinge":
        return F.hinge_g_loss(gan.D(fake))
    if gan.loss == "bce":
        return F.bce_with_logits(gan.D(fake), 1.0)
    return F.l1_loss(gan.D(fake), fake)


def make_optimizers(gan):
    from minigan.optim import Adam

    betas = gan.defaults["betas"]
    return (Adam(gan.D.parameters(), lr=gan.defaults["lr_d"], betas=betas),
            Adam(gan.G.parameters(), lr=gan.defaults["lr_g"], betas=betas))


def train_step(gan, optimizers, x, z):
    """A D step on (x, G(z).detach()) then a G step on G(z), as the trainer does; returns (loss_D, loss_G)."""
    from minigan import Tensor

    opt_d, opt_g = optimizers
    gan.D.zero_grad()
    loss_d = d_loss(gan, Tensor(x), gan.G(Tensor(z)).detach())
    loss_d.backward()
    opt_d.step()
    gan.G.zero_grad()
    loss_g = g_loss(gan, gan.G(Tensor(z)))
    loss_g.backward()
    opt_g.step()
    return float(loss_d.data), float(loss_g.data)


def step_inputs(gan, batch: int, device: str, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (batch, 3, gan.image_size, gan.image_size)).astype(np.float32)
    return backend.to_device(x, device), backend.to_device(gan.sample_z(batch, rng), device)


def check_models(device: str, batch: int = 2) -> list[Row]:
    rows = []
    for name in MODELS:
        try:
            gan = small_gan(name, device)
            x, z = step_inputs(gan, batch, device)
            start = time.perf_counter()
            loss_d, loss_g = train_step(gan, make_optimizers(gan), x, z)
            seconds = time.perf_counter() - start
        except Exception as exc:
            rows.append(Row(f"train step {name} 32x32", False, _one_line(exc), 0.0))
            continue
        ok = bool(np.isfinite(loss_d) and np.isfinite(loss_g))
        rows.append(Row(f"train step {name} 32x32", ok, f"loss_D {loss_d:.4f} loss_G {loss_g:.4f}", seconds))
    return rows


# ---------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0] if len(text) == 1 else f"{text[0]} ... {text[-1]}"


def missing_library(exc: BaseException) -> str | None:
    """The pip package to install when ``exc`` says a CUDA library could not be loaded (else None)."""
    text = str(exc).lower()
    for lib, package in CUDA_LIBRARIES.items():
        if f"lib{lib}" in text or (lib in text and ("load" in text or "not found" in text or "cannot open" in text)):
            return package
    return None


def table(rows: list[Row]) -> str:
    width = max(len(r.what) for r in rows)
    lines = [f"{'check':<{width}}  result  time      detail"]
    lines += [f"{r.what:<{width}}  {'ok' if r.ok else 'FAIL':<6}  {r.seconds * 1e3:7.1f}ms  {r.detail}" for r in rows]
    return "\n".join(lines)


def run(device: str) -> list[Row]:
    """Every check on ``device`` (which must be usable)."""
    rows = [] if device == "cpu" else check_kernels(device)
    return rows + check_models(device)


def main(device: str | None = None) -> int:
    try:
        device = backend.resolve(device)
    except backend.DeviceError as exc:
        package = missing_library(exc)
        hint = f" (the missing library comes with `pip install {package}`)" if package else ""
        print(f"minigan: error: {exc}{hint}", file=sys.stderr)
        return 2
    print(f"minigan check on {device}")
    rows = run(device)
    print(table(rows))
    failed = [r for r in rows if not r.ok]
    for r in failed:
        package = missing_library(Exception(r.detail))
        if package:
            print(f"minigan: error: {r.what}: a CUDA library is missing: pip install {package}", file=sys.stderr)
            return 2
    print(f"{len(rows) - len(failed)} of {len(rows)} checks passed on {device}")
    return 1 if failed else 0
