"""--minutes: a time budget resolved into a step count at the start, and looked at once more, from the run's own pace,
just before the learning rates start to fall. The steps timed to resolve it are undone and the steps before the
second look are the ones the new count trains (the run is the one --iters N trains, bit for bit), the count is
recorded in config.json and the checkpoints, and a resume, even one from the step-0 checkpoint, keeps it."""
import importlib
import json
import os

import numpy as np
import pytest

from minigan import checkpoint
from minigan.train import Trainer, run
from minigan.train.run import BUDGET_ROUND, Run, steps_within
from tests.product.conftest import assert_printed_with_the_bar_cleared, record_progress_bar, tiny_config

run_module = importlib.import_module("minigan.train.run")  # the module: minigan.train.run is also the function

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _quiet(config, **kw):
    return run(config, progress=False, log=lambda *a: None, **kw)


def _saved(folder):
    return checkpoint.load(os.path.join(folder, checkpoint.FILENAME))


def _assert_same_run_as_count(folder, tmp_path, iters, lr_decay):
    """The run in ``folder`` ended where ``--iters iters --lr-decay lr_decay`` ends, bit for bit: weights, optimizer,
    RNGs and sampler."""
    a, meta_a = _saved(folder)
    count = tiny_config(tmp_path / "count", iters=iters, lr_decay=lr_decay, sample_every=1000, checkpoint_every=1000)
    _quiet(count)
    b, meta_b = _saved(count.out)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert meta_a["rng"] == meta_b["rng"] and meta_a["sampler"] == meta_b["sampler"]


def test_steps_within_rounds_down_caps_and_never_gives_zero():
    assert steps_within(60.0, 0.0, 0.1, 10 ** 6) == 600
    assert steps_within(60.0, 0.0, 0.11, 10 ** 6) == 500  # 545 steps fit: a whole number of BUDGET_ROUNDs
    assert steps_within(60.0, 10.0, 0.1, 10 ** 6) == 500  # the time spent timing counts
    assert steps_within(60.0, 0.0, 0.1, 450) == 450  # --iters is the most
    assert steps_within(15.0, 0.0, 0.1, 10 ** 6) == 150  # under 2 BUDGET_ROUNDs: not rounded
    assert steps_within(1.0, 5.0, 0.1, 10 ** 6) == 1  # budget spent already: one step, not none
    assert steps_within(60.0, 0.0, 0.1, 0) == 0  # ... but never more than --iters, even 0
    assert BUDGET_ROUND == 100


def test_a_budget_run_is_the_run_its_step_count_would_train(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "BUDGET_SECONDS", 0.2)
    logged = []
    budget = tiny_config(tmp_path / "a", iters=10 ** 6, minutes=0.01, lr_decay=500_000, sample_every=1000,
                         checkpoint_every=1000)
    finished = run(budget, progress=False, log=logged.append)
    steps, decay = finished.config.iters, finished.config.lr_decay
    assert 1 <= steps < 10 ** 6 and finished.step == steps and decay == max(1, round(steps / 2))
    assert any(f"time budget 0.01 min: {steps:,} of at most 1,000,000 steps" in line for line in logged), logged
    written = json.load(open(os.path.join(budget.out, "config.json")))
    assert (written["iters"], written["lr_decay"], written["minutes"]) == (steps, decay, 0.01)
    _, meta_a = _saved(budget.out)
    assert meta_a["config"]["iters"] == steps and meta_a["step"] == steps
    # the same run by count: the budget's timed steps left no trace
    _assert_same_run_as_count(budget.out, tmp_path, steps, decay)


def test_a_budget_that_buys_more_than_iters_trains_iters(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "BUDGET_SECONDS", 0.0)
    monkeypatch.setattr(run_module, "BUDGET_TIMED", 2)
    finished = _quiet(tiny_config(tmp_path, iters=5, lr_decay=4, minutes=1000.0))
    assert (finished.step, finished.config.iters, finished.config.lr_decay) == (5, 5, 4)
    nothing = _quiet(tiny_config(tmp_path / "zero", iters=0, minutes=1000.0))  # --iters 0: no step, none timed
    assert (nothing.step, nothing.config.iters) == (0, 0)


