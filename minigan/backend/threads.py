"""One thread design for the CPU: the cores go to the matrix products, one pool at a time.

``width()`` threads (numba's thread count, clamped to the cores this process
may run on) and one rule: never two pools working, or spinning, at once.

* A product of at least ``PARALLEL_FLOPS`` runs on ``width()`` threads of
  NumPy's BLAS (:func:`matmul`), for the length of that call only; below it, and
  everywhere else, BLAS runs one thread. OpenBLAS partitions a GEMM better than
  blocks handed to threads from Python (2 cores, a 336 MFLOP product: 1.42 ms
  on 2 BLAS threads, 1.68 ms as two halves on two Python threads, 2.73 ms on one).
* OpenBLAS's workers sleep ~1.6 ms after a product (``BLAS_SPIN``). By
  default they spin (``sched_yield`` in a loop) for ~0.1 s first, on the core
  minigan's own threads need next: with that spin, SAGAN batch 5 took 436 ms a
  step with numba's parallel kernels against 314 ms without them, and
  BEGAN batch 5 took 1.40 s against 1.05 s once the workers slept.
* The numba kernels run on the calling thread (no numba ``parallel``); large
  loops are cut into ranges for minigan's threads instead (below).
* :func:`parallel` runs independent items (the blocks of the CPU's stride-1
  convolutions) on minigan's own threads, each product inside at one BLAS
  thread; the threads sleep on a queue between calls. :func:`over_ranges`
  cuts a large loop (a kernel's outer loop, a layout copy) into ``width()``
  ranges for it, from ``SPLIT_WORK`` elements.

The thread count of a product depends on its shapes alone, never on timing:
OpenBLAS on 1 and 2 threads can differ in the last bit (long reductions), so a
run repeats itself bit for bit on the same machine and thread count.
``NUMBA_NUM_THREADS`` (or ``numba.set_num_threads``) is the one knob.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import os
import queue
import threading
import time

import numba
import numpy as np
import threadpoolctl

#: below this many floating-point operations a product runs on one BLAS
#: thread: waking the second costs more than it saves. Measured on the idle
#: 2-core machine (OpenBLAS 0.3.31, float32): 4 MFLOP products 0.87-0.94x as
#: fast on 2 threads, 8 MFLOP 1.25x, 17-33 MFLOP 1.4-1.8x, 168 MFLOP 1.9x.
PARALLEL_FLOPS = 8_000_000

#: a loop touching at least this many elements is cut into ``width()`` ranges
#: run side by side (:func:`over_ranges`); below it, waking a pool thread and
#: sharing the memory bus cost more than the second core gives back. Measured on
#: the idle 2-core machine, whole steps in separate processes (quiet BLAS
#: workers), against 4M: at 256K elements SAGAN-5 317-327 vs 270-275 ms and
#: SAGAN-16 775-791 vs 670-681; at 1M DCGAN-16 468-470 vs 494-505 but SAGAN-16
#: 734-837. (With OpenBLAS's default spin, 256K had cost 3-5% and 4M gained.)
SPLIT_WORK = 1 << 22


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset and cgroup CPU sets
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# numba counts every core of the machine, even under taskset.
if numba.get_num_threads() > _available_cores():
    numba.set_num_threads(_available_cores())
# NumPy's own BLAS only: another framework's (PyTorch's MKL) keeps its threads.
_NUMPY_BLAS = [lib for lib in threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
               if "numpy" in lib.filepath]
for _blas in _NUMPY_BLAS:
    _blas.set_num_threads(1)

#: how long OpenBLAS's workers spin after a product before they sleep: 2^BLAS_SPIN
#: cycles, OpenBLAS's OPENBLAS_THREAD_TIMEOUT. Its default, 28, is ~0.1 s on this
#: Xeon (measured: 105 ms of a core's time after each threaded product), and a
#: spinning worker holds the core minigan's own threads need for the kernels
#: between products. Sleeping at once (4, the least OpenBLAS accepts) costs
#: ~60 us to wake the worker (this KVM guest) for the next product: a 5 MFLOP
#: product took 122 us on 2 threads against 64 on one. 22 (~1.6 ms) covers the
#: gaps between a layer's products and still leaves the core long before the
#: pool's next work. Measured, steps interleaved in one process, against 4:
#: 22 the main example 0.91-0.93, SAGAN-5 0.97, SAGAN-16 0.93-0.94, DCGAN
#: and BEGAN-5 0.99-1.01; 28 the main example 0.92 but SAGAN 1.11, BEGAN-5 1.39.
BLAS_SPIN = 22


def _quiet_blas_workers(controllers, spin=BLAS_SPIN):
    """Make each OpenBLAS in ``controllers`` spin 2^spin cycles after a product, not 2^28; returns
    the libraries changed.

    OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when it loads (with NumPy,
    usually before minigan), and starts its workers with it. Its exported
    ``openblas_read_env`` reads the environment again, and shutting its
    threads down (what it does itself around a fork) makes the next threaded
    product start them with the new value. A user's own OPENBLAS_THREAD_TIMEOUT is kept.
    A BLAS without these entry points (not OpenBLAS, or built otherwise) is left as it is.
    """
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ and os.environ["OPENBLAS_THREAD_TIMEOUT"] != str(spin):
        return []
    changed = []
    for controller in controllers:
        if controller.internal_api != "openblas":
            continue
        try:
            lib = ctypes.CDLL(controller.filepath)
            read_env, timeout, shutdown = lib.openblas_read_env, lib.openblas_thread_timeout, lib.blas_thread_shutdown_
        except (OSError, AttributeError):
            continue
        timeout.restype = ctypes.c_int
        if timeout() == spin:
            continue
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(spin)
        read_env()
        shutdown()  # the workers restart, with the new value, at the next threaded product
        changed.append(controller.filepath)
    return changed


_quiet_blas_workers(_NUMPY_BLAS)


_local = threading.local()  # per thread: its scratch buffers; whether it is running a parallel() item


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
            # drop the call's closure before sleeping: it holds the caller's arrays (measured: the
            # last softmax's 2 x 8 MB stayed alive until the pool's next call, and generate's peak grew)
            del drain
            done.release()
            del done


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


@contextlib.contextmanager
def _one_thread_products():
    """Inside a parallel() item: its products run on this thread alone, a parallel() in it on this thread."""
    was, _local.in_parallel = getattr(_local, "in_parallel", False), True
    try:
        yield
    finally:
        _local.in_parallel = was


def parallel(fn, items):
    """``[fn(item) for item in items]``, the items shared out over ``width()`` threads.

    The caller and ``width() - 1`` pool threads each take the next item until
    none is left. The results come back in the order of ``items``, whatever
    thread ran each, so a caller that sums them gets the same bits on every
    run. When the pool's threads come late (see ``LATE_SHARE``), the caller
    runs the next calls alone. ``fn`` must release the GIL for its heavy part (NumPy's matmul and
    minigan's ``nogil`` numba kernels do); a parallel() inside it runs on its thread.
    """
    items = list(items)
    threads = min(width(), len(items))
    if threads <= 1 or getattr(_local, "in_parallel", False) or _Health.skip > 0:  # nested: on this thread
        _Health.skip = max(0, _Health.skip - (threads > 1))
        with _one_thread_products():  # the same products as in the pool
            return [fn(item) for item in items]
    _pool.grow(threads - 1)
    results = [None] * len(items)
    failures = []
    next_index = itertools.count()  # next() on it is atomic under the GIL

    def drain():
        with _one_thread_products():
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


def _set_blas_threads(count):
    for lib in _NUMPY_BLAS:
        lib.set_num_threads(count)


def matmul(a, b):
    """``a @ b``; a product large enough to pay runs on ``width()`` BLAS threads (NumPy arrays; others pass through).

    Only for the length of the call: BLAS is back at one thread when it returns, so
    the spinning of its workers never meets minigan's pool or another caller's threads.
    The thread count depends on the shapes alone, never on timing: OpenBLAS on 1 and 2
    threads can differ in the last bit (long reductions), so a run must always make
    the same choice to repeat itself bit for bit.
    """
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.ndim < 2 or b.ndim < 2:
        return a @ b
    (m, k), n = a.shape[-2:], b.shape[-1]
    threads = width()
    batch = max(math.prod(a.shape[:-2]), math.prod(b.shape[:-2]))
    if threads <= 1 or getattr(_local, "in_parallel", False) or 2 * m * n * k * batch < PARALLEL_FLOPS:
        return a @ b
    _set_blas_threads(threads)
    try:
        return a @ b
    finally:
        _set_blas_threads(1)


def over_ranges(total, work, run):
    """``run(lo, hi)`` over [0, total), in ``width()`` contiguous ranges on minigan's threads when ``work``
    (elements touched) is at least ``SPLIT_WORK``, else in one call. The iterations of a range are those of
    the whole loop, so the results are the same bits whatever the thread count."""
    parts = min(width(), total) if work >= SPLIT_WORK else 1
    if parts <= 1:
        run(0, total)
        return
    step = -(-total // parts)
    parallel(lambda lo: run(lo, min(total, lo + step)), range(0, total, step))


def scratch(shape, dtype, slot: int = 0):
    """An uninitialised array of ``shape`` in this thread's reused buffer number ``slot`` (valid until
    the next call for the same slot on this thread).

    A block of work that fits the core's cache is only fast if its buffer is
    not a fresh allocation each time (page faults, and glibc's mmap for
    anything over its threshold).
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    bufs = _local.__dict__.setdefault("bufs", {})
    buf = bufs.get(slot)
    if buf is None or buf.size < size:
        buf = bufs[slot] = np.empty(size, dtype=np.uint8)
    return buf[:size].view(dtype).reshape(shape)
