"""The same seed gives the same run: identical checkpoints (every array, bit for bit), sample images and logs.

CPU: two separate processes (``python -m minigan train``) with different hash
seeds. The CUDA path (cuda-emu everywhere; cuda where a GPU is present, skipped
elsewhere): two runs, whose col2im is a gather (kernels/col2im.cu: no atomics, a
fixed summation order), must agree bit for bit too, and so must a run stopped
and resumed against one that was not.
"""
import dataclasses
import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from minigan import backend, checkpoint
from minigan.train import run
from tests.faults.conftest import RUN_ARGS, Child, assert_same_checkpoint, load_arrays, log_rows
from tests.product.conftest import tiny_config


def _samples(run_dir):
    folder = os.path.join(run_dir, "samples")
    return {name: np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"))
            for name in sorted(os.listdir(folder))}


def _assert_same_run(a, b):
    assert_same_checkpoint(a, b)
    sa, sb = _samples(a), _samples(b)
    assert sorted(sa) == sorted(sb) and len(sa) >= 4
    for name in sa:
        np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)
    assert log_rows(a) == log_rows(b)
    for name in ("real_vs_fake.png", "mean_image.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(os.path.join(a, name))),
                                      np.asarray(Image.open(os.path.join(b, name))), err_msg=name)
    with open(os.path.join(a, "config.json")) as fa, open(os.path.join(b, "config.json")) as fb:
        ca, cb = json.load(fa), json.load(fb)
    ca.pop("out"), cb.pop("out")
    assert ca == cb


@pytest.mark.slow
def test_same_seed_same_run_across_two_processes_on_the_cpu(tmp_path, reference_run):
    out = tmp_path / "again"
    child = Child(["train", "--out", str(out), *RUN_ARGS], {"PYTHONHASHSEED": "12345"}, driver=False)
    assert child.finish() == 0, child.describe()
    _assert_same_run(out, reference_run)


@pytest.mark.slow
def test_products_on_blas_threads_repeat_themselves_and_match_one_thread(tmp_path, monkeypatch):
    """Every product on two BLAS threads (no size threshold): two runs agree bit for bit (the thread count
    of a product follows its shapes, never timing), and agree with a one-thread run to float32 rounding
    (OpenBLAS's threads may sum a long reduction in another order, so not bit for bit)."""
    import numba

    from minigan.backend import threads

    if threads._available_cores() < 2:
        pytest.skip("one core here")
    monkeypatch.setattr(threads, "PARALLEL_FLOPS", 0)
    outs = {}
    for name, count in (("two_a", 2), ("two_b", 2), ("one", 1)):
        numba.set_num_threads(count)
        try:
            config = tiny_config(tmp_path / name, width=4, batch=2, iters=2, sample_every=2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run(config, progress=False, log=lambda *a: None)
        finally:
            numba.set_num_threads(threads._available_cores())
        outs[name] = config.out
    assert_same_checkpoint(outs["two_a"], outs["two_b"])
    two, _ = load_arrays(outs["two_a"])
    one, _ = load_arrays(outs["one"])
    for name in two:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)


def _train(config, resume=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run(config, resume=resume, progress=False, log=lambda *a: None).trainer


def test_same_seed_same_run_twice_on_a_kernel_device(tmp_path, kernel_device):
    """cuda-emu everywhere, cuda where there is a GPU: the CUDA path is deterministic too."""
    outs = []
    for name in ("a", "b"):
        config = tiny_config(tmp_path / name, device=kernel_device, iters=4, sample_every=1, checkpoint_every=2)
        assert _train(config).device == kernel_device
        outs.append(config.out)
    _assert_same_run(*outs)
    arrays, _ = checkpoint.load(os.path.join(outs[0], checkpoint.FILENAME))
    assert all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f")


def test_resume_on_a_kernel_device_continues_the_run_bit_for_bit(tmp_path, kernel_device):
    """Stopped at step 2 and resumed to 4 on the CUDA path: the checkpoint of one run of 4 steps."""
    kw = dict(device=kernel_device, sample_every=2, checkpoint_every=2)
    whole = tiny_config(tmp_path / "whole", iters=4, **kw)
    _train(whole)
    half = tiny_config(tmp_path / "half", iters=2, **kw)
    _train(half)
    assert _train(dataclasses.replace(half, iters=4), resume=True).step_count == 4
    assert_same_checkpoint(whole.out, half.out)