def test_a_resume_keeps_the_budgets_count_unless_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "BUDGET_SECONDS", 0.0)
    monkeypatch.setattr(run_module, "BUDGET_TIMED", 2)
    monkeypatch.setattr(run_module, "steps_within", lambda *a: 6)  # whatever the timing, the budget buys 6
    first = _quiet(tiny_config(tmp_path, iters=50, minutes=1.0, checkpoint_every=2))
    assert first.step == 6
    logged = []
    again = run(tiny_config(tmp_path, iters=50, minutes=1.0, checkpoint_every=2), resume=True, progress=False,
                log=logged.append)
    assert (again.step, again.config.iters) == (6, 6)  # the same command resumed: nothing left to train
    assert any("fixed it at 6 steps" in line and "--minutes 0 --iters N" in line for line in logged), logged
    logged = []
    more = run(tiny_config(tmp_path, iters=8, minutes=0.0, checkpoint_every=2), resume=True, progress=False,
               log=logged.append)
    assert (more.step, more.config.iters, more.config.minutes) == (8, 8, 0.0)  # --minutes 0: --iters counts


def test_a_run_stopped_before_its_first_checkpoint_resumes_with_the_resolved_count(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "BUDGET_SECONDS", 0.0)
    monkeypatch.setattr(run_module, "BUDGET_TIMED", 2)
    monkeypatch.setattr(run_module, "steps_within", lambda *a: 7)
    fit, step = Run._fit_budget, Trainer.step
    state = {"fitted": False}

    def fit_then_mark(self):
        fit(self)
        state["fitted"] = True

    def killed_at_step_3(self):
        if state["fitted"] and self.step_count == 2:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(Run, "_fit_budget", fit_then_mark)
    monkeypatch.setattr(Trainer, "step", killed_at_step_3)
    config = tiny_config(tmp_path, iters=50, minutes=1.0, checkpoint_every=100)
    with pytest.raises(KeyboardInterrupt):
        _quiet(config)
    _, meta = _saved(config.out)
    assert (meta["step"], meta["config"]["iters"]) == (0, 7)  # the step-0 checkpoint holds the count
    monkeypatch.setattr(Trainer, "step", step)
    # a resume at step 0 times again, with the checkpoint's count as its most: a budget buying 50 trains 7
    monkeypatch.setattr(run_module, "steps_within", lambda budget, spent, step_s, most: min(most, 50))
    resumed = _quiet(config, resume=True)
    assert (resumed.step, resumed.config.iters) == (7, 7)


def test_minutes_is_checked_like_every_option(tmp_path):
    from minigan.train import ConfigError

    with pytest.raises(ConfigError, match="--minutes must be a finite number >= 0"):
        tiny_config(tmp_path, minutes=-1.0)


def test_a_slow_warm_up_does_not_cut_the_timing_short(tmp_path, monkeypatch):
    # a first run's warm-up steps hold numba's compilation: they must not use up the timing's share of the budget
    import time

    monkeypatch.setattr(run_module, "BUDGET_SECONDS", 0.0)
    monkeypatch.setattr(run_module, "BUDGET_TIMED", 6)
    step = Trainer.step

    def compiling_at_first(self):
        if self.step_count < run_module.BUDGET_WARMUP:
            time.sleep(0.5)
        return step(self)

    monkeypatch.setattr(Trainer, "step", compiling_at_first)
    monkeypatch.setattr(run_module, "steps_within", lambda *a: 2)  # the run itself kept short
    logged = []
    # a 20 s budget: its 5% is 1 s, which the 1.5 s warm-up would use up, and six timed steps do not (< 0.17 s each)
    run(tiny_config(tmp_path, iters=10 ** 6, minutes=1 / 3, sample_every=1000, checkpoint_every=1000),
        progress=False, log=logged.append)
    assert any("timed over 6 steps" in line for line in logged), logged


class _Clock:
    """time.perf_counter for minigan.train.run that moves only with the Trainer's steps: ``dt`` seconds a step
    while the budget is timed, then ``later`` seconds a step (the host's pace changing after its timing)."""

    def __init__(self, monkeypatch, dt, later):
        import time
        import types

        self.now, self.dt, self.later, self.fitted = 0.0, dt, later, False
        monkeypatch.setattr(run_module, "time", types.SimpleNamespace(perf_counter=lambda: self.now, time=time.time))
        monkeypatch.setattr(run_module, "BUDGET_SECONDS", 0.0)
        monkeypatch.setattr(run_module, "BUDGET_TIMED", 10)
        step, fit = Trainer.step, Run._fit_budget

        def timed_step(trainer):
            self.now += self.later if self.fitted else self.dt
            return step(trainer)

        def fit_budget(run_):
            fit(run_)
            self.fitted = True

        monkeypatch.setattr(Trainer, "step", timed_step)
        monkeypatch.setattr(Run, "_fit_budget", fit_budget)


