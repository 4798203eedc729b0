"""minigan.backend.threads: one pool at a time (large products on BLAS threads, the rest on one thread)."""
import threading

import numpy as np
import pytest
import threadpoolctl

from minigan.backend import threads


@pytest.fixture
def two_threads(monkeypatch):
    """Two threads and no size threshold, so even small products go to two BLAS threads."""
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(threads, "PARALLEL_FLOPS", 0)
    monkeypatch.setattr(threads._Health, "skip", 0)  # tiny test work always "waits" for the pool: no back-off
    monkeypatch.setattr(threads, "LATE_SHARE", float("inf"))


@pytest.fixture
def blas_calls(monkeypatch):
    """The BLAS thread counts threads.matmul sets, in order (and still sets them)."""
    calls = []
    real = threads._set_blas_threads
    monkeypatch.setattr(threads, "_set_blas_threads", lambda count: calls.append(count) or real(count))
    return calls


def numpy_blas_threads():
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas" and "numpy" in lib["filepath"]]


def test_numpys_blas_runs_single_threaded_after_import():
    assert numpy_blas_threads() and set(numpy_blas_threads()) == {1}


def test_width_never_exceeds_the_cores_this_process_may_use():
    assert 1 <= threads.width() <= threads._available_cores()


SHAPES = [((7, 5), (5, 9)),            # more columns: blocks of columns
          ((9, 5), (5, 3)),            # more rows: blocks of rows
          ((3, 4, 6), (3, 6, 5)),      # batched: blocks of the batch
          ((2, 3, 4, 6), (2, 3, 6, 5)),
          ((1, 4, 6), (1, 6, 5)),      # a batch of one: not split
          ((4, 6), (2, 6, 5)),         # broadcast: not split
          ((1, 1), (1, 1))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape_a,shape_b", SHAPES)
def test_threaded_matmul_equals_numpy_and_leaves_blas_at_one_thread(two_threads, blas_calls, shape_a, shape_b,
                                                                     dtype):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(shape_a).astype(dtype), rng.standard_normal(shape_b).astype(dtype)
    a_t = np.ascontiguousarray(a.swapaxes(-1, -2)).swapaxes(-1, -2)  # a transposed view, as conv passes w.T
    for left in (a, a_t):
        got = threads.matmul(left, b)
        assert got.dtype == (left @ b).dtype
        np.testing.assert_allclose(got, left @ b, rtol=1e-6 if dtype == np.float32 else 1e-13)
    assert blas_calls == [2, 1, 2, 1]  # two threads for each product, one again after it
    assert set(numpy_blas_threads()) == {1}


def test_the_blas_thread_count_follows_the_shapes_alone(monkeypatch, blas_calls):
    """Small products, one-thread runs and products inside parallel() items never touch BLAS's threads."""
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(threads._Health, "skip", 0)
    monkeypatch.setattr(threads, "LATE_SHARE", float("inf"))
    small = np.ones((8, 8), np.float32)  # 1 kFLOP
    side = int(round((threads.PARALLEL_FLOPS / 2) ** (1 / 3))) + 1
    large = np.ones((side, side), np.float32)  # just over PARALLEL_FLOPS
    threads.matmul(small, small)
    assert blas_calls == []
    threads.matmul(large, large)
    assert blas_calls == [2, 1]
    threads.parallel(lambda _: threads.matmul(large, large), range(4))
    assert blas_calls == [2, 1]
    threads._Health.skip = 3  # the pool backed off: the items run on the caller, their products as in the pool
    threads.parallel(lambda _: threads.matmul(large, large), range(4))
    assert blas_calls == [2, 1]
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 1)
    threads.matmul(large, large)
    assert blas_calls == [2, 1]


def test_blas_is_back_at_one_thread_when_a_product_fails(two_threads):
    with pytest.raises(ValueError):
        threads.matmul(np.ones((3, 4)), np.ones((5, 6)))
    assert set(numpy_blas_threads()) == {1}


def test_parallel_keeps_order_uses_the_pool_and_reraises(two_threads):
    both = threading.Barrier(2, timeout=10)  # passes only when two threads run fn at the same time

    def record(i):
        if i < 2:
            both.wait()
        return i, threading.current_thread().name

    names = threads.parallel(record, range(6))
    assert [i for i, _ in names] == list(range(6))
    assert len({name for _, name in names}) == 2

    def fail(i):
        if i == 3:
            raise ValueError("block 3")
        return i

    with pytest.raises(ValueError, match="block 3"):
        threads.parallel(fail, range(6))
    assert threads.parallel(lambda i: i * i, range(4)) == [0, 1, 4, 9]  # the pool survives a failure


