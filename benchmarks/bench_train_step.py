"""One full training iteration, minigan against the same model in PyTorch.

    python benchmarks/bench_train_step.py                        # CPU: sagan, dcgan, began at batch 5 and 16
    python benchmarks/bench_train_step.py --device cuda          # GPU: batches 5, 64, 256, + a CUDA graph
    python benchmarks/bench_train_step.py --models sagan --batches 5 --repeats 9 --json step.json
    python benchmarks/bench_train_step.py --models sagan --image-size 32 --width 32 --batches 16
                                                                 # the main example's CPU network

An iteration is what ``minigan.train.Trainer.step`` does, without data
loading (the real batch is a fixed array already on the device):

    D step: fake = G(z) under no_grad; L_D on (x, fake); backward; Adam on D
    G step: L_G on D(G(z')); backward (through D into G, D's weights frozen: the
            trainer computes no weight gradient it would throw away); Adam on G
    read both losses as Python floats (the trainer reports them every step)

with z drawn fresh each time (minigan: on the host, then copied, as the
trainer does; PyTorch: on the device). The losses are the seeds': hinge
(SAGAN), BCE with logits (DCGAN), BEGAN's L1 reconstruction with k_t (the k_t
update reads L(x) and L(G(z)) back, as the trainer does). The step is written
once (:func:`train_step`) and run on both frameworks through a small table of
each framework's loss functions.

The PyTorch models are ``tests/models/torch_models.py`` (the parity tests'
twins, the seeds' own layouts); weights differ, which does not change the
work done. Everything is float32, at 64x64 and the seeds' width (64) unless
``--image-size``/``--width`` say otherwise (SAGAN only: the one twin built at 32x32).

Timing: warm-up steps excluded; minigan and PyTorch interleaved in one process
(``_timing.time_interleaved``), median over ``--repeats``. Each side runs
with its own default thread count, printed in the header (what a user
gets), or with ``--threads N`` on both; ``--one-thread`` also times every
case with one thread on both sides, interleaved with the default runs repeat
by repeat (columns "1-thread"), so the default can be compared with the
single-threaded figure without the host's drift between two passes. On the GPU, steps are timed with CUDA events, the peak
GPU memory of one step is reported for each contender, and PyTorch also runs
its best small-batch mode: the whole D+G iteration captured once as a CUDA
graph and replayed (static inputs, ``Adam(capturable=True)``, no host reads).

Columns: ms/step (median), img/s = batch / step time, ratio = minigan /
PyTorch (< 1: minigan faster); on the GPU also the CUDA-graph step, the ratio
against it, and peak MiB.
"""
from __future__ import annotations

import argparse
import types

import numpy as np

import _timing
from _timing import Case, format_table, ratio

MODELS = ("sagan", "dcgan", "began")
DEFAULT_BATCHES = {"cpu": (5, 16), "cuda": (5, 64, 256)}


# ---------------------------------------------------------------------------
# the loss functions of each framework (the only place the step differs)
# ---------------------------------------------------------------------------
def minigan_losses():
    import minigan
    import minigan.ops as F

    return types.SimpleNamespace(hinge_d=F.hinge_d_loss, hinge_g=F.hinge_g_loss, bce=F.bce_with_logits,
                                 l1=F.l1_loss, no_grad=minigan.no_grad)


def torch_losses():
    import torch
    import torch.nn.functional as TF

    def bce(logits, target):
        return TF.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    return types.SimpleNamespace(
        hinge_d=lambda real, fake: torch.relu(1.0 - real).mean() + torch.relu(1.0 + fake).mean(),
        hinge_g=lambda fake: -fake.mean(), bce=bce, l1=lambda a, b: (a - b).abs().mean(),
        no_grad=torch.no_grad)


class HostKt:
    """BEGAN's k_t as a Python float, updated from the losses read back (the trainer's way)."""

    def __init__(self, gamma, lambda_k):
        self.value, self.gamma, self.lambda_k = 0.0, gamma, lambda_k

    def update(self, loss_real, loss_fake):
        balance = self.gamma * loss_real.item() - loss_fake.item()
        self.value = min(max(self.value + self.lambda_k * balance, 0.0), 1.0)