def test_the_count_is_looked_at_again_where_the_rates_start_to_fall(tmp_path, monkeypatch):
    # timed at 10 ms a step, the host then runs at 15: a 3 s budget first buys 200 steps (3 warm-up and 10 timed
    # steps spent 0.13 s; 287 fit, rounded down), the decay over the last 60 (its 30%); at step 140 (2.23 s spent)
    # 51 more fit
    _Clock(monkeypatch, dt=0.01, later=0.015)
    logged = []
    budget = tiny_config(tmp_path / "a", iters=10 ** 6, minutes=0.05, lr_decay=300_000, sample_every=1000,
                         checkpoint_every=1000)
    finished = run(budget, progress=False, log=logged.append)
    assert any("time budget 0.05 min: 200 of at most 1,000,000 steps, learning rates falling over the last 60"
               in line for line in logged), logged
    assert any("time budget 0.05 min: 191 steps, not 200, learning rates falling over the last 51 (15 ms a step "
               "over the last 140)" in line for line in logged), logged
    # the decay keeps its share (57 of 191) only as far as the steps left allow: it starts now, over 51
    assert (finished.step, finished.config.iters, finished.config.lr_decay) == (191, 191, 51)
    written = json.load(open(os.path.join(budget.out, "config.json")))
    assert (written["iters"], written["lr_decay"]) == (191, 51)
    _, meta_a = _saved(budget.out)
    assert meta_a["config"]["iters"] == 191
    # the steps before the second look were the ones the new count trains: the same run, bit for bit
    monkeypatch.undo()
    _assert_same_run_as_count(budget.out, tmp_path, 191, 51)


def test_a_faster_pace_lengthens_the_run_up_to_iters_and_without_a_decay_the_look_is_half_way(tmp_path, monkeypatch):
    # timed at 20 ms a step, then 5: 137 steps first (decay 68 of them: 69 at full rates), then the most, 180
    _Clock(monkeypatch, dt=0.02, later=0.005)
    finished = _quiet(tiny_config(tmp_path / "a", iters=180, lr_decay=90, minutes=0.05, sample_every=1000,
                                  checkpoint_every=1000))
    assert (finished.step, finished.config.iters, finished.config.lr_decay) == (180, 180, 90)
    # no decay: the look is half way, at 100 of a first 200 (2.13 s spent at 10 then 20 ms a step), and 43 more fit
    _Clock(monkeypatch, dt=0.01, later=0.02)
    finished = _quiet(tiny_config(tmp_path / "b", iters=10 ** 6, minutes=0.05, sample_every=1000,
                                  checkpoint_every=1000))
    assert (finished.step, finished.config.iters, finished.config.lr_decay) == (143, 143, 0)


def test_no_second_look_when_the_steps_before_it_depend_on_the_count(tmp_path, monkeypatch):
    # instance noise annealed over --iters: a new count would change every step's noise since step 0
    _Clock(monkeypatch, dt=0.01, later=0.02)
    finished = _quiet(tiny_config(tmp_path / "a", iters=10 ** 6, minutes=0.05, instance_noise=0.1, sample_every=1000,
                                  checkpoint_every=1000))
    assert finished.config.iters == 200
    # ... nor for a count too short to have paced itself: a 1 s budget buys 91-92 steps (3 warm-up and 5 timed ones,
    # 5% of it, spent 0.08 s), and half way is under 50; a look there, 1 s spent at 20 ms a step, would stop at 47
    _Clock(monkeypatch, dt=0.01, later=0.02)
    finished = _quiet(tiny_config(tmp_path / "b", iters=10 ** 6, minutes=1 / 60, sample_every=1000,
                                  checkpoint_every=1000))
    assert 91 <= finished.config.iters == finished.step <= 92


def test_the_second_looks_line_is_printed_with_the_progress_bar_cleared(tmp_path, monkeypatch):
    # printed while tqdm's bar is up, the line would start where the bar's text ends, on the bar's line
    events = []
    record_progress_bar(monkeypatch, events)
    _Clock(monkeypatch, dt=0.01, later=0.015)  # as in the first second-look test: 200 steps, then 191
    run(tiny_config(tmp_path, iters=10 ** 6, minutes=0.05, lr_decay=300_000, sample_every=1000, checkpoint_every=1000),
        progress=True, log=events.append)
    assert_printed_with_the_bar_cleared(events, "191 steps, not 200")
