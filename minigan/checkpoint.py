"""Checkpoints: named arrays plus JSON metadata in a safetensors file; never pickle, written atomically.

The format is safetensors, the field's format for weight files from strangers
(other tools read minigan's G from it without minigan):

    8 bytes   N, the header's length (little-endian uint64)
    N bytes   JSON: {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
                     "__metadata__": {"minigan": "<the run's metadata as JSON>",
                                      "minigan.crc32": "<JSON {name: CRC-32 of its bytes}>"}}
              padded with spaces so the data starts 8-byte aligned
    the rest  every array's raw little-endian C-order bytes, back to back, no holes

Loading never runs code and never allocates what a file merely declares:

* the header is read first and capped (MAX_HEADER_BYTES); every entry's dtype,
  shape and offsets are checked against the file's size (the entries tile the
  data exactly), so no load reads more than the file holds;
* with ``expect`` (the entries the model its metadata describes needs: name ->
  (dtype, shape)), every entry is checked against it before any data is read:
  missing or mismatched entries are refused, unknown ones refused or, with
  ``skip_unknown``, left unread;
* each array's CRC-32 is checked (the zip of the legacy format had one too) and
  float arrays must be finite.

Legacy run folders hold ``checkpoint.npz`` (a zip of ``.npy`` arrays plus a
``__meta__`` entry of JSON bytes), still loaded with the same bounds: the zip
directory is capped, every ``.npy`` header is read (a few bytes decompressed)
and checked before any data (together they must fit in the file: np.savez never
compressed), and each member is decompressed as a stream that stops one byte
past the size its header declares, so a member of gigabytes of zeros costs
nothing.

Writing goes to a temporary file in the same folder, is flushed and fsynced,
then renamed over the old checkpoint: a kill at any moment leaves either the
old checkpoint or the new one, never a torn file.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import tempfile
import zipfile
import zlib

import numpy as np

FORMAT = "minigan-checkpoint"
VERSION = 2  # 2: safetensors; 1: the legacy .npz (same metadata)
FILENAME = "checkpoint.safetensors"  # a run folder's checkpoint
LEGACY_FILENAME = "checkpoint.npz"  # what minigan wrote before; still loaded
TEMP_PREFIX = ".tmp-ckpt-"  # save() writes here first; a kill mid-save can leave one behind
MAX_HEADER_BYTES = 8 << 20  # a header (or legacy __meta__) larger than this is refused unread
MAX_ZIP_DIRECTORY_BYTES = 1 << 20  # a legacy zip's table of contents (a real one is ~50 KB)

_RUN_META = "minigan"
_CRC = "minigan.crc32"
_LEGACY_META = "__meta__"
_DTYPES = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2", "F16": "<f2", "U32": "<u4",
           "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8"}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_DIMS = 32
_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


class _Broken(Exception):
    """Internal: the bytes are not a well-formed checkpoint; the text says how (wrapped in CheckpointError)."""


# -- writing --------------------------------------------------------------------------------------------
def save(path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``arrays`` and JSON-serialisable ``meta`` to ``path`` atomically (safetensors, whatever the name)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        run_meta = dict(meta, format=FORMAT, version=VERSION)
        payload = {name: _storable(name, value) for name, value in arrays.items()}
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=".safetensors")
    except OSError as exc:
        raise CheckpointError(f"cannot write a checkpoint to '{folder}' ({exc.strerror}): "
                              "choose an output folder you can write to, with free space.") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
            _write(f, payload, run_meta)
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


def _storable(name, value) -> np.ndarray:
    """``value`` as a little-endian C-order array of a safetensors dtype, or TypeError."""
    value = np.asarray(value)
    if not isinstance(name, str) or name == "__metadata__":
        raise TypeError(f"checkpoint entry {name!r} needs another name")
    if value.dtype.newbyteorder("<") not in _CODES:
        raise TypeError(f"checkpoint entry {name!r} is not a numeric array (dtype {value.dtype})")
    return value.astype(value.dtype.newbyteorder("<"), order="C", copy=False)


def _raw(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1).view(np.uint8)


def _write(f, arrays: dict[str, np.ndarray], run_meta: dict) -> None:
    """The safetensors bytes of ``arrays`` + ``run_meta`` to the open binary file ``f``."""
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))  # widest first: every array aligned
    header, begin = {}, 0
    for name in order:
        a = arrays[name]
        header[name] = {"dtype": _CODES[a.dtype], "shape": list(a.shape), "data_offsets": [begin, begin + a.nbytes]}
        begin += a.nbytes
    crcs = {name: zlib.crc32(_raw(arrays[name])) for name in order}
    header["__metadata__"] = {_RUN_META: json.dumps(run_meta), _CRC: json.dumps(crcs)}
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for name in order:
        f.write(_raw(arrays[name]))


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


# -- finding --------------------------------------------------------------------------------------------
def in_run(folder) -> str:
    """The path a run folder's checkpoint is saved to (whether or not it exists yet)."""
    return os.path.join(os.fspath(folder), FILENAME)


