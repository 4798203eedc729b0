"""Checkpoint files made by hand for the hostile-file tests: legacy .npz copies, raw safetensors
headers, and zip members of gigabytes of zeros that cost a few MB on disk (and no time to make)."""
from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np

from minigan import checkpoint

MiB = 1 << 20


def write_legacy(path, arrays, meta) -> None:
    """What minigan wrote before safetensors: np.savez of the arrays plus ``__meta__`` JSON bytes."""
    header = dict(meta, format=checkpoint.FORMAT, version=1)
    np.savez(path, __meta__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)


def npy_header(shape, dtype="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def zero_bomb(prefix: bytes, zero_mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``prefix`` + ``zero_mib`` MiB of zeros, built without compressing them all.

    After a full flush the compressor starts afresh, so every MiB of zeros compresses to the same bytes.
    Returns (stream, uncompressed size).
    """
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = co.compress(prefix) + co.flush(zlib.Z_FULL_FLUSH)
    zeros = b"\0" * MiB
    block = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    assert co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH) == block  # the same bytes every time
    return head + block * zero_mib + co.flush(), len(prefix) + zero_mib * MiB


def write_zip(path, members) -> None:
    """A zip64 archive of ``members``: (name, payload) stored, or (name, (deflate_stream, size)) deflated.

    The deflated members' CRC-32 is left 0 (computing it would mean making the gigabytes): a reader finds
    out only after decompressing all of them.
    """
    out, directory = io.BytesIO(), []
    for name, payload in members:
        raw_name = name.encode()
        if isinstance(payload, tuple):
            data, size, method, crc = payload[0], payload[1], 8, 0
        else:
            data, size, method, crc = payload, len(payload), 0, zlib.crc32(payload)
        offset = out.tell()
        extra = struct.pack("<HHQQ", 1, 16, size, len(data))
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, method, 0, 0x21, crc, 0xFFFFFFFF,
                              0xFFFFFFFF, len(raw_name), len(extra)) + raw_name + extra)
        out.write(data)
        extra = struct.pack("<HHQQQ", 1, 24, size, len(data), offset)
        directory.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, 0, method, 0, 0x21, crc,
                                     0xFFFFFFFF, 0xFFFFFFFF, len(raw_name), len(extra), 0, 0, 0, 0,
                                     0xFFFFFFFF) + raw_name + extra)
    start = out.tell()
    out.write(b"".join(directory))
    size = out.tell() - start
    end64 = out.tell()
    n = len(directory)
    out.write(struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, size, start))
    out.write(struct.pack("<4sIQI", b"PK\x06\x07", 0, end64, 1))
    out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    with open(path, "wb") as f:
        f.write(out.getvalue())


def legacy_members(arrays, meta) -> list:
    """The (name, payload) members of a legacy checkpoint of ``arrays`` and ``meta``."""
    header = json.dumps(dict(meta, format=checkpoint.FORMAT, version=1)).encode()
    return [("__meta__.npy", npy(np.frombuffer(header, np.uint8)))] + [
        (f"{name}.npy", npy(value)) for name, value in arrays.items()]


def read_header(path) -> tuple[dict, bytes]:
    """A safetensors file's header (as JSON) and its data bytes."""
    return parse(open(path, "rb").read())


def parse(blob: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def write_header(path, header, data: bytes, text: bytes | None = None) -> None:
    """A safetensors file from a header (or its raw JSON ``text``) and data bytes."""
    text = json.dumps(header).encode() if text is None else text
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
