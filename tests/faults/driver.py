"""The ``minigan`` command with a progress trace, for the fault-injection tests.

    python -m tests.faults.driver train --out RUN ...     (same arguments as ``minigan``)

It runs ``minigan.cli.main`` unchanged; environment variables add:

MINIGAN_FAULTS_TRACE=1
    print one line per event on stdout, flushed at once:
    ``step N`` after each completed step, ``saving N`` before a checkpoint write,
    ``saved N`` once the checkpoint file has been renamed into place.
MINIGAN_FAULTS_HOLD=KIND:N
    pause (for MINIGAN_FAULTS_HOLD_S seconds, default 600) inside the write of the
    step-N checkpoint, so that a kill is sure to land mid-write:
    ``half``: half the bytes of the temporary file are on disk (a torn file); prints ``half N``;
    ``written``: the temporary file is complete and fsynced but not yet renamed; prints ``written N``.
"""
from __future__ import annotations

import io
import os
import sys
import time


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _instrument() -> None:
    from minigan import checkpoint
    from minigan.train import Trainer

    trace = os.environ.get("MINIGAN_FAULTS_TRACE") == "1"
    hold_kind, _, hold_step = os.environ.get("MINIGAN_FAULTS_HOLD", "").partition(":")
    hold_s = float(os.environ.get("MINIGAN_FAULTS_HOLD_S", "600"))
    current = {"step": None}

    original_step = Trainer.step

    def step(self):
        stats = original_step(self)
        if trace:
            _say(f"step {self.step_count}")
        return stats

    Trainer.step = step

    original_save = checkpoint.save

    def save(path, arrays, meta):
        current["step"] = meta.get("step")
        if trace:
            _say(f"saving {meta.get('step')}")
        try:
            original_save(path, arrays, meta)
        finally:
            current["step"] = None
        if trace:
            _say(f"saved {meta.get('step')}")

    checkpoint.save = save

    def holding(kind):
        return hold_kind == kind and current["step"] is not None and str(current["step"]) == hold_step

    original_write = checkpoint._write

    def write(file, *args, **kwds):
        if not holding("half"):
            return original_write(file, *args, **kwds)
        buf = io.BytesIO()
        original_write(buf, *args, **kwds)
        blob = buf.getvalue()
        file.write(blob[:len(blob) // 2])
        file.flush()
        os.fsync(file.fileno())
        _say(f"half {current['step']}")
        time.sleep(hold_s)
        file.write(blob[len(blob) // 2:])

    checkpoint._write = write

    original_fsync = os.fsync

    def fsync(fd):
        original_fsync(fd)
        if holding("written") and os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".tmp-ckpt-"):
            _say(f"written {current['step']}")
            time.sleep(hold_s)

    os.fsync = fsync


def main() -> int:
    if os.environ.get("MINIGAN_FAULTS_TRACE") or os.environ.get("MINIGAN_FAULTS_HOLD"):
        _instrument()
    from minigan.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
