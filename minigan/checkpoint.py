"""Checkpoints: plain arrays plus JSON, never pickle, written atomically.

A checkpoint is an ``.npz`` (a zip of ``.npy`` arrays, each with a CRC) holding
named float/int arrays and one ``__meta__`` entry: UTF-8 JSON bytes stored as
a uint8 array. Loading uses ``allow_pickle=False``, so a file crafted to run
code on load (a pickle renamed to ``.npz``, or an ``.npy`` of dtype object)
is refused, never executed.

Writing goes to a temporary file in the same folder, is flushed and fsynced,
then renamed over the old checkpoint: a kill at any moment leaves either the
old checkpoint or the new one, never a torn file.
"""
from __future__ import annotations

import io
import json
import os
import tempfile

import numpy as np

FORMAT = "minigan-checkpoint"
VERSION = 1
_META = "__meta__"
FILENAME = "checkpoint.npz"  # a run folder's checkpoint
TEMP_PREFIX = ".tmp-ckpt-"  # save() writes here first; a kill mid-save can leave one behind


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


def save(path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``arrays`` and JSON-serialisable ``meta`` to ``path`` atomically."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        header = dict(meta, format=FORMAT, version=VERSION)
        payload = {_META: np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)}
        for name, value in arrays.items():
            value = np.asarray(value)
            if value.dtype == object:
                raise TypeError(f"checkpoint entry {name!r} is not a numeric array")
            payload[name] = value
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=".npz")
    except OSError as exc:
        raise CheckpointError(f"cannot write a checkpoint to '{folder}' ({exc.strerror}): "
                              "choose an output folder you can write to, with free space.") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(folder)  # make the rename itself survive a power cut
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise CheckpointError(f"could not save the checkpoint '{path}' ({exc.strerror}); the previous "
                                  "checkpoint is intact: free some disk space or choose another --out.") from exc
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # not supported here (e.g. Windows): the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def in_run(folder) -> str:
    """The path of the checkpoint of run folder ``folder`` (whether or not it exists yet)."""
    return os.path.join(os.fspath(folder), FILENAME)


def locate(path) -> str:
    """A run folder or a checkpoint file -> the checkpoint file's path."""
    path = os.fspath(path)
    return in_run(path) if os.path.isdir(path) else path


def load(path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint (a file, or a run folder's); every way it can be unusable is one CheckpointError."""
    path = locate(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at '{path}': pass a run folder that has a {FILENAME} "
                              "(made by `minigan train`) or the path of one.")
    try:
        with open(path, "rb") as f:
            blob = f.read()
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as exc:
        # Anything zipfile or NumPy raise on these bytes means the same thing: garbled headers raise
        # NotImplementedError ("zip file version") or RuntimeError ("encrypted"), an array header
        # declaring an absurd shape raises MemoryError.
        raise CheckpointError(f"'{path}' is not a readable minigan checkpoint (it is truncated, corrupted or "
                              f"another kind of file: {type(exc).__name__}); use another checkpoint or "
                              "retrain.") from exc
    if _META not in arrays:
        raise CheckpointError(f"'{path}' is not a minigan checkpoint (it has no metadata); use a checkpoint "
                              "written by `minigan train`.")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, or JSON nested too deep
        raise CheckpointError(f"the metadata in '{path}' is garbled; use another checkpoint or retrain.") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a minigan checkpoint; use a checkpoint written by `minigan train`.")
    if not isinstance(meta.get("version", 0), int):
        raise CheckpointError(f"'{path}' is not a minigan checkpoint (its format version is garbled); use a "
                              "checkpoint written by `minigan train`.")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"'{path}' was written by a newer minigan (format {meta.get('version')}); "
                              "upgrade minigan to load it.")
    return arrays, meta


def split(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries under ``prefix/`` with the prefix removed."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def join(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": v for k, v in arrays.items()}