def find_in_run(folder) -> str | None:
    """The checkpoint a run folder holds: its checkpoint.safetensors, else a legacy checkpoint.npz, else None."""
    for name in (FILENAME, LEGACY_FILENAME):
        path = os.path.join(os.fspath(folder), name)
        if os.path.exists(path):
            return path
    return None


def locate(path) -> str:
    """A run folder or a checkpoint file -> the checkpoint file's path."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return find_in_run(path) or in_run(path)
    return path


# -- reading --------------------------------------------------------------------------------------------
def load(path, expect=None, skip_unknown: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint (a file, or a run folder's) -> (arrays, meta), bounded by what the caller needs.

    ``expect``: None, or a callable meta -> {name: (dtype, shape)}, the entries the model the metadata
    describes needs (it may raise CheckpointError). Every entry is checked against it before any data is
    read; ``skip_unknown`` leaves entries it does not name unread instead of refusing the file. Every way
    the file can be unusable is one CheckpointError naming it.
    """
    path = locate(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at '{path}': pass a run folder that has a {FILENAME} "
                              "(made by `minigan train`) or the path of one.")
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise CheckpointError(f"cannot read the checkpoint '{path}' ({exc.strerror}): check its "
                              "permissions, or use another checkpoint.") from exc
    with f:
        with _unreadable(path):
            size = os.fstat(f.fileno()).st_size
            reader = _Npz(f, size) if f.read(2) == b"PK" else _Safetensors(f, size)
        meta = _parse_meta(reader.meta, path)
        if expect is None:  # still never more than the file holds: both readers check that
            names = list(reader.entries)
        else:
            names = _fit(reader.entries, expect(meta), skip_unknown, path, meta)
        arrays = {}
        for name in names:
            with _unreadable(path):
                arrays[name] = reader.read(name)
            if arrays[name].dtype.kind == "f" and not np.isfinite(arrays[name]).all():
                raise CheckpointError(
                    f"'{path}' holds non-finite values (NaN or inf) in '{name}': the run diverged before it "
                    "was saved, or the file was edited; use an earlier checkpoint or retrain.")
    return arrays, meta


