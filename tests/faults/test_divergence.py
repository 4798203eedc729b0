"""Non-finite losses or weights: caught the step they appear, rolled back to the last good checkpoint with a
TrainingWarning, retried with fresh randomness, and after ``max_retries`` in a row one TrainingDiverged.

The poison is injected by wrapping ``Trainer.step``: either the reported loss is
made NaN/inf, or a weight of G or D is set to NaN/inf after the update while the
losses stay finite (a NaN first-layer weight in SAGAN's or DCGAN's G does exactly
that: batch norm spreads it over the channel and the ReLU kernel maps NaN to 0).
"""
import collections
import os
import warnings

import numpy as np
import pytest

from minigan import checkpoint, cli
from minigan.train import Trainer, TrainingDiverged, TrainingWarning, run
from tests.faults.conftest import assert_one_error_line, log_rows
from tests.product.conftest import assert_printed_with_the_bar_cleared, record_progress_bar, tiny_config


def _config(tmp_path, **kw):
    return tiny_config(tmp_path, **dict(dict(width=4, batch=2, iters=6, checkpoint_every=2, sample_every=3), **kw))


def _poison(monkeypatch, plan):
    """``plan[step]``: what to poison on the 1st, 2nd, ... time that step is computed. Returns the call counts."""
    calls = collections.Counter()
    original = Trainer.step

    def step(self):
        stats = original(self)
        n = self.step_count
        kinds = plan.get(n, [])
        kind = kinds[calls[n]] if calls[n] < len(kinds) else None
        calls[n] += 1
        if kind == "nan-loss":
            stats["loss_g"] = float("nan")
        elif kind == "inf-loss":
            stats["loss_d"] = float("inf")
        elif kind == "nan-G":
            next(iter(self.G.parameters())).data[...] = np.nan
        elif kind == "inf-D":
            list(self.D.parameters())[-1].data.reshape(-1)[0] = np.inf
        elif kind is not None:
            raise AssertionError(kind)
        return stats

    monkeypatch.setattr(Trainer, "step", step)
    return calls


def _finite(arrays):
    return [name for name, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]


@pytest.fixture
def saved_checkpoints(monkeypatch):
    """Every checkpoint the run writes, as (step, names of non-finite arrays)."""
    saved = []
    original = checkpoint.save

    def save(path, arrays, meta):
        saved.append((meta["step"], _finite(arrays)))
        original(path, arrays, meta)

    monkeypatch.setattr(checkpoint, "save", save)
    return saved


def _quiet(*args):
    pass


def test_the_rollbacks_warning_is_printed_with_the_progress_bar_cleared(tmp_path, monkeypatch):
    # printed while tqdm's bar is up, the warning would start where the bar's text ends, on the bar's line
    events = []
    record_progress_bar(monkeypatch, events)
    _poison(monkeypatch, {2: ["nan-loss"]})
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *a, **k: events.append(str(message))
        run(_config(tmp_path), progress=True, log=_quiet)
    assert_printed_with_the_bar_cleared(events, "rolled back to step 0")


@pytest.mark.parametrize("kind,at,rolled_to,what", [
    ("nan-loss", 5, 3, "non-finite loss at step 5"),  # two steps past a checkpoint: step 4 is logged twice?
    ("inf-loss", 2, 0, "non-finite loss at step 2"),
    ("nan-G", 2, 0, "non-finite weights after step 2"),
    ("nan-G", 3, 0, "non-finite weights after step 3"),  # a checkpoint step: must not be saved poisoned
    ("inf-D", 5, 3, "non-finite weights after step 5"),
])
def test_one_bad_step_is_rolled_back_and_retried_and_leaves_no_trace(tmp_path, monkeypatch, saved_checkpoints,
                                                                        kind, at, rolled_to, what):
    config = _config(tmp_path, checkpoint_every=3)
    calls = _poison(monkeypatch, {at: [kind]})
    with pytest.warns(TrainingWarning) as caught:
        trainer = run(config, progress=False, log=_quiet).trainer
    messages = [str(w.message) for w in caught if issubclass(w.category, TrainingWarning)]
    assert len(messages) == 1, messages
    assert what in messages[0] and f"rolled back to step {rolled_to} and retrying (1/3)" in messages[0]
    assert calls[at] == 2 and calls[at + 1] == 1  # caught the step it happened: no step ran on poisoned weights
    assert trainer.step_count == 6
    assert all(not bad for _, bad in saved_checkpoints), saved_checkpoints  # never a poisoned checkpoint
    arrays, meta = checkpoint.load(os.path.join(config.out, checkpoint.FILENAME))
    assert meta["step"] == 6 and not _finite(arrays)
    assert "G_ema/" + next(iter(trainer.G_ema.state_dict())) in arrays
    assert [int(r["step"]) for r in log_rows(config.out)] == list(range(1, 7))  # no rows of the abandoned try
    assert np.isfinite(trainer.generate(trainer.fixed_z)).all()


