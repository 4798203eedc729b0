"""SIGKILL at random moments, mid-checkpoint included: nothing lost beyond one interval, nothing corrupt.

One run folder is killed over and over (``kill -9``: no handler runs, no cleanup)
at seeded random points, each time resumed with ``--resume``:

* in the middle of a checkpoint write (half the temporary file on disk),
* after the temporary file is complete but before it is renamed into place,
* right after a checkpoint landed, right after a step, at a random moment after
  start (imports, data, JIT loading or training: wherever it falls).

After every kill ``checkpoint.load`` succeeds, the checkpoint is at least the last
one the child reported saved and at most one ``--checkpoint-every`` behind the
last step it reported done, and the next ``--resume`` starts from exactly that
step. The final run reaches the target and is bit-identical to a run that was
never interrupted (weights, optimiser moments, every RNG state, log, samples).
"""
import glob
import os
import random
import time

import numpy as np
import pytest
from PIL import Image

from minigan import checkpoint
from tests.faults.conftest import (RUN_ARGS, RUN_CHECKPOINT_EVERY as CE, RUN_ITERS, Child,
                                   assert_same_checkpoint, events, log_rows)

SEED = 20240607
# (what the kill waits for) in order; every one but "startup" advances the run by a few steps.
SCENARIOS = ["half", "step", "written", "startup", "saved", "half", "step", "written", "saved"]


def _temporaries(out):
    return glob.glob(os.path.join(out, ".tmp-ckpt-*"))


def _kill_once(out, kind, resume, base, rng):
    """Start a child, kill it at the point ``kind`` picks; returns (lines it printed, what we aimed at)."""
    env = {"MINIGAN_FAULTS_TRACE": "1"}
    target = None
    if kind in ("half", "written"):
        target = base + CE * rng.randint(1, 2)
        env["MINIGAN_FAULTS_HOLD"] = f"{kind}:{target}"
    child = Child(["train", "--out", out, *RUN_ARGS, *(["--resume"] if resume else [])], env)
    try:
        if kind == "startup":  # a random moment, but before the run could finish on a fast machine
            child.wait_for(lambda s: s.startswith("step ") and int(s.split()[1]) >= base + 3,
                           timeout=rng.uniform(0.0, 3.0), must=False)
        else:
            if resume:
                line = child.wait_for(lambda s: s.startswith("resuming "))
                assert f"from step {base} " in line, (line, base)
            if kind in ("half", "written"):
                child.wait_line(f"{kind} {target}")
            elif kind == "saved":
                target = base + CE * rng.randint(1, 2)
                child.wait_line(f"saved {target}")
            else:
                target = base + rng.randint(1, 4)
                child.wait_line(f"step {target}")
                time.sleep(rng.uniform(0.0, 0.05))  # somewhere inside the next step (or its checkpoint)
    finally:
        child.kill()
        child.finish()
    assert child.proc.returncode == -9, child.describe()
    return child.snapshot(), target, child


@pytest.mark.slow
def test_sigkill_anywhere_loses_at_most_one_interval_and_resumes_bit_for_bit(tmp_path, reference_run):
    rng = random.Random(SEED)
    out = str(tmp_path / "run")
    base = 0  # the checkpoint's step after the last kill
    kills = 0
    for i, kind in enumerate(SCENARIOS):
        if base > RUN_ITERS - 8:  # a fast machine ran ahead: keep room for this kill's target
            break
        kills += 1
        lines, target, child = _kill_once(out, kind, resume=i > 0, base=base, rng=rng)
        where = f"kill {i} ({kind}, target {target}); {child.describe()}"
        saved, steps = events(lines, "saved"), events(lines, "step")

        arrays, meta = checkpoint.load(os.path.join(out, checkpoint.FILENAME))  # never corrupt
        step = meta["step"]
        assert all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f"), where
        if saved:
            assert step >= max(saved), where  # a save the child reported is on disk
        done = max(steps, default=base)
        assert step <= done, where
        assert step >= base, where  # never goes backwards
        if done > 0:
            assert step >= CE * ((done - 1) // CE), where  # at most one interval of work lost
        if kind in ("half", "written"):
            assert step == target - CE, where  # the interrupted write did not replace the old file ...
            assert _temporaries(out), where  # ... and the kill really landed inside it
        if kind == "saved":
            assert step >= target, where
        print(f"kill {i} ({kind}, target {target}): last step seen {done}, checkpoint at {step}")
        base = step

    assert kills >= 6, (kills, base)

    final = Child(["train", "--out", out, *RUN_ARGS, "--resume"], {"MINIGAN_FAULTS_TRACE": "1"})
    assert final.finish() == 0, final.describe()
    assert f"resuming sagan from step {base} in '{out}'" in final.stdout, final.describe()
    assert f"done: {RUN_ITERS} steps" in final.stdout, final.describe()
    assert not _temporaries(out), "a resumed run removes the temporaries a killed save left behind"

    # nothing lost: identical to the run that was never interrupted
    assert_same_checkpoint(out, reference_run)
    rows = log_rows(out)
    assert [int(r["step"]) for r in rows] == list(range(1, RUN_ITERS + 1))
    assert rows == log_rows(reference_run)
    ref_samples = sorted(os.listdir(os.path.join(reference_run, "samples")))
    assert sorted(os.listdir(os.path.join(out, "samples"))) == ref_samples
    for name in ref_samples:
        a = np.asarray(Image.open(os.path.join(out, "samples", name)))
        b = np.asarray(Image.open(os.path.join(reference_run, "samples", name)))
        np.testing.assert_array_equal(a, b, err_msg=name)