class DeviceKt(HostKt):
    """k_t as a PyTorch device scalar updated in place: no host read, so it fits in a CUDA graph."""

    def __init__(self, gamma, lambda_k, device):
        import torch

        super().__init__(gamma, lambda_k)
        self.value = torch.zeros((), device=device)

    def update(self, loss_real, loss_fake):
        import torch

        with torch.no_grad():
            balance = self.gamma * loss_real - loss_fake
            self.value.copy_((self.value + self.lambda_k * balance).clamp(0.0, 1.0))


def train_step(fw, loss, G, D, opt_d, opt_g, real, sample_z, k_t, read_back=True):
    """One D step and one G step, as Trainer.step (d_steps = 1, no augmentation, no EMA)."""
    from minigan.train.trainer import frozen  # here, not at the top: PyTorch and minigan load in _timing's order

    G.train()
    D.train()
    opt_d.zero_grad()
    with fw.no_grad():
        fake = G(sample_z())
    fake = fake.detach()
    if loss == "began":
        loss_real, loss_fake = fw.l1(real, D(real)), fw.l1(fake, D(fake))
        loss_d = loss_real - k_t.value * loss_fake
    elif loss == "hinge":
        loss_d = fw.hinge_d(D(real), D(fake))
    else:
        loss_d = fw.bce(D(real), 1.0) + fw.bce(D(fake), 0.0)
    loss_d.backward()
    opt_d.step()

    opt_g.zero_grad()
    with frozen(D):  # as Trainer.step: D's weight gradients would be computed and thrown away
        fake = G(sample_z())
        out = D(fake)
        loss_g = fw.l1(fake, out) if loss == "began" else fw.hinge_g(out) if loss == "hinge" else fw.bce(out, 1.0)
        loss_g.backward()
    opt_g.step()
    if loss == "began":
        k_t.update(loss_real, loss_fake)
    if read_back:  # the trainer logs both losses every step: one device -> host read each
        loss_d.item(), loss_g.item()


# ---------------------------------------------------------------------------
# building each contender
# ---------------------------------------------------------------------------
def real_batch(batch: int, size: int) -> np.ndarray:
    """A fixed 'real' batch in [-1, 1], float32 (N, 3, size, size)."""
    return np.random.default_rng(1).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)


def minigan_step(name: str, batch: int, device: str, size: int = 64, width: int = 64):
    """A zero-argument function running one minigan training iteration."""
    from minigan import Tensor, backend, manual_seed
    from minigan.models import build
    from minigan.optim import Adam

    manual_seed(0)
    gan = build(name, image_size=size, width=width)
    G, D, d = gan.G.to(device), gan.D.to(device), gan.defaults
    opt_d = Adam(D.parameters(), lr=d["lr_d"], betas=d["betas"])
    opt_g = Adam(G.parameters(), lr=d["lr_g"], betas=d["betas"])
    real = Tensor(backend.to_device(real_batch(batch, size), device))
    rng = np.random.default_rng(2)

    def sample_z():
        return Tensor(backend.to_device(gan.sample_z(batch, rng), device))

    k_t = HostKt(d.get("gamma", 0.5), d.get("lambda_k", 0.001))
    fw = minigan_losses()
    return lambda: train_step(fw, gan.loss, G, D, opt_d, opt_g, real, sample_z, k_t)


def torch_models(name: str, z_dim: int, size: int = 64, width: int = 64):
    """(G, D) of ``tests/models/torch_models.py``."""
    from tests.models import torch_models as T

    if name == "sagan":
        return (T.SAGANGenerator(z_dim=z_dim, conv_dim=width, image_size=size),
                T.SAGANDiscriminator(conv_dim=width, image_size=size))
    if name == "dcgan":
        return T.DCGANGenerator(z_dim=z_dim, gf_dim=width), T.DCGANDiscriminator(df_dim=width)
    return T.BEGANGenerator(z_num=z_dim, hidden_num=width), T.BEGANDiscriminator(z_num=z_dim, hidden_num=width)