def test_nan_weights_on_a_kernel_device_are_rolled_back(tmp_path, monkeypatch, saved_checkpoints, kernel_device):
    """The weight check and the rollback on the CUDA path (device arrays: the check syncs once per step)."""
    config = _config(tmp_path, checkpoint_every=3, device=kernel_device)
    calls = _poison(monkeypatch, {4: ["nan-G"]})
    with pytest.warns(TrainingWarning, match=r"non-finite weights after step 4 .*rolled back to step 3"):
        trainer = run(config, progress=False, log=_quiet).trainer
    assert trainer.device == kernel_device and trainer.step_count == 6 and calls[4] == 2
    assert all(not bad for _, bad in saved_checkpoints), saved_checkpoints
    assert np.isfinite(trainer.generate(trainer.fixed_z)).all()


def test_retries_count_only_consecutive_failures(tmp_path, monkeypatch):
    config = _config(tmp_path, max_retries=2)
    calls = _poison(monkeypatch, {3: ["nan-loss", "nan-G"], 5: ["inf-loss", "inf-D"]})
    with pytest.warns(TrainingWarning) as caught:
        trainer = run(config, progress=False, log=_quiet).trainer
    assert len([w for w in caught if issubclass(w.category, TrainingWarning)]) == 4
    assert trainer.step_count == 6 and calls[3] == calls[5] == 3


def test_persistent_divergence_gives_up_with_one_clear_error_and_keeps_the_last_good_checkpoint(
        tmp_path, monkeypatch, saved_checkpoints):
    config = _config(tmp_path, max_retries=2)
    calls = _poison(monkeypatch, {3: ["nan-loss"] * 99})
    with pytest.warns(TrainingWarning) as caught, pytest.raises(TrainingDiverged) as error:
        run(config, progress=False, log=_quiet)
    assert len([w for w in caught if issubclass(w.category, TrainingWarning)]) == 2
    assert calls[3] == 3
    message = str(error.value)
    assert config.out in message and "after 2 rollbacks" in message and "--lr-d" in message
    assert "\n" not in message
    arrays, meta = checkpoint.load(os.path.join(config.out, checkpoint.FILENAME))
    assert meta["step"] == 2 and not _finite(arrays)
    assert all(not bad for _, bad in saved_checkpoints)


def test_divergence_through_the_cli_is_exit_2_with_warnings_then_one_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # the CLI replaces it
    _poison(monkeypatch, {3: ["nan-G"] * 99})
    out = tmp_path / "run"
    rc = cli.main(["train", "--out", str(out), "--image-size", "32", "--width", "4", "--batch", "2",
                   "--iters", "6", "--checkpoint-every", "2", "--sample-every", "100", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    warned = [line for line in err.splitlines() if line.startswith("minigan: warning: ")]
    assert len(warned) == 3 and all("rolled back to step 2" in line for line in warned), err
    assert_one_error_line("\n".join(line for line in err.splitlines() if line not in warned),
                          "training diverged", str(out), "non-finite weights after step 3")
    assert checkpoint.load(out / checkpoint.FILENAME)[1]["step"] == 2
