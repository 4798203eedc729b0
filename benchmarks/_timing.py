"""What every benchmark here shares: clocks, interleaved timing, napkin math, tables.

The machines these run on are often shared (other test suites, other
benchmarks), so no figure is trusted on its own: every contender is timed in
the same process, *interleaved* (repeat r runs all of them, in an order that
rotates with r), and the report is the median over repeats and the ratio of
medians. A burst of load then hits both sides of a ratio alike.

Clocks:

* :class:`WallClock` -- ``time.perf_counter`` (CPU work);
* :class:`CudaEventClock` -- CUDA events recorded on the current stream,
  for CuPy (``cupy.cuda.Event``) or PyTorch (``torch.cuda.Event``). The
  device is synchronised before ``start`` and at ``stop``, so a measurement
  covers exactly the timed calls, host overhead included (a GPU waiting for a
  slow Python host is idle time the user pays for).

Napkin math (llm.c's habit): :func:`gbps` for memory-bound kernels (bytes read
+ written / time), :func:`gflops` for convolutions and matrix products.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/x.py` from anywhere: minigan and tests/ import
    sys.path.insert(0, ROOT)

NO_GPU = "no GPU: skipped"


# ---------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------
def set_threads(requested: int | None = None, torch_requested: int | None = None) -> dict:
    """Each side's thread counts, as the user gets them: both defaults, or ``requested`` threads on both.

    minigan's one knob is numba's thread count (minigan.backend.threads: its
    own pool has that width and NumPy's BLAS runs one thread per block);
    PyTorch's is ``torch.set_num_threads``. Returns what each side uses.
    """
    import numba
    import threadpoolctl
    import torch

    from minigan.backend import threads

    if requested:
        numba.set_num_threads(min(requested, threads._available_cores()))
        torch.set_num_threads(torch_requested or requested)
    blas = sorted({lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                   if lib["user_api"] == "blas" and "numpy" in lib["filepath"]})
    return {"minigan": threads.width(), "minigan_numba": numba.get_num_threads(),
            "minigan_blas_per_call": blas[0] if len(blas) == 1 else blas,
            "torch": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads()}


def parse_args(parser, script: str):
    """Add ``--threads``, parse, and set each side's threads: returns (args, thread counts).

    The counts are None when ``--device cuda`` was asked for and no GPU is
    there (the script then prints why and exits with status 0).
    """
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both minigan and PyTorch (default: each one's own default)")
    args = parser.parse_args()
    if getattr(args, "device", "cpu") == "cuda" and not gpu_available():
        print(f"{script} --device cuda: {NO_GPU} (CuPy or PyTorch sees no CUDA GPU)")
        return args, None
    return args, set_threads(args.threads)


def describe_threads(counts: dict) -> str:
    from minigan.backend import threads

    products = (f"products of {threads.PARALLEL_FLOPS / 1e6:g} MFLOP and up on {counts['minigan']} BLAS threads, "
                f"the rest on 1" if counts["minigan"] > 1 else "every product on 1 BLAS thread")
    return (f"minigan {counts['minigan']} threads ({products}; NumPy BLAS at {counts['minigan_blas_per_call']} "
            f"between products), torch {counts['torch']} threads "
            f"(interop {counts['torch_interop']})")


def gpu_available() -> bool:
    """True when both sides can run on a GPU: CuPy sees one (minigan) and PyTorch has CUDA."""
    from minigan import backend

    if not backend.cuda_available():
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def describe_machine(device: str) -> str:
    """One line naming what the figures were measured on."""
    import platform

    if device == "cuda":
        import torch

        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores; {describe_blas()}"


def describe_blas() -> str:
    """The kernels each side's BLAS runs: NumPy's OpenBLAS picks them by CPU at load time unless
    OPENBLAS_CORETYPE forces a set (some machines set it for older OpenBLAS builds; on the AMD EPYC host
    it pins Haswell's AVX2 kernels where a current NumPy picks SkylakeX's AVX-512 ones, 1.7-1.9x faster
    products). A forced set is named, so a table never passes it off as what users get."""
    import numpy  # noqa: F401  (loads its BLAS)
    import threadpoolctl

    numpy_blas = [f"{lib['internal_api']} {lib.get('version') or ''} {lib.get('architecture') or ''}".strip()
                  for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas" and "numpy" in lib["filepath"]]
    line = f"NumPy BLAS: {', '.join(numpy_blas) or 'unknown'}"
    forced = [f"{name}={os.environ[name]}" for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if name in os.environ]
    if forced:
        line += f" (forced by {' '.join(forced)}: OpenBLAS picks by CPU without it)"
    try:
        import torch

        line += f"; torch: {torch.backends.cpu.get_cpu_capability()}"
    except (ImportError, AttributeError):
        pass
    return line


# ---------------------------------------------------------------------------
# clocks
# ---------------------------------------------------------------------------
class WallClock:
    """Host wall time; ``stop`` returns seconds since ``start``."""

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        return time.perf_counter() - self._t0


class CudaEventClock:
    """Seconds between two CUDA events on the current stream (``framework``: "cupy" or "torch")."""

    def __init__(self, framework: str):
        if framework == "cupy":
            import cupy

            self._event = cupy.cuda.Event
            self._sync = cupy.cuda.Device().synchronize
            self._elapsed_ms = cupy.cuda.get_elapsed_time
        elif framework == "torch":
            import torch

            self._event = lambda: torch.cuda.Event(enable_timing=True)
            self._sync = torch.cuda.synchronize
            self._elapsed_ms = lambda a, b: a.elapsed_time(b)
        else:
            raise ValueError(f"CudaEventClock: framework must be 'cupy' or 'torch', not {framework!r}.")

    def start(self) -> None:
        self._sync()  # nothing queued from before may land inside the measurement
        self._begin, self._end = self._event(), self._event()
        self._begin.record()

    def stop(self) -> float:
        self._end.record()
        self._end.synchronize()
        return self._elapsed_ms(self._begin, self._end) / 1e3


def clock_for(device: str, framework: str):
    """The clock to time ``framework`` ("minigan" or "torch") on ``device``."""
    if device == "cpu":
        return WallClock()
    return CudaEventClock("cupy" if framework == "minigan" else "torch")


# ---------------------------------------------------------------------------
# interleaved timing
# ---------------------------------------------------------------------------
@dataclass
class Case:
    """One contender: ``fn()`` does one unit of work (a step, a kernel call), timed by ``clock``."""

    name: str
    fn: Callable[[], object]
    clock: object
    times: list = field(default_factory=list)  # seconds per call, one entry per repeat
    setup: Callable[[], object] | None = None  # run before each repeat (and warm-up), outside the clock

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def calls_per_repeat(case: Case, target_s: float, max_calls: int = 10_000) -> int:
    """How many back-to-back calls make one repeat last about ``target_s`` (>= 1).

    Tiny kernels (tens of microseconds) are timed in batches, so the clock's
    own cost and resolution vanish from the figure.
    """
    case.clock.start()
    case.fn()
    once = max(case.clock.stop(), 1e-7)
    return int(min(max(1, target_s // once), max_calls))


def time_interleaved(cases: list[Case], repeats: int, warmup: int = 1, target_s: float = 0.0) -> list[Case]:
    """Time every case ``repeats`` times, interleaved; fills ``case.times`` (s per call).

    ``case.setup`` (when given) runs before each case's warm-up and each of its repeats, untimed
    (e.g. the thread counts it is timed at). ``warmup`` untimed calls of each case come first (numba compilation, CUDA
    module loading, allocator pools, PyTorch's lazy init). With ``target_s``
    > 0 each repeat runs a case enough times to last about that long
    (:func:`calls_per_repeat`); otherwise one call per repeat.
    """
    for case in cases:
        if case.setup is not None:
            case.setup()
        for _ in range(warmup):
            case.fn()
    number = {}
    for case in cases:
        if case.setup is not None and target_s > 0:
            case.setup()
        number[case.name] = calls_per_repeat(case, target_s) if target_s > 0 else 1
    for r in range(repeats):
        shift = r % len(cases)  # rotate the order, so neither side always runs first
        for case in cases[shift:] + cases[:shift]:
            n = number[case.name]
            if case.setup is not None:
                case.setup()
            case.clock.start()
            for _ in range(n):
                case.fn()
            case.times.append(case.clock.stop() / n)
    return cases


# ---------------------------------------------------------------------------
# temporary patches (instrumentation)
# ---------------------------------------------------------------------------
class Patches:
    """Attributes replaced for a while (``patch``) and put back in reverse order (``restore``)."""

    def __init__(self):
        self._undo = []

    def patch(self, owner, name: str, replacement) -> None:
        self._undo.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, replacement)

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()


# ---------------------------------------------------------------------------
# GPU memory
# ---------------------------------------------------------------------------
def cupy_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes in use in CuPy's default memory pool while ``fn()`` runs.

    A :class:`cupy.cuda.MemoryHook` follows every allocation from and return
    to the pool, so the peak inside the call is exact (the pool's own
    ``used_bytes()`` is only visible before and after). The hook slows CuPy
    down: call this outside any timing.
    """
    import cupy

    class PeakHook(cupy.cuda.MemoryHook):
        name = "minigan_benchmark_peak"

        def __init__(self, in_use):
            self.current = self.peak = in_use

        def malloc_postprocess(self, **kw):
            self.current += kw["mem_size"]
            self.peak = max(self.peak, self.current)

        def free_postprocess(self, **kw):
            self.current -= kw["mem_size"]

    cupy.cuda.Device().synchronize()
    hook = PeakHook(cupy.get_default_memory_pool().used_bytes())
    with hook:
        fn()
        cupy.cuda.Device().synchronize()
    return hook.peak


def torch_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes PyTorch's CUDA caching allocator had allocated while ``fn()`` runs."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def peak_bytes(framework: str, fn: Callable[[], object]) -> int:
    return cupy_peak_bytes(fn) if framework == "minigan" else torch_peak_bytes(fn)


# ---------------------------------------------------------------------------
# napkin math and reporting
# ---------------------------------------------------------------------------
def gbps(nbytes: float, seconds: float) -> float:
    """Achieved bandwidth, GB/s (1e9 bytes)."""
    return nbytes / seconds / 1e9


def gflops(flops: float, seconds: float) -> float:
    """Achieved rate, GFLOP/s."""
    return flops / seconds / 1e9


def ratio(ours: float, theirs: float) -> float:
    """minigan / torch: below 1 means minigan is faster."""
    return ours / theirs


def format_table(header: list[str], rows: list[list]) -> str:
    """A plain-text table, columns right-aligned except the first two."""
    cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 100:
            return f"{v:.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"
    return str(v)


def write_json(path: str | None, payload: dict) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {path}")