def torch_step(name: str, batch: int, device: str, graph: bool = False, size: int = 64, width: int = 64):
    """One PyTorch training iteration, eager, or (``graph``) captured as one CUDA graph and replayed."""
    import torch

    from minigan.models import build

    gan = build(name, image_size=size, width=width)  # for the recipe (loss, lr, betas, z distribution) only
    d = gan.defaults
    torch.manual_seed(0)
    G, D = (m.to(device) for m in torch_models(name, gan.z_dim, size, width))
    adam = dict(betas=d["betas"], capturable=graph)
    opt_d = torch.optim.Adam(D.parameters(), lr=d["lr_d"], **adam)
    opt_g = torch.optim.Adam(G.parameters(), lr=d["lr_g"], **adam)
    real = torch.from_numpy(real_batch(batch, size)).to(device)

    def sample_z():
        if gan.z_dist == "normal":
            return torch.randn(batch, gan.z_dim, device=device)
        return torch.rand(batch, gan.z_dim, device=device) * 2 - 1

    gamma, lambda_k = d.get("gamma", 0.5), d.get("lambda_k", 0.001)
    k_t = DeviceKt(gamma, lambda_k, device) if graph else HostKt(gamma, lambda_k)
    fw = torch_losses()

    def step():
        train_step(fw, gan.loss, G, D, opt_d, opt_g, real, sample_z, k_t, read_back=not graph)

    if not graph:
        return step
    # PyTorch's recipe for whole-iteration capture: warm up on a side stream (lazy state such as
    # Adam's moments and cuDNN's plans is created outside the graph), then capture one step.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    captured = torch.cuda.CUDAGraph()
    with torch.cuda.graph(captured):
        step()
    return captured.replay


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------
def bench_one(name: str, batch: int, device: str, repeats: int, warmup: int, size: int = 64,
              width: int = 64, defaults: dict | None = None) -> dict:
    """One (model, batch) row; with ``defaults`` (the thread counts set_threads returned), every repeat also
    times both sides on one thread, interleaved with the default runs (so host drift between the two modes
    cannot pass for a thread effect)."""
    cases = [Case("minigan", minigan_step(name, batch, device, size, width), _timing.clock_for(device, "minigan")),
             Case("torch", torch_step(name, batch, device, size=size, width=width), _timing.clock_for(device, "torch"))]
    if defaults is not None:
        restore = lambda: _timing.set_threads(defaults["minigan_numba"], defaults["torch"])  # noqa: E731
        one = lambda: _timing.set_threads(1)  # noqa: E731
        for case in cases:
            case.setup = restore
        cases += [Case("minigan_1t", cases[0].fn, _timing.clock_for(device, "minigan"), setup=one),
                  Case("torch_1t", cases[1].fn, _timing.clock_for(device, "torch"), setup=one)]
    if device == "cuda":
        cases.append(Case("torch_graph", torch_step(name, batch, device, graph=True, size=size, width=width),
                          _timing.clock_for(device, "torch")))
    _timing.time_interleaved(cases, repeats=repeats, warmup=warmup)
    result = {"model": name, "device": device, "batch": batch, "image_size": size, "width": width}
    for case in cases:
        result[f"{case.name}_ms"] = case.median * 1e3
        result[f"{case.name}_img_s"] = batch / case.median
        result[f"{case.name}_times_ms"] = [t * 1e3 for t in case.times]
    result["ratio"] = ratio(result["minigan_ms"], result["torch_ms"])
    if defaults is not None:
        restore()
        result["one_thread"] = {k.replace("_1t", ""): result.pop(k) for k in list(result) if "_1t" in k}
        result["one_thread"]["ratio"] = ratio(result["one_thread"]["minigan_ms"], result["one_thread"]["torch_ms"])
    if device == "cuda":  # one more step of each, outside the timing: the memory hook slows CuPy down
        result["ratio_graph"] = ratio(result["minigan_ms"], result["torch_graph_ms"])
        for case in cases:
            framework = "minigan" if case.name == "minigan" else "torch"
            result[f"{case.name}_peak_mib"] = _timing.peak_bytes(framework, case.fn) / 2**20
    return result


