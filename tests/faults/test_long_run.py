"""Long runs: host memory stays flat over thousands of steps of a tiny model.

RSS is read from /proc/self/statm after a warm-up and at the end of a run through
``minigan.train.run`` (sampling, checkpoints and the loss log included). The
bound catches a leak of one step's autograd graph per step: the last test keeps
every graph alive on purpose and checks that the same measurement sees it.
"""
import os
import time
import warnings

import pytest

from minigan.tensor import Function
from minigan.train import Trainer, run
from tests.product.conftest import tiny_config

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)")

BOUND_MB = 30.0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def measure(tmp_path, monkeypatch, model, iters, warmup, leak=False):
    """RSS growth (MB) between step ``warmup`` and step ``iters`` of a whole run; and the trajectory."""
    marks = {}
    original = Trainer.step

    def step(self):
        stats = original(self)
        if self.step_count == warmup or self.step_count == iters or self.step_count % 250 == 0:
            marks[self.step_count] = round(rss_mb(), 1)
        return stats

    monkeypatch.setattr(Trainer, "step", step)
    if leak:  # keep what every op saved for its backward: every step's whole graph stays alive
        kept = []
        apply = Function.apply.__func__

        def leaky_apply(cls, *inputs, **params):
            out = apply(cls, *inputs, **params)
            kept.append((out, out._node))
            return out

        monkeypatch.setattr(Function, "apply", classmethod(leaky_apply))
    config = tiny_config(tmp_path, model=model, width=4, batch=2, iters=iters, checkpoint_every=500,
                         sample_every=500, n_samples=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = run(config, progress=False, log=lambda *a: None).trainer
    assert trainer.step_count == iters
    return marks[iters] - marks[warmup], marks


@pytest.mark.slow
@pytest.mark.parametrize("model,iters,warmup", [("dcgan", 2000, 200), ("sagan", 600, 100)])
def test_memory_stays_flat_over_a_long_run(tmp_path, monkeypatch, model, iters, warmup):
    started = time.monotonic()
    growth, marks = measure(tmp_path, monkeypatch, model, iters, warmup)
    print(f"{model}: {iters} steps in {time.monotonic() - started:.1f} s, RSS (MB) by step {marks}")
    assert growth < BOUND_MB, f"RSS grew {growth:.1f} MB over {iters - warmup} steps: {marks}"


@pytest.mark.slow
def test_the_measurement_catches_a_graph_kept_alive_every_step(tmp_path, monkeypatch):
    """Sanity check of the test above: a leak of one graph per step, over 300 steps, projected to 1800."""
    growth, marks = measure(tmp_path, monkeypatch, "dcgan", 300, 100, leak=True)
    per_step = growth / 200
    assert per_step * 1800 > 3 * BOUND_MB, f"a graph per step leaks only {per_step * 1e3:.1f} kB/step: {marks}"
