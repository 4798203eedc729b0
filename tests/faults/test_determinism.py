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
from tests.faults.conftest import RUN_ARGS, Child, assert_same_checkpoint, log_rows
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
def test_the_numba_thread_count_does_not_change_the_result(tmp_path):
    """CI has 2 cores, users 16: parallel kernels must not make results depend on it."""
    import numba

    outs = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        config = tiny_config(tmp_path / f"threads{threads}", width=4, batch=2, iters=2, sample_every=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(config, progress=False, log=lambda *a: None)
        outs.append(config.out)
    if numba.config.NUMBA_NUM_THREADS == 1:
        pytest.skip("numba has one thread here")
    assert_same_checkpoint(*outs)


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