def table(results: list[dict], device: str) -> str:
    header = ["model", "device", "batch", "minigan ms", "torch ms", "minigan img/s", "torch img/s", "ratio"]
    rows = [[r["model"], r["device"], r["batch"], r["minigan_ms"], r["torch_ms"], r["minigan_img_s"],
             r["torch_img_s"], r["ratio"]] for r in results]
    if results and "one_thread" in results[0]:
        header += ["1-thread minigan ms", "1-thread torch ms", "1-thread ratio", "minigan default / 1-thread"]
        for row, r in zip(rows, results):
            one = r["one_thread"]
            row += [one["minigan_ms"], one["torch_ms"], one["ratio"], ratio(r["minigan_ms"], one["minigan_ms"])]
    if device == "cuda":
        header += ["graph ms", "graph img/s", "ratio vs graph", "minigan MiB", "torch MiB", "graph MiB"]
        for row, r in zip(rows, results):
            row += [r["torch_graph_ms"], r["torch_graph_img_s"], r["ratio_graph"], r["minigan_peak_mib"],
                    r["torch_peak_mib"], r["torch_graph_peak_mib"]]
    return format_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=None,
                        help="batch sizes (default: 5 16 on the CPU, 5 64 256 on the GPU)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed steps per contender (default: 3 on the CPU, 20 on the GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 CPU, 5 GPU)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure (and each repeat) here")
    parser.add_argument("--image-size", type=int, choices=(32, 64), default=64,
                        help="image size (default 64; 32: SAGAN only, the main example's CPU size)")
    parser.add_argument("--width", type=int, default=64, help="base channel width (default 64, the seeds')")
    parser.add_argument("--one-thread", action="store_true",
                        help="also time every case with one thread on both sides, interleaved with the "
                             "default runs (CPU)")
    args, threads = _timing.parse_args(parser, "bench_train_step")
    if threads is None:
        return
    if args.image_size != 64 and set(args.models) != {"sagan"}:
        parser.error(f"--image-size {args.image_size} needs --models sagan: the PyTorch twins of DCGAN and BEGAN "
                     "are built at 64x64 only.")
    size, width = args.image_size, args.width
    gpu = args.device == "cuda"
    batches = args.batches or DEFAULT_BATCHES[args.device]
    repeats = args.repeats or (20 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    machine = _timing.describe_machine(args.device)
    print(f"one training iteration (D step + G step), {size}x{size} float32, width {width}, on {machine}; "
          f"{_timing.describe_threads(threads)}; median of {repeats} after {warmup} warm-up steps")

    defaults = None
    if args.one_thread and not gpu:
        defaults = threads
        one = _timing.set_threads(1)
        _timing.set_threads(defaults["minigan_numba"], defaults["torch"])
        print(f"and, interleaved with them, {_timing.describe_threads(one)}")
        threads = dict(defaults, one_thread=one)
    results = []
    for name in args.models:
        for batch in batches:
            results.append(bench_one(name, batch, args.device, repeats, warmup, size, width, defaults))
            r = results[-1]
            line = f"  {name} batch {batch}: minigan {r['minigan_ms']:.1f} ms, torch {r['torch_ms']:.1f} ms"
            if defaults is not None:
                line += (f"; 1 thread: minigan {r['one_thread']['minigan_ms']:.1f} ms, "
                         f"torch {r['one_thread']['torch_ms']:.1f} ms")
            print(line, flush=True)
    print()
    print(table(results, args.device))
    _timing.write_json(args.json, {"benchmark": "train_step", "machine": machine, "threads": threads,
                                   "repeats": repeats, "warmup": warmup, "results": results})


if __name__ == "__main__":
    main()
