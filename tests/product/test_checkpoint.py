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


# -- the safetensors format and bounded loading (issue 13) ------------------------------------------------
def _model(path):
    arrays = {"G/w": np.arange(6, dtype=np.float32).reshape(2, 3), "G/step": np.array(3, np.int64),
              "D/w": np.ones((4,), np.float64)}
    checkpoint.save(path, arrays, {"step": 1})
    return arrays


def _expects(arrays, **changes):
    wanted = {k: (v.dtype, v.shape) for k, v in arrays.items()}
    wanted.update(changes)
    return lambda meta: {k: v for k, v in wanted.items() if v is not None}


def test_another_tool_reads_the_checkpoint_as_safetensors(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    path = tmp_path / checkpoint.FILENAME
    arrays = _model(path)
    theirs = safetensors_numpy.load_file(str(path))
    assert sorted(theirs) == sorted(arrays)
    for name in arrays:
        assert theirs[name].dtype == arrays[name].dtype and theirs[name].shape == arrays[name].shape
        np.testing.assert_array_equal(theirs[name], arrays[name])
    with safe_open(str(path), "np") as f:
        import json

        assert json.loads(f.metadata()["minigan"])["step"] == 1
    assert int.from_bytes(path.read_bytes()[:8], "little") % 8 == 0  # the data starts aligned


def test_expect_checks_names_dtypes_and_shapes_before_reading(tmp_path):
    path = tmp_path / checkpoint.FILENAME
    arrays = _model(path)
    got, _ = checkpoint.load(path, expect=_expects(arrays))
    assert sorted(got) == sorted(arrays)
    for changes, needle in [({"G/w": (np.float32, (2, 4))}, "'G/w' is float32 (2, 3), the model needs float32 (2, 4)"),
                            ({"G/w": (np.float64, (2, 3))}, "the model needs float64"),
                            ({"G/b": (np.float32, (3,))}, "it has no 'G/b'"),
                            ({"D/w": None}, "entries the model does not use: 'D/w'")]:
        with pytest.raises(CheckpointError, match="does not fit this model") as info:
            checkpoint.load(path, expect=_expects(arrays, **changes))
        assert needle in str(info.value) and str(path) in str(info.value)


def test_skip_unknown_leaves_other_entries_unread(tmp_path):
    import json

    path = tmp_path / checkpoint.FILENAME
    arrays = _model(path)
    blob = bytearray(path.read_bytes())
    header = json.loads(bytes(blob[8:8 + int.from_bytes(blob[:8], "little")]))
    last = max((v["data_offsets"][1], k) for k, v in header.items() if k != "__metadata__")[1]
    blob[-1] ^= 0xFF  # the last byte of the last entry: its checksum fails if it is read
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=f"'{last}' fails its checksum"):
        checkpoint.load(path)
    keep = {k: v for k, v in arrays.items() if k != last}
    got, _ = checkpoint.load(path, expect=_expects(keep, **{last: None}), skip_unknown=True)
    assert sorted(got) == sorted(keep)


def test_a_header_larger_than_the_cap_is_refused_unread(tmp_path):
    path = tmp_path / checkpoint.FILENAME
    path.write_bytes((checkpoint.MAX_HEADER_BYTES + 1).to_bytes(8, "little") + b"{" + b" " * 100)
    with pytest.raises(CheckpointError, match="limit"):
        checkpoint.load(path)


def test_bytes_no_entry_covers_are_refused(tmp_path):
    path = tmp_path / checkpoint.FILENAME
    _model(path)
    path.write_bytes(path.read_bytes() + b"\0" * 8)  # a polyglot's hiding place
    with pytest.raises(CheckpointError, match="the file holds"):
        checkpoint.load(path)


def test_non_finite_weights_are_refused_naming_the_entry(tmp_path):
    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, {"G/w": np.array([1.0, np.inf], np.float32)}, {"step": 1})
    with pytest.raises(CheckpointError, match="non-finite.*'G/w'"):
        checkpoint.load(path)


def test_legacy_npz_loads_with_the_same_checks(tmp_path):
    from tests.faults.ckpt_files import write_legacy

    arrays = {"G/w": np.arange(6, dtype=np.float32).reshape(2, 3), "D/w": np.ones(4)}
    path = tmp_path / checkpoint.LEGACY_FILENAME
    write_legacy(path, arrays, {"step": 5})
    got, meta = checkpoint.load(tmp_path)  # a legacy run folder
    assert meta["step"] == 5 and meta["version"] == 1
    np.testing.assert_array_equal(got["G/w"], arrays["G/w"])
    assert sorted(checkpoint.load(path, expect=_expects({"G/w": arrays["G/w"]}), skip_unknown=True)[0]) == ["G/w"]
    with pytest.raises(CheckpointError, match="does not fit this model"):
        checkpoint.load(path, expect=_expects({"G/w": arrays["G/w"]}))


def test_a_run_folder_prefers_safetensors_to_a_legacy_npz(tmp_path):
    from tests.faults.ckpt_files import write_legacy

    assert checkpoint.find_in_run(tmp_path) is None
    assert checkpoint.locate(tmp_path) == checkpoint.in_run(tmp_path) == str(tmp_path / checkpoint.FILENAME)
    write_legacy(tmp_path / checkpoint.LEGACY_FILENAME, {"G/w": np.zeros(2, np.float32)}, {"step": 1})
    assert checkpoint.locate(tmp_path) == str(tmp_path / checkpoint.LEGACY_FILENAME)
    _good(tmp_path / checkpoint.FILENAME)
    assert checkpoint.locate(tmp_path) == str(tmp_path / checkpoint.FILENAME)
    assert checkpoint.load(tmp_path)[1]["step"] == 7
