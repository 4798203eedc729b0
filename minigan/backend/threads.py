"""One thread design for the CPU: minigan's threads share the cores with nobody.

Measured on a 2-core machine: after each multi-threaded matrix product,
OpenBLAS's worker threads keep spinning (``sched_yield`` in a loop, 30-45 ms
of CPU time per product) before they sleep. Those spinning threads take the
cores that numba's kernels, the next product and any other framework in the
process need, and a multi-threaded GEMM waits at its barrier for a worker
the scheduler has parked. The SAGAN step with both pools at 2 threads ran
2-10x slower than with BLAS at 1 thread.

So there is one set of threads, ``width()`` of them (numba's thread count,
clamped to the cores this process may run on):

* NumPy's BLAS runs single-threaded (set once, when this module is imported);
* a large product is split into blocks of columns (or rows), each one
  single-threaded GEMM, that the threads of :func:`parallel` take in turn; threads
  that have no work sleep on a queue, they never spin;
* numba's parallel kernels use the same count and run only above a size
  (``cpu.SERIAL_BELOW``); numba's workqueue threads sleep between kernels.

Nothing runs two pools at once: the caller blocks while the pool works.
``NUMBA_NUM_THREADS`` (or ``numba.set_num_threads``) is the one knob.
"""
from __future__ import annotations

import itertools
import os
import queue
import threading
import time

import numba
import numpy as np
import threadpoolctl

#: below this many floating-point operations a product stays on the calling
#: thread: handing a block to another thread costs ~20-50 us, and the main
#: example's products (SAGAN 32x32, width 32, batch 16) ran slower split. Measured
#: on the idle 2-core machine, 300 of its steps: 8 MFLOP 33 s, 64 MFLOP 25.7 s
#: (= one thread, 25.2 s); the 64x64 steps of bench_train_step.py unchanged.
PARALLEL_FLOPS = 64_000_000


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset and cgroup CPU sets
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# numba counts every core of the machine, even under taskset.
if numba.get_num_threads() > _available_cores():
    numba.set_num_threads(_available_cores())
# NumPy's own BLAS only: another framework's (PyTorch's MKL) keeps its threads.
for _blas in threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers:
    if "numpy" in _blas.filepath:
        _blas.set_num_threads(1)


def width() -> int:
    """How many threads minigan's CPU work uses."""
    return numba.get_num_threads()


class _Pool:
    """Persistent worker threads that sleep on a queue between calls."""

    def __init__(self):
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.workers: list[threading.Thread] = []

    def grow(self, count):
        while len(self.workers) < count:
            worker = threading.Thread(target=self._work, name=f"minigan-{len(self.workers) + 1}", daemon=True)
            worker.start()
            self.workers.append(worker)

    def _work(self):
        while True:
            drain, done = self.tasks.get()
            drain()
            done.release()


_pool = _Pool()

#: when the caller, done with its share, waits for the pool longer than this
#: share of a call, the pool's threads are being parked by the scheduler
#: (other processes hold the cores): the next calls run on the caller alone,
#: 2, 4, ... up to MAX_BACKOFF calls, then the pool is tried again. Measured
#: under a load average of 3.6 on 2 cores: splitting every product doubled
#: the SAGAN step (796 vs 404 ms); on an idle machine the wait stays small
#: and nothing backs off.
LATE_SHARE = 0.25
MAX_BACKOFF = 256


class _Health:
    skip = 0     # calls left to run on the caller alone
    backoff = 1  # how many the next late call skips


