"""Checkpoint files: never execute code, every broken file is one clear error, writes are atomic."""
import os
import pickle

import numpy as np
import pytest

from minigan import checkpoint
from minigan.checkpoint import CheckpointError


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _good(path, value=1.0):
    checkpoint.save(path, {"G/w": np.full((2, 3), value, np.float32)}, {"step": 7})


def test_round_trip(tmp_path):
    path = tmp_path / "c.npz"
    _good(path)
    arrays, meta = checkpoint.load(path)
    assert meta["step"] == 7 and meta["format"] == "minigan-checkpoint"
    np.testing.assert_array_equal(arrays["G/w"], np.ones((2, 3), np.float32))
    assert checkpoint.split(arrays, "G") == {"w": arrays["G/w"]}


def test_a_run_folder_resolves_to_its_checkpoint(tmp_path):
    _good(tmp_path / checkpoint.FILENAME)
    assert checkpoint.load(tmp_path)[1]["step"] == 7


def test_pickle_payload_renamed_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(CheckpointError, match="not a readable minigan checkpoint"):
        checkpoint.load(path)
    assert not marker.exists()


def test_object_array_inside_npz_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.npz"
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(str(marker))
    meta = np.frombuffer(b'{"format": "minigan-checkpoint", "version": 1}', dtype=np.uint8)
    np.savez(path, __meta__=meta, evil=evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0, 10, 100, 0.5, 0.9])
def test_truncated_checkpoint_is_one_clear_error(tmp_path, cut):
    path = tmp_path / "checkpoint.npz"
    _good(path)
    blob = path.read_bytes()
    n = int(len(blob) * cut) if isinstance(cut, float) else cut
    path.write_bytes(blob[:n])
    with pytest.raises(CheckpointError, match=str(path)):
        checkpoint.load(path)


def test_garbled_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    _good(path)
    blob = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(40, len(blob) - 40, 30):
        blob[i] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_foreign_npz_and_missing_file(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a minigan checkpoint"):
        checkpoint.load(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.load(tmp_path / "nope")


def test_newer_format_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    meta = np.frombuffer(b'{"format": "minigan-checkpoint", "version": 99}', dtype=np.uint8)
    np.savez(path, __meta__=meta)
    with pytest.raises(CheckpointError, match="newer minigan"):
        checkpoint.load(path)


def test_a_failed_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    _good(path, 1.0)

    def dies_midway(f, arrays, meta):
        f.write(b"\x40\0\0\0\0\0\0\0{half a header")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write", dies_midway)
    with pytest.raises(CheckpointError, match="previous checkpoint is intact"):
        _good(path, 2.0)
    monkeypatch.undo()
    arrays, _ = checkpoint.load(path)
    np.testing.assert_array_equal(arrays["G/w"], np.ones((2, 3), np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]  # no temporary left behind


def test_unwritable_folder_is_one_clear_error(tmp_path):
    if os.geteuid() == 0:
        target = tmp_path / "a-file" / "sub"  # root ignores permissions: a file in the path also fails
        (tmp_path / "a-file").write_text("x")
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
    with pytest.raises(CheckpointError, match="cannot write a checkpoint"):
        _good(target / "checkpoint.npz")
