"""Helpers for the fault tests: training subprocesses that can be watched, killed and resumed.

Subprocesses run from the repository root (so ``tests.faults.driver`` imports) with
the inherited environment, so numba's on-disk kernel cache (``cache=True``) is
shared with this process and every child after the first skips compilation.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import numpy as np
import pytest

from minigan import checkpoint, cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 240.0  # per wait: generous, CI machines are slow and shared

# A CI-sized run through the command line: 32x32, width 4, batch 2, the default SAGAN.
TINY_ARGS = ["--image-size", "32", "--width", "4", "--batch", "2", "--quiet"]


class Child:
    """A ``minigan`` subprocess whose stdout lines are collected by a thread as they arrive."""

    running: list["Child"] = []  # killed after each test, whatever happened in it

    def __init__(self, argv, env=None, driver=True):
        environ = dict(os.environ)
        # One numba thread: the results are the same bit for bit (test_determinism checks it), and on a
        # loaded CI machine a parallel region waiting for its second thread can make a step 50x slower.
        environ["NUMBA_NUM_THREADS"] = "1"
        environ.update(env or {})
        environ["PYTHONUNBUFFERED"] = "1"
        module = "tests.faults.driver" if driver else "minigan"
        self.argv = [sys.executable, "-m", module, *argv]
        self._stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty child never blocks
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=environ, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        Child.running.append(self)

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_for(self, predicate, timeout=TIMEOUT_S, must=True):
        """Block until a stdout line satisfies ``predicate``; returns that line.

        With ``must=False`` a timeout returns None instead of failing (the child is left running).
        """
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                while seen < len(self.lines):
                    line = self.lines[seen]
                    seen += 1
                    if predicate(line):
                        return line
                if self._eof:
                    self.proc.wait()
                    raise AssertionError(f"the child ended (rc {self.proc.returncode}) before the awaited line; "
                                         f"{self.describe()}")
                left = deadline - time.monotonic()
                if left <= 0 and not must:
                    return None
                if left <= 0:
                    self.kill()
                    raise AssertionError(f"timed out waiting for a line; {self.describe()}")
                self._cond.wait(left)

    def wait_line(self, text, timeout=TIMEOUT_S):
        return self.wait_for(lambda line: line == text, timeout)

    def snapshot(self) -> list[str]:
        with self._cond:
            return list(self.lines)

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def finish(self, timeout=TIMEOUT_S) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
            raise AssertionError(f"the child did not finish in {timeout:.0f} s; {self.describe()}")
        self._thread.join(timeout)
        self.proc.stdout.close()
        return rc

    @property
    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    @property
    def stdout(self) -> str:
        return "\n".join(self.snapshot())

    def describe(self) -> str:
        return f"argv {self.argv[2:]}\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"


def events(lines, kind) -> list[int]:
    """The step numbers of trace lines ``KIND N``."""
    return [int(line.split()[1]) for line in lines if line.startswith(kind + " ") and line.split()[1].isdigit()]


def assert_one_error_line(stderr: str, *needles: str) -> str:
    """stderr is exactly one ``minigan: error:`` line (no traceback) that mentions every needle."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("minigan: error: "), stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def load_arrays(run_dir):
    return checkpoint.load(os.path.join(run_dir, checkpoint.FILENAME))


def assert_same_checkpoint(a_dir, b_dir):
    a, meta_a = load_arrays(a_dir)
    b, meta_b = load_arrays(b_dir)
    assert meta_a["step"] == meta_b["step"]
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    for key in ("rng", "init_rng", "sampler", "k_t"):
        assert meta_a[key] == meta_b[key], key


def log_rows(run_dir, column_to_drop="time"):
    """log.csv as rows without the wall-clock column."""
    import csv

    with open(os.path.join(run_dir, "log.csv"), newline="") as f:
        return [{k: v for k, v in row.items() if k != column_to_drop} for row in csv.DictReader(f)]


@pytest.fixture(autouse=True)
def _reap_children():
    """No child outlives its test, even one that failed half-way."""
    yield
    while Child.running:
        child = Child.running.pop()
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()
        child._thread.join(TIMEOUT_S)
        child.proc.stdout.close()
        child._stderr.close()


@pytest.fixture(autouse=True)
def _one_numba_thread():
    """In-process runs use one numba thread too (see Child), restored afterwards for other test folders."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _warm_kernel_cache():
    """Compile (or load) every CPU kernel the runs use once, so the first child does not pay for it alone."""
    from minigan.train import TrainConfig, Trainer, resolve

    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("sagan", "dcgan"):
            trainer = Trainer(resolve(TrainConfig(model=model, out=tmp, image_size=32, width=4, batch=2, n_samples=2),
                                      "cpu"))
            trainer.step()
            trainer.generate(trainer.fixed_z)
    numba.set_num_threads(before)
    yield


# The run the kill and determinism tests share: 40 steps, a checkpoint every 2, samples every 10.
RUN_ITERS = 40
RUN_CHECKPOINT_EVERY = 2
RUN_ARGS = [*TINY_ARGS, "--iters", str(RUN_ITERS), "--checkpoint-every", str(RUN_CHECKPOINT_EVERY),
            "--sample-every", "10"]


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """An uninterrupted run of RUN_ARGS by the real ``python -m minigan`` entry point."""
    out = tmp_path_factory.mktemp("reference") / "run"
    child = Child(["train", "--out", str(out), *RUN_ARGS], {"PYTHONHASHSEED": "0"}, driver=False)
    assert child.finish() == 0, child.describe()
    return out


@pytest.fixture
def main(monkeypatch, capsys):
    """``minigan ARGS`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # the CLI replaces it

    def call(*argv):
        rc = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return call
