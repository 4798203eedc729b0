"""An output folder that cannot be written, and a disk that fills up mid-run.

Tests run as root, so permissions stop nothing: an unwritable folder is a path
under a regular file, or a write that raises EROFS/ENOSPC. Each case is one
``minigan: error:`` line (exit 2) naming the folder or file; nothing already saved
is damaged, the previous checkpoint still loads and ``--resume`` finishes the run
exactly as if nothing had happened.
"""
import errno
import glob
import importlib
import io
import warnings

import pytest

from minigan import checkpoint
from minigan.train import outputs
from tests.faults.conftest import assert_one_error_line, assert_same_checkpoint, log_rows

run_module = importlib.import_module("minigan.train.run")  # `minigan.train.run` the attribute is the function

ARGS = ["--image-size", "32", "--width", "4", "--batch", "2", "--checkpoint-every", "2", "--sample-every", "3",
        "--quiet"]




def _disk_full(monkeypatch, after_bytes=True):
    """From now on a checkpoint write puts half its bytes on disk, then fails with ENOSPC."""
    original = checkpoint._write

    def write(file, *args, **kwds):
        buf = io.BytesIO()
        original(buf, *args, **kwds)
        file.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write", write)


def test_output_folder_under_a_file_is_one_line(tmp_path, main):
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "run"
    rc, _, err = main("train", "--out", out, "--iters", "2", *ARGS)
    assert rc == 2, err
    assert_one_error_line(err, f"cannot write to the output folder '{out}'", "choose another --out")


def test_read_only_output_folder_is_one_line(tmp_path, main, monkeypatch):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(run_module, "open", read_only, raising=False)  # the write probe
    out = tmp_path / "run"
    rc, _, err = main("train", "--out", out, "--iters", "2", *ARGS)
    assert rc == 2, err
    assert_one_error_line(err, f"'{out}'", "Read-only file system", "choose another --out")


def test_disk_full_at_the_first_checkpoint_is_one_line_and_leaves_nothing_half_written(tmp_path, main, monkeypatch):
    out = tmp_path / "run"
    _disk_full(monkeypatch)
    rc, _, err = main("train", "--out", out, "--iters", "4", *ARGS)
    assert rc == 2, err
    assert_one_error_line(err, str(out / checkpoint.FILENAME), "No space left on device", "free some disk space")
    assert not (out / checkpoint.FILENAME).exists() and not glob.glob(str(out / ".tmp-ckpt-*"))
    monkeypatch.undo()
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    rc, _, err = main("train", "--out", out, "--iters", "4", *ARGS)  # space freed: the same command works
    assert rc == 0, err


@pytest.fixture
def straight_run(tmp_path, main):
    """The same 8 steps, never interrupted: what a damaged-then-resumed run must equal."""
    out = tmp_path / "straight"
    rc, _, err = main("train", "--out", out, "--iters", "8", *ARGS)
    assert rc == 0, err
    return out


@pytest.mark.parametrize("what", ["checkpoint", "samples", "log"])
def test_disk_full_mid_run_keeps_the_last_checkpoint_and_resume_loses_nothing(tmp_path, main, monkeypatch,
                                                                               straight_run, what):
    out = tmp_path / "run"
    assert main("train", "--out", out, "--iters", "4", *ARGS)[0] == 0
    before = (out / checkpoint.FILENAME).read_bytes()

    if what == "checkpoint":
        _disk_full(monkeypatch)
        needles = [str(out / checkpoint.FILENAME), "previous checkpoint is intact", "free some disk space"]
    else:
        def full(*a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")

        if what == "samples":
            monkeypatch.setattr(outputs, "save_samples", full)  # the grid at step 6
        else:
            monkeypatch.setattr(outputs.CsvLog, "flush", full)  # log.csv at the step-6 checkpoint
        needles = [f"'{out}'", "No space left on device", "checkpoint is intact", "--resume"]
    rc, _, err = main("train", "--out", out, "--resume", "--iters", "8", *ARGS)
    assert rc == 2, err
    assert_one_error_line(err, *needles)
    assert (out / checkpoint.FILENAME).read_bytes() == before  # untouched, byte for byte
    assert checkpoint.load(out)[1]["step"] == 4
    assert not glob.glob(str(out / ".tmp-ckpt-*"))

    monkeypatch.undo()
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    rc, stdout, err = main("train", "--out", out, "--resume", "--iters", "8", *ARGS)
    assert rc == 0, err
    assert "resuming sagan from step 4" in stdout
    assert_same_checkpoint(out, straight_run)
    assert log_rows(out) == log_rows(straight_run)