@contextlib.contextmanager
def _unreadable(path):
    """Whatever the parsers (ours, zipfile's, NumPy's) raise on these bytes is one CheckpointError."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as exc:
        # garbled zip headers raise NotImplementedError ("zip file version") or RuntimeError ("encrypted"),
        # a bad .npy header ValueError, our own checks _Broken
        detail = str(exc) if isinstance(exc, _Broken) else type(exc).__name__
        raise CheckpointError(f"'{path}' is not a readable minigan checkpoint (it is truncated, corrupted or "
                              f"another kind of file: {detail}); use another checkpoint or retrain.") from exc


def _parse_meta(blob, path) -> dict:
    if blob is None:
        raise CheckpointError(f"'{path}' is not a minigan checkpoint (it has no metadata); use a checkpoint "
                              "written by `minigan train`.")
    try:
        meta = json.loads(blob)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, or JSON nested too deep
        raise CheckpointError(f"the metadata in '{path}' is garbled; use another checkpoint or retrain.") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a minigan checkpoint; use a checkpoint written by `minigan train`.")
    version = meta.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"'{path}' is not a minigan checkpoint (its format version is garbled); use a "
                              "checkpoint written by `minigan train`.")
    if version > VERSION:
        raise CheckpointError(f"'{path}' was written by a newer minigan (format {version}); "
                              "upgrade minigan to load it.")
    return meta


def _fit(entries: dict, wanted: dict, skip_unknown: bool, path, meta) -> list[str]:
    """The names to read: every wanted entry present with its dtype and shape, or one CheckpointError."""
    problem = ""
    for name, (dtype, shape) in wanted.items():
        if name not in entries:
            problem = f"it has no '{name}'"
        elif entries[name] != (np.dtype(dtype), tuple(shape)):
            got_dtype, got_shape = entries[name]
            problem = (f"'{name}' is {got_dtype} {got_shape}, the model needs {np.dtype(dtype)} "
                       f"{tuple(shape)}")
        if problem:
            break
    unknown = sorted(set(entries) - set(wanted))
    if not problem and unknown and not skip_unknown:
        problem = f"it has {len(unknown)} entries the model does not use: '{unknown[0]}'" + (
            ", ..." if len(unknown) > 1 else "")
    if problem:
        config = meta.get("config")
        model = config.get("model") if isinstance(config, dict) else None
        raise CheckpointError(f"'{path}' does not fit this model (the {model if isinstance(model, str) else 'model'} "
                              f"its own config describes: {problem}); it is damaged or was edited: use another "
                              "checkpoint.")
    return list(wanted)


def _nbytes(dtype: np.dtype, shape: tuple) -> int:
    return math.prod(shape) * dtype.itemsize  # Python ints: a declared 10**30 elements cannot overflow


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Broken("a name appears twice in its header")
    return dict(pairs)


class _Safetensors:
    """The header of a safetensors file, checked against the file's size; ``read`` one array."""

    def __init__(self, f, size: int):
        self.f = f
        f.seek(0)
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _Broken(f"{size} bytes, shorter than any header")
        n = int.from_bytes(prefix, "little")
        if n > MAX_HEADER_BYTES:
            raise _Broken(f"it declares a {n}-byte header (limit {MAX_HEADER_BYTES})")
        if 8 + n > size:
            raise _Broken(f"it declares a {n}-byte header, more than the file holds")
        text = f.read(n)
        if not text.startswith(b"{"):
            raise _Broken("its header is not a JSON object")
        header = json.loads(text.decode("utf-8"), object_pairs_hook=_no_duplicates)
        if not isinstance(header, dict):
            raise _Broken("its header is not a JSON object")
        extra = header.pop("__metadata__", None) or {}
        if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
            raise _Broken("its __metadata__ is not a map of strings")
        self.meta = extra.get(_RUN_META)
        crcs = json.loads(extra.get(_CRC, "{}"))
        self.crcs = crcs if isinstance(crcs, dict) else {}
        self.base = 8 + n
        self.entries, self.spans = {}, {}
        for name, entry in header.items():
            self.entries[name], self.spans[name] = self._entry(name, entry)
        self._check_tiling(size - self.base)

    @staticmethod
    def _entry(name, entry):
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _Broken(f"entry '{name}' is not a dtype, shape and data_offsets")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(code, str) or code not in _DTYPES:
            raise _Broken(f"entry '{name}' has an unsupported dtype {str(code)[:20]!r}")
        if not _ints(shape, _MAX_DIMS) or not _ints(offsets, 2) or len(offsets) != 2:
            raise _Broken(f"entry '{name}' has a malformed shape or data_offsets")
        dtype, shape = np.dtype(_DTYPES[code]), tuple(shape)
        begin, end = offsets
        if end - begin != _nbytes(dtype, shape):
            raise _Broken(f"entry '{name}' declares {_nbytes(dtype, shape)} bytes of data but spans {end - begin}")
        return (dtype, shape), (begin, end)

    def _check_tiling(self, data_size: int) -> None:
        """The entries cover the data exactly, end to end: none overlaps another or runs past the file."""
        at = 0
        for begin, end in sorted(self.spans.values()):
            if begin != at:
                raise _Broken("its entries overlap, leave a gap, or run past the end of the file")
            at = end
        if at != data_size:
            raise _Broken(f"its entries cover {at} bytes of data, the file holds {data_size}")

    def read(self, name) -> np.ndarray:
        (dtype, shape), (begin, end) = self.entries[name], self.spans[name]
        buf = np.empty(end - begin, np.uint8)
        self.f.seek(self.base + begin)
        if self.f.readinto(buf) != buf.size:
            raise _Broken(f"'{name}' is cut short")
        if self.crcs.get(name) != zlib.crc32(buf):
            raise _Broken(f"'{name}' fails its checksum")
        return buf.view(dtype).reshape(shape)