def test_scratch_is_reused_per_thread():
    a = threads.scratch((4, 8), np.float32)
    b = threads.scratch((2, 3), np.float64)
    assert a.shape == (4, 8) and b.dtype == np.float64 and np.shares_memory(a, b)


def test_a_late_pool_backs_off_to_the_caller_then_is_tried_again(two_threads, monkeypatch):
    """When the caller waits for a parked pool thread, the next calls run on the caller alone."""
    import time

    monkeypatch.setattr(threads, "LATE_SHARE", 0.25)
    monkeypatch.setattr(threads._Health, "backoff", 4)
    caller = threading.current_thread().name

    def slow_in_pool(i):
        if threading.current_thread().name != caller:
            time.sleep(0.05)  # a pool thread the scheduler parked
        return threading.current_thread().name

    threads.parallel(slow_in_pool, range(2))
    assert threads._Health.skip == 4
    for _ in range(4):
        assert set(threads.parallel(slow_in_pool, range(4))) == {caller}
    assert threads._Health.skip == 0
    both = threading.Barrier(2, timeout=10)
    assert len(set(threads.parallel(lambda i: both.wait() or threading.current_thread().name, range(2)))) == 2


@pytest.mark.parametrize("shape", [(3, 5, 4, 4), (7, 2, 3, 1), (1, 9, 2, 2)])
def test_the_threaded_layout_copy_equals_numpys(two_threads, monkeypatch, shape):
    """conv's (N, C, H, W) <-> (C, N*H*W) copies, cut into blocks for minigan's threads."""
    from minigan.ops import conv

    monkeypatch.setattr(threads, "SPLIT_WORK", 0)
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = conv._channels_first(a)
    np.testing.assert_array_equal(got, np.ascontiguousarray(a.transpose(1, 0, 2, 3)).reshape(shape[1], -1))
    n, c, h, w = shape
    np.testing.assert_array_equal(conv._batch_first(got, n, h, w), a)
    assert got.flags.c_contiguous


def test_the_pool_keeps_nothing_of_a_call_alive_after_it(two_threads):
    """A sleeping pool thread must not hold the last call's closure (and through it the caller's arrays)."""
    import gc
    import weakref

    big = np.ones(1000)
    alive = weakref.ref(big)
    both = threading.Barrier(2, timeout=10)  # both threads take an item: the pool really ran one
    threads.parallel(lambda a: both.wait() or a.sum(), [big, big])  # the items list is the call's
    del big
    gc.collect()
    assert alive() is None


def test_a_parallel_inside_an_item_runs_on_that_items_thread(two_threads):
    """over_ranges inside a parallel() item (a kernel called from a block): no second hand-over, no deadlock."""
    def item(i):
        caller = threading.current_thread().name
        inner = threads.parallel(lambda j: (i * 10 + j, threading.current_thread().name), range(3))
        assert {name for _, name in inner} == {caller}
        return [value for value, _ in inner]

    assert threads.parallel(item, range(4)) == [[0, 1, 2], [10, 11, 12], [20, 21, 22], [30, 31, 32]]


def _openblas_timeout():
    """What NumPy's OpenBLAS now uses as OPENBLAS_THREAD_TIMEOUT (None: not an OpenBLAS that says)."""
    import ctypes

    for lib in threads._NUMPY_BLAS:
        try:
            timeout = ctypes.CDLL(lib.filepath).openblas_thread_timeout
        except (OSError, AttributeError):
            continue
        timeout.restype = ctypes.c_int
        return timeout()
    return None


def test_numpys_openblas_workers_sleep_right_after_a_product(two_threads):
    """After a threaded product OpenBLAS's worker sleeps within ~2 ms instead of spinning ~0.1 s on the other core."""
    import resource
    import time

    if _openblas_timeout() is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS with openblas_thread_timeout")
    assert _openblas_timeout() == threads.BLAS_SPIN
    if threads._available_cores() < 2:
        pytest.skip("one core: no second BLAS thread to spin")
    a = np.ones((512, 512), dtype=np.float32)
    threads.matmul(a, a)  # the workers start
    spent = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        threads.matmul(a, a)
        product = time.perf_counter() - start
        time.sleep(0.25)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        spent.append(cpu - 2 * product)  # beyond both threads busy for the whole product
    # spinning (OpenBLAS's default) measured 0.10-0.11 s a product here; BLAS_SPIN's 2^22 cycles ~0.002
    assert min(spent) < 0.04, f"CPU seconds after each product: {spent}"


def test_a_users_own_openblas_thread_timeout_is_kept(monkeypatch):
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "20")
    assert threads._quiet_blas_workers(threads._NUMPY_BLAS) == []
