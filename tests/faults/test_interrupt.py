"""Ctrl-C and SIGTERM: the step finishes, a checkpoint is written, exit 130 with one line, --resume continues.

A second Ctrl-C stops at once, even in the middle of a checkpoint write, and
still leaves the previous checkpoint whole.
"""
import glob
import os
import re
import signal
import time

import pytest

from minigan import checkpoint
from tests.faults.conftest import TIMEOUT_S, TINY_ARGS, Child, events, log_rows

STOPPED = re.compile(r"stopped at step (\d+); checkpoint saved to '(.+)'\. Continue with --resume\.")


def _args(out, iters=1000, every=3):
    return ["train", "--out", str(out), *TINY_ARGS, "--iters", str(iters), "--checkpoint-every", str(every),
            "--sample-every", "1000"]


def _poll(path, child, ready=os.path.exists):
    deadline = time.monotonic() + TIMEOUT_S
    while not ready(path):
        assert child.proc.poll() is None, f"the child ended early; {child.describe()}"
        assert time.monotonic() < deadline, f"'{path}' never appeared; {child.describe()}"
        time.sleep(0.05)


def _assert_interrupted_quietly(child):
    assert child.proc.returncode == 130, child.describe()
    assert "Traceback" not in child.stderr, child.describe()
    lines = [line for line in child.stderr.splitlines() if line.strip()]
    assert lines == ["minigan: interrupted"], child.describe()


@pytest.mark.slow
def test_ctrl_c_checkpoints_the_current_step_exits_130_and_resumes_there(tmp_path):
    out = tmp_path / "run"
    child = Child(_args(out), driver=False)  # the real `python -m minigan`
    # wait for the first checkpoint inside the training loop (step 3): the log is flushed with it
    _poll(out / "log.csv", child, ready=lambda p: os.path.exists(p) and len(open(p).read().splitlines()) > 3)
    child.kill(signal.SIGINT)
    child.finish()
    _assert_interrupted_quietly(child)
    match = STOPPED.search(child.stdout)
    assert match, child.describe()
    stopped = int(match.group(1))
    assert match.group(2) == str(out / checkpoint.FILENAME)
    _, meta = checkpoint.load(out / checkpoint.FILENAME)
    assert meta["step"] == stopped >= 3  # the step it stopped at, not the last periodic checkpoint
    assert [int(r["step"]) for r in log_rows(out)] == list(range(1, stopped + 1))

    resumed = Child(_args(out, iters=stopped + 2) + ["--resume"], driver=False)
    assert resumed.finish() == 0, resumed.describe()
    assert f"resuming sagan from step {stopped} in '{out}'" in resumed.stdout
    assert checkpoint.load(out / checkpoint.FILENAME)[1]["step"] == stopped + 2
    assert [int(r["step"]) for r in log_rows(out)] == list(range(1, stopped + 3))


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c(tmp_path):
    out = tmp_path / "run"
    child = Child(_args(out), {"MINIGAN_FAULTS_TRACE": "1"})
    child.wait_line("step 4")
    child.kill(signal.SIGTERM)
    child.finish()
    _assert_interrupted_quietly(child)
    stopped = int(STOPPED.search(child.stdout).group(1))
    assert stopped == max(events(child.snapshot(), "step"))
    assert checkpoint.load(out / checkpoint.FILENAME)[1]["step"] == stopped


@pytest.mark.slow
def test_second_ctrl_c_stops_at_once_even_mid_checkpoint_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "run"
    # the step-6 checkpoint write pauses for 10 minutes once its temporary file is complete
    child = Child(_args(out, every=3), {"MINIGAN_FAULTS_TRACE": "1", "MINIGAN_FAULTS_HOLD": "written:6",
                                        "MINIGAN_FAULTS_HOLD_S": "600"})
    child.wait_line("written 6")
    assert glob.glob(str(out / ".tmp-ckpt-*"))
    started = time.monotonic()
    child.kill(signal.SIGINT)  # the first one waits for the step (here: the save) to finish ...
    time.sleep(0.5)
    assert child.proc.poll() is None
    child.kill(signal.SIGINT)  # ... the second one does not
    child.finish(timeout=120)
    assert time.monotonic() - started < 120
    _assert_interrupted_quietly(child)
    assert "continue from the last checkpoint (step 3) with --resume" in child.stdout
    assert checkpoint.load(out / checkpoint.FILENAME)[1]["step"] == 3  # the previous checkpoint, whole
    assert not glob.glob(str(out / ".tmp-ckpt-*"))  # the interrupted write cleaned up after itself
