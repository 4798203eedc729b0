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
* a large product is split into ``width()`` blocks of columns (or rows), each
  one single-threaded GEMM on its own thread of :func:`parallel`; threads
  that have no work sleep on a queue, they never spin;
* numba's parallel kernels use the same count and run only above a size
  (``cpu.SERIAL_BELOW``); numba's workqueue threads sleep between kernels.

Nothing runs two pools at once: the caller blocks while the pool works.
``NUMBA_NUM_THREADS`` (or ``numba.set_num_threads``) is the one knob.
"""
from __future__ import annotations

import os
import queue
import threading

import numba
import numpy as np
import threadpoolctl

#: below this many floating-point operations a product stays on the calling
#: thread: handing a block to another thread costs ~20-50 us.
PARALLEL_FLOPS = 8_000_000


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset and cgroup CPU sets
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# numba counts every core of the machine, even under taskset.
if numba.get_num_threads() > _available_cores():
    numba.set_num_threads(_available_cores())
threadpoolctl.threadpool_limits(1, user_api="blas")


def width() -> int:
    """How many threads minigan's CPU work uses."""
    return numba.get_num_threads()


class _Pool:
    """Persistent worker threads; the caller always runs the first share itself."""

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
            fn, item, slot, results, done = self.tasks.get()
            try:
                results[slot] = fn(item)
            except BaseException as exc:  # re-raised by the caller
                results[slot] = exc
            done.release()


_pool = _Pool()


def parallel(fn, items):
    """``[fn(item) for item in items]``, the items shared out over ``width()`` threads.

    The results come back in the order of ``items``, whatever thread ran
    each, so a caller that sums them gets the same bits on every run. ``fn``
    must release the GIL for its heavy part (NumPy's matmul and minigan's
    ``nogil`` numba kernels do) and must not call :func:`parallel` itself.
    """
    items = list(items)
    threads = min(width(), len(items))
    if threads <= 1 or threading.current_thread() in _pool.workers:
        return [fn(item) for item in items]
    _pool.grow(threads - 1)
    results = [None] * len(items)
    done = threading.Semaphore(0)
    for slot in range(1, len(items)):
        _pool.tasks.put((fn, items[slot], slot, results, done))
    results[0] = fn(items[0])
    for _ in range(len(items) - 1):
        done.acquire()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def _blocks(size, count):
    step = -(-size // count)
    return [(lo, min(size, lo + step)) for lo in range(0, size, step)]


def matmul(a, b):
    """``a @ b`` for 2-D arrays, split over the threads when it is large enough to pay."""
    m, k = a.shape
    n = b.shape[1]
    threads = width()
    if threads <= 1 or 2 * m * n * k < PARALLEL_FLOPS or max(m, n) < 2 * threads:
        return a @ b
    out = np.empty((m, n), dtype=np.result_type(a, b))
    if n >= m:  # blocks of columns: out[:, j0:j1] = a @ b[:, j0:j1]
        def block(span):
            np.matmul(a, b[:, span[0]:span[1]], out=out[:, span[0]:span[1]])
        parallel(block, _blocks(n, threads))
    else:  # blocks of rows
        def block(span):
            np.matmul(a[span[0]:span[1]], b, out=out[span[0]:span[1]])
        parallel(block, _blocks(m, threads))
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