def _record(waited, total):
    if waited > LATE_SHARE * total:
        _Health.skip = _Health.backoff
        _Health.backoff = min(2 * _Health.backoff, MAX_BACKOFF)
    else:
        _Health.backoff = max(1, _Health.backoff // 2)


def parallel(fn, items):
    """``[fn(item) for item in items]``, the items shared out over ``width()`` threads.

    The caller and ``width() - 1`` pool threads each take the next item until
    none is left. The results come back in the order of ``items``, whatever
    thread ran each, so a caller that sums them gets the same bits on every
    run. When the pool's threads come late (see ``LATE_SHARE``), the caller
    runs the next calls alone. ``fn`` must release the GIL for its heavy part (NumPy's matmul and
    minigan's ``nogil`` numba kernels do) and must not call :func:`parallel`.
    """
    items = list(items)
    threads = min(width(), len(items))
    if threads <= 1 or threading.current_thread() in _pool.workers or _Health.skip > 0:
        _Health.skip = max(0, _Health.skip - (threads > 1))
        return [fn(item) for item in items]
    _pool.grow(threads - 1)
    results = [None] * len(items)
    failures = []
    next_index = itertools.count()  # next() on it is atomic under the GIL

    def drain():
        for i in iter(next_index.__next__, None):
            if i >= len(items) or failures:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # re-raised by the caller
                failures.append(exc)

    done = threading.Semaphore(0)
    for _ in range(threads - 1):
        _pool.tasks.put((drain, done))
    start = time.perf_counter()
    drain()
    own = time.perf_counter()
    for _ in range(threads - 1):
        done.acquire()
    end = time.perf_counter()
    _record(end - own, end - start)
    if failures:
        raise failures[0]
    return results


def _blocks(size, count):
    step = -(-size // count)
    return [(lo, min(size, lo + step)) for lo in range(0, size, step)]


def matmul(a, b):
    """``a @ b``, split over the threads when it is large enough to pay (NumPy arrays; others pass through).

    2-D products are cut into blocks of columns (or of rows, when there are
    more rows), batched ones (same batch shape on both sides) into blocks of
    the batch. Each block is one single-threaded BLAS call.
    """
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.ndim < 2 or b.ndim < 2:
        return a @ b
    (m, k), n = a.shape[-2:], b.shape[-1]
    batch = a.shape[:-2]
    threads = width()
    if threads <= 1 or 2 * m * n * k * int(np.prod(batch)) < PARALLEL_FLOPS or b.shape[:-2] != batch:
        return a @ b
    out = np.empty((*batch, m, n), dtype=np.result_type(a, b))
    # more blocks than threads (each still worth a hand-over), taken dynamically by parallel():
    # a thread the scheduler parks (other processes on the cores) holds up one block, not half the product
    blocks = max(threads, min(4 * threads, 2 * m * n * k * int(np.prod(batch)) // max(PARALLEL_FLOPS, 1)))
    if batch:
        a3, b3, o3 = a.reshape(-1, m, k), b.reshape(-1, k, n), out.reshape(-1, m, n)
        if len(a3) < threads:
            return a @ b
        parts = [(slice(lo, hi),) * 3 for lo, hi in _blocks(len(a3), blocks)]
    elif max(m, n) < 2 * threads:
        return a @ b
    elif n >= m:  # out[:, j0:j1] = a @ b[:, j0:j1]
        a3, b3, o3 = a, b, out
        parts = [(slice(None), (slice(None), slice(lo, hi)), (slice(None), slice(lo, hi)))
                 for lo, hi in _blocks(n, blocks)]
    else:  # out[i0:i1] = a[i0:i1] @ b
        a3, b3, o3 = a, b, out
        parts = [(slice(lo, hi), slice(None), slice(lo, hi)) for lo, hi in _blocks(m, blocks)]

    def block(part):
        np.matmul(a3[part[0]], b3[part[1]], out=o3[part[2]])

    parallel(block, parts)
    return out


_local = threading.local()


def scratch(shape, dtype):
    """An uninitialised array of ``shape`` in this thread's reused buffer (valid until its next call).

    A block of work that fits the core's cache is only fast if its buffer is
    not a fresh allocation each time (page faults, and glibc's mmap for
    anything over its threshold).
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < size:
        buf = _local.buf = np.empty(size, dtype=np.uint8)
    return buf[:size].view(dtype).reshape(shape)