def _ints(values, max_len: int) -> bool:
    return (isinstance(values, list) and len(values) <= max_len
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values))


class _Npz:
    """A legacy .npz: its zip directory (capped) and every .npy header, read before any array data."""

    def __init__(self, f, size: int):
        _check_zip_directory(f, size)
        self.zip = zipfile.ZipFile(f)
        infos = self.zip.infolist()
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise _Broken("a name appears twice in its zip directory")
        if not all(name.endswith(".npy") for name in names):
            raise _Broken("it holds members that are not .npy arrays")
        self.members = {info.filename[:-4]: info for info in infos}
        self.entries = {}
        for name, info in self.members.items():
            with self.zip.open(info) as member:
                self.entries[name] = _npy_header(member)
        self.meta = None
        if _LEGACY_META in self.entries:
            dtype, shape = self.entries.pop(_LEGACY_META)
            if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_HEADER_BYTES:
                raise _Broken(f"its metadata entry is not JSON bytes of at most {MAX_HEADER_BYTES}")
            self.meta = self.read(_LEGACY_META, dtype, shape).tobytes()
        # np.savez stores its members uncompressed: the arrays of a real checkpoint fit in the file
        sizes = {name: _nbytes(*entry) for name, entry in self.entries.items()}
        if sum(sizes.values()) > size:
            biggest = max(sizes, key=sizes.get)
            raise _Broken(f"its arrays declare {sum(sizes.values())} bytes ({biggest} alone declares "
                          f"{sizes[biggest]}), more than the {size} bytes of the file")

    def read(self, name, dtype=None, shape=None) -> np.ndarray:
        if dtype is None:
            dtype, shape = self.entries[name]
        fortran = False
        with self.zip.open(self.members[name]) as member:
            _, _, fortran = _npy_header(member, with_order=True)
            buf = np.empty(_nbytes(dtype, shape), np.uint8)
            done = 0
            while done < buf.size:  # a stream: never more than the header declares, whatever the zip says
                chunk = member.read(min(_CHUNK, buf.size - done))
                if not chunk:
                    raise _Broken(f"'{name}' is cut short")
                buf[done:done + len(chunk)] = np.frombuffer(chunk, np.uint8)
                done += len(chunk)
            if member.read(1):  # (reaching the end also checks the member's CRC-32)
                raise _Broken(f"'{name}' holds more bytes than its array header declares")
        return buf.view(dtype).reshape(shape, order="F" if fortran else "C")


def _npy_header(member, with_order=False):
    """(dtype, shape) from an .npy header (a few hundred bytes; NumPy's parser evaluates no code)."""
    major, _ = np.lib.format.read_magic(member)
    if major == 1:
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
    elif major in (2, 3):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise _Broken(f"an .npy header of version {major}")
    if dtype not in _CODES or dtype.byteorder == ">":
        raise _Broken(f"an array of unsupported dtype {str(dtype)[:40]}")
    if len(shape) > _MAX_DIMS:
        raise _Broken("an array of too many dimensions")
    return (dtype, tuple(shape), fortran) if with_order else (dtype, tuple(shape))


def _check_zip_directory(f, size: int) -> None:
    """Refuse a zip whose table of contents is larger than MAX_ZIP_DIRECTORY_BYTES (zipfile reads it whole)."""
    tail_len = min(size, 22 + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = len(tail) - 22 if tail[-22:-18] == b"PK\x05\x06" else tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise _Broken("it has no zip directory")
    directory = int.from_bytes(tail[at + 12:at + 16], "little")
    if at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":  # zip64: zipfile reads this record instead
        f.seek(int.from_bytes(tail[at - 12:at - 4], "little"))
        record = f.read(56)
        directory = int.from_bytes(record[40:48], "little") if record[:4] == b"PK\x06\x06" else directory
    if directory > MAX_ZIP_DIRECTORY_BYTES:
        raise _Broken(f"its zip directory declares {directory} bytes (limit {MAX_ZIP_DIRECTORY_BYTES})")


# -- names ----------------------------------------------------------------------------------------------
def split(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries under ``prefix/`` with the prefix removed."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def join(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": v for k, v in arrays.items()}
