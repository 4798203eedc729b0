"""A checkpoint fuzzer: hundreds of seeded mutations of a small valid checkpoint, safetensors and legacy .npz.

Each mutated file goes where ``minigan generate --ckpt`` sends it (Generator.load: G alone, no data, no D,
then a few images) and must end in exactly one CheckpointError that names the file, or, for a harmless
mutation (a byte of the metadata that changes nothing that matters), a success whose images are finite.
Never another exception, never a non-finite image. Bounds, tested on the whole fuzz: Python-tracked memory
(NumPy's arrays included) peaks under PEAK_BYTES above the start, and the whole fuzz runs under SECONDS.
"""
from __future__ import annotations

import json
import os
import time
import tracemalloc
import warnings

import numpy as np
import pytest

from minigan import checkpoint
from minigan.checkpoint import CheckpointError
from minigan.train import run
from minigan.train.generator import Generator
from tests.faults import ckpt_files as cf
from tests.faults.conftest import assert_one_error_line
from tests.product.conftest import tiny_config

SEED = 13
PEAK_BYTES = 100 << 20
SECONDS = 90.0  # ~15 s on an idle 2-core machine; generous for a shared CI box


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished tiny SAGAN run: its checkpoint's bytes, and the same checkpoint as a legacy zip."""
    root = tmp_path_factory.mktemp("fuzz")
    config = tiny_config(root / "sagan", width=4, batch=2, iters=2, sample_every=100, n_samples=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(config, progress=False, log=lambda *a: None)
    arrays, meta = checkpoint.load(config.out)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    cf.write_legacy(root / "legacy.npz", arrays, meta)
    return {"safetensors": open(checkpoint.in_run(config.out), "rb").read(),
            "npz": open(root / "legacy.npz", "rb").read(), "arrays": arrays, "meta": meta}


def _outcome(path) -> str:
    """'error' (one CheckpointError naming the file) or 'ok' (finite images); anything else fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            generator = Generator.load(path, device="cpu")
            images = generator.images(generator.sample_z(2, np.random.default_rng(0)))  # floats: NaN shows
    except CheckpointError as exc:
        message = str(exc)
        assert str(path) in message and "\n" not in message, message
        return "error"
    assert np.isfinite(images).all(), "a silent bad image"
    return "ok"


# -- mutations: each returns the bytes of a mutated file --------------------------------------------------
def _bytes_mutations(blob: bytes, rng, n_cuts: int, n_flips: int, n_bursts: int, header_end: int):
    out = []
    for cut in sorted({0, 1, 7, 8, 9, header_end - 1, header_end, header_end + 1, len(blob) - 1}
                      | set(rng.integers(0, len(blob), n_cuts).tolist())):
        out.append((f"cut@{cut}", blob[:cut]))
    for i in range(n_flips):  # half in the header, where every byte matters, half anywhere
        at = int(rng.integers(0, header_end if i % 2 else len(blob)))
        b = bytearray(blob)
        b[at] ^= int(rng.integers(1, 256))
        out.append((f"flip@{at}", bytes(b)))
    for i in range(n_bursts):
        b = bytearray(blob)
        for at in rng.integers(0, len(blob), 12):
            b[at] = int(rng.integers(0, 256))
        out.append((f"burst{i}", bytes(b)))
    out.append(("appended", blob + b"\0" * 64))
    return out


def _header_mutations(blob: bytes, rng, count: int):
    """Edits of the safetensors JSON header: shapes, dtypes, names, offsets, extra entries, the metadata."""
    header, data = cf.parse(blob)
    names = sorted(k for k in header if k == "fixed_z" or k.startswith(("G/", "G_ema/")))  # what sampling reads
    edits = {
        "shape+1": lambda e: e["shape"].__setitem__(0, e["shape"][0] + 1) if e["shape"] else e["shape"].append(2),
        "shape-dim": lambda e: e.update(shape=e["shape"][1:]),
        "shape+dim": lambda e: e.update(shape=e["shape"] + [1]),
        "shape-huge": lambda e: e.update(shape=[1 << 40] + e["shape"]),
        "shape-negative": lambda e: e.update(shape=[-1] + e["shape"]),
        "shape-float": lambda e: e.update(shape=[2.5]),
        "shape-string": lambda e: e.update(shape="big"),
        "dtype-F64": lambda e: e.update(dtype="F64"),
        "dtype-F16": lambda e: e.update(dtype="F16"),
        "dtype-I32": lambda e: e.update(dtype="I32"),
        "dtype-bogus": lambda e: e.update(dtype="O"),
        "dtype-number": lambda e: e.update(dtype=4),
        "offsets-shift": lambda e: e.update(data_offsets=[e["data_offsets"][0] + 4, e["data_offsets"][1] + 4]),
        "offsets-huge": lambda e: e.update(data_offsets=[e["data_offsets"][0], 1 << 62]),
        "offsets-reversed": lambda e: e.update(data_offsets=e["data_offsets"][::-1]),
        "offsets-one": lambda e: e.update(data_offsets=e["data_offsets"][:1]),
        "extra-key": lambda e: e.update(note="x"),
        "not-a-dict": lambda e: e.clear(),
    }
    out = []
    for i in range(count):
        kind = sorted(edits)[i % len(edits)]
        name = names[int(rng.integers(0, len(names)))]
        h = json.loads(json.dumps(header))
        edits[kind](h[name])
        out.append((f"{kind}:{name}", h, data))
    for i, name in enumerate(rng.choice(names, 6, replace=False)):
        h = json.loads(json.dumps(header))
        if i % 3 == 0:
            h[name + ".renamed"] = h.pop(name)
        elif i % 3 == 1:
            h.pop(name)
        else:
            h[name.replace("G/", "D/", 1) + "x"] = h[name]  # a second entry over the same bytes
        out.append((f"name{i}:{name}", h, data))
    end = len(data)
    out.append(("extra-entry", dict(header, extra={"dtype": "F32", "shape": [4], "data_offsets": [end, end + 16]}),
                data + b"\0" * 16))
    out.append(("extra-huge", dict(header, extra={"dtype": "F32", "shape": [3 << 30],
                                                    "data_offsets": [end, end + (12 << 30)]}), data))
    meta = header["__metadata__"]
    for label, m in [("no-metadata", None), ("metadata-not-strings", dict(meta, minigan={"a": 1})),
                     ("no-run-meta", {k: v for k, v in meta.items() if k != "minigan"}),
                     ("no-crc", {k: v for k, v in meta.items() if k != "minigan.crc32"}),
                     ("crc-garbled", dict(meta, **{"minigan.crc32": "[1, 2"})),
                     ("crc-wrong", dict(meta, **{"minigan.crc32": json.dumps({n: 1 for n in names})}))]:
        h = {k: v for k, v in header.items() if k != "__metadata__"}
        if m is not None:
            h["__metadata__"] = m
        out.append((label, h, data))
    return out


def _framed(text: bytes) -> bytes:
    return len(text).to_bytes(8, "little") + text


def _raw_header_mutations(blob: bytes):
    """Header bytes that are not what they claim: lengths, duplicate keys, not JSON, deep nesting, a huge text."""
    n = int.from_bytes(blob[:8], "little")
    text, data = blob[8:8 + n], blob[8 + n:]
    first = text.index(b'"', 1)
    key = text[first:text.index(b'"', first + 1) + 1]
    entry_end = text.index(b"}", first) + 1
    duplicate = text[:1] + text[first:entry_end] + b", " + text[1:]
    return [
        ("length-huge", (1 << 63).to_bytes(8, "little") + text + data),
        ("length-max", (8 << 20).to_bytes(8, "little") + text + data),
        ("length+1", (n + 1).to_bytes(8, "little") + text + data),
        ("length-1", (n - 1).to_bytes(8, "little") + text + data),
        ("duplicate-key:" + key.decode(), len(duplicate).to_bytes(8, "little") + duplicate + data),
        ("array-header", (2).to_bytes(8, "little") + b"[]" + data),
        ("deep-json", _framed(b'{"a":' + b"[" * 19995 + b"]" * 19995 + b"}") + data),
        ("huge-json", _framed(b'{"a":[' + b"0," * ((8 << 20) // 2 - 5) + b"0]}") + data),
        ("not-utf8", len(text).to_bytes(8, "little") + b"{\xff\xfe" + text[3:] + data),
        ("pickle", __import__("pickle").dumps({"G/w": 1})),
        ("zip-magic", b"PK\x03\x04" + blob[4:]),
    ]


def _meta_mutations(meta: dict):
    """Run metadata of the wrong type or range, written as valid checkpoints (the CRCs are right)."""
    def with_config(**kw):
        return dict(meta, config=dict(meta["config"], **kw))

    return [
        ("step-string", dict(meta, step="many")), ("step-negative", dict(meta, step=-5)),
        ("step-float", dict(meta, step=2.5)), ("step-list", dict(meta, step=[1])),
        ("k_t-string", dict(meta, k_t="x")), ("num_classes-string", dict(meta, num_classes="3")),
        ("num_classes-huge", dict(meta, num_classes=10 ** 9)), ("num_classes-negative", dict(meta, num_classes=-2)),
        ("class_names-int", dict(meta, class_names=5)), ("rng-int", dict(meta, rng=5)),
        ("init_rng-none", dict(meta, init_rng=None)), ("config-list", dict(meta, config=[1])),
        ("config-missing", {k: v for k, v in meta.items() if k != "config"}),
        ("config-unknown-key", with_config(colour="red")), ("model-bogus", with_config(model="gan")),
        ("width-string", with_config(width="wide")), ("width+1", with_config(width=5)),
        ("z_dim+1", with_config(z_dim=21)), ("z_dim-0", with_config(z_dim=0)), ("image_size-33", with_config(image_size=33)),
        ("image_size-64", with_config(image_size=64)), ("n_samples+1", with_config(n_samples=3)),
        ("ema-0", with_config(ema=0.0)), ("model-dcgan", with_config(model="dcgan")),
        ("seed-string", with_config(seed="s")), ("betas-string", with_config(betas="ab")),
        ("version-3", dict(meta, version=3)), ("version-string", dict(meta, version="2")),
        ("format-other", dict(meta, format="other")),
    ]


# The mutations a config range check refuses (the options' validation, another branch): on this branch
# they build absurd models or tensors, so they run in a child capped at 1.5 GiB and fail there.
NEEDS_CONFIG_RANGES = {
    "width-100000": {"width": 100000},
    "width-0": {"width": 0},
    "n_samples-1e9": {"n_samples": 10 ** 9},
    "lr_d-nan": {"lr_d": float("nan")},
}


def _npz_mutations(base, rng):
    """Legacy zips: .npy headers edited, extra members, members of gigabytes of zeros, a huge directory."""
    arrays, meta = base["arrays"], base["meta"]
    members = cf.legacy_members(arrays, meta)
    names = [n for n, _ in members if n.startswith(("G/", "G_ema/", "fixed_z"))]  # what sampling reads
    out = []

    def swap(label, name, payload):
        out.append((label, [(n, payload if n == name else p) for n, p in members]))

    for i, name in enumerate(rng.choice(names, 8, replace=False)):
        a = arrays[name[:-4]]
        swap(f"npy-shape:{name}", name, cf.npy_header(a.shape + (2,)) + b"\0" * (a.nbytes * 2))
        swap(f"npy-dtype:{name}", name, cf.npy_header(a.shape, "<f8") + b"\0" * (a.nbytes * 2))
        swap(f"npy-object:{name}", name, cf.npy_header(a.shape, "|O") + b"\0" * 64)
        swap(f"npy-big-endian:{name}", name, cf.npy_header(a.shape, ">f4") + a.astype(">f4").tobytes())
        swap(f"npy-short:{name}", name, cf.npy(a)[:-4])
        swap(f"npy-long:{name}", name, cf.npy(a) + b"\0" * 4)
        swap(f"npy-garbage:{name}", name, b"\x93NUMPY\x01\x00\x10\x00{'descr': zz}    \n")
    shape_name = next(n for n in names if arrays[n[:-4]].ndim == 4 and n.startswith("G/"))
    swap("bomb-8GiB-shape", shape_name, cf.zero_bomb(cf.npy_header((2 << 30,)), 8 << 10))
    a = arrays[shape_name[:-4]]
    swap("bomb-after-array", shape_name, cf.zero_bomb(cf.npy(a), 2 << 10))
    out.append(("bomb-extra-12GiB", members + [("extra.npy", cf.zero_bomb(cf.npy_header((3 << 30,)), 12 << 10))]))
    out.append(("extra-member", members + [("extra.npy", cf.npy(np.zeros(3, np.float32)))]))
    out.append(("not-npy-member", members + [("readme.txt", b"hello")]))
    out.append(("duplicate-member", members + [members[1]]))
    out.append(("no-meta", members[1:]))
    out.append(("meta-huge", [("__meta__.npy", cf.npy_header((16 << 20,), "|u1") + b"{}")] + members[1:]))
    out.append(("nan-weight", [(n, cf.npy(np.full_like(arrays[n[:-4]], np.nan)) if n == shape_name else p)
                               for n, p in members]))
    return out


def _write_zip_with_huge_directory(path):
    """A zip whose end record declares a 3 GiB table of contents."""
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, 3 << 30, 0, 0))


# -- the fuzz -------------------------------------------------------------------------------------------
def test_fuzz_every_mutation_is_one_checkpoint_error_or_finite_images(tmp_path, base):
    rng = np.random.default_rng(SEED)
    st, npz = base["safetensors"], base["npz"]
    header_end = 8 + int.from_bytes(st[:8], "little")
    cases = []  # (label, writer(path))
    for label, blob in (_bytes_mutations(st, rng, 40, 160, 20, header_end) + _raw_header_mutations(st)):
        cases.append(("st/" + label, lambda p, blob=blob: p.write_bytes(blob)))
    for label, header, data in _header_mutations(st, rng, 72):
        cases.append(("st/" + label, lambda p, h=header, d=data: cf.write_header(p, h, d)))
    for label, meta in _meta_mutations(base["meta"]):
        cases.append(("meta/" + label, lambda p, m=meta: _save_raw_meta(p, base["arrays"], m)))
    for where in ("G/", "G_ema/", "D/", "fixed_z"):
        cases.append(("nan/" + where, lambda p, w=where: checkpoint.save(p, _poisoned(base["arrays"], w),
                                                                          base["meta"])))
    zip_end = npz.index(b"PK\x01\x02")
    for label, blob in _bytes_mutations(npz, rng, 20, 60, 10, zip_end):
        cases.append(("npz/" + label, lambda p, blob=blob: p.write_bytes(blob)))
    for label, members in _npz_mutations(base, rng):
        cases.append(("npz/" + label, lambda p, m=members: cf.write_zip(p, m)))
    cases.append(("npz/huge-directory", _write_zip_with_huge_directory))
    assert len(cases) >= 400

    outcomes, slow = {}, []
    tracemalloc.start()
    started = time.monotonic()
    try:
        start_bytes = tracemalloc.get_traced_memory()[0]
        for i, (label, write) in enumerate(cases):
            path = tmp_path / f"{i}.ckpt"
            write(path)
            t0 = time.monotonic()
            try:
                outcomes[label] = _outcome(path)
            except Exception as exc:  # the bug: anything else escapes
                pytest.fail(f"mutation {label!r}: {type(exc).__name__}: {exc}")
            slow.append((time.monotonic() - t0, label))
            path.unlink()
        peak = tracemalloc.get_traced_memory()[1] - start_bytes
    finally:
        tracemalloc.stop()
    seconds = time.monotonic() - started
    errors = [k for k, v in outcomes.items() if v == "error"]
    print(f"{len(outcomes)} mutations, {len(errors)} refused, {seconds:.1f} s, peak {peak / 2 ** 20:.1f} MiB; "
          f"harmless: {sorted(set(outcomes) - set(errors))}")
    assert peak < PEAK_BYTES, f"peak {peak / 2 ** 20:.0f} MiB"
    assert seconds < SECONDS, (seconds, sorted(slow)[-5:])
    # every structural damage is refused; what may succeed is a harmless edit of the metadata or a cut-off
    # appendix (e.g. a flipped digit of a learning rate), and the fuzz must have seen both outcomes
    assert len(errors) > 0.8 * len(outcomes) and len(errors) < len(outcomes)
    must_fail = [k for k in outcomes if k.startswith(("st/shape", "st/dtype", "st/offsets", "st/cut", "st/extra-huge",
                                                      "st/length", "st/name", "st/pickle", "npz/npy", "npz/bomb-8",
                                                      "npz/bomb-after", "npz/huge", "npz/meta", "npz/no-meta",
                                                      "nan/G", "npz/nan", "npz/cut", "meta/version",
                                                      "meta/format", "meta/model", "meta/width"))]
    assert all(outcomes[k] == "error" for k in must_fail), [k for k in must_fail if outcomes[k] != "error"]
    assert outcomes["npz/bomb-extra-12GiB"] == "error" and outcomes["npz/extra-member"] == "ok"
    assert outcomes["nan/D/"] == outcomes["nan/fixed_z"] == "ok"  # neither is read to sample (resume refuses them)


def _save_raw_meta(path, arrays, meta):
    """A checkpoint whose run metadata is ``meta`` as given (save() would set its format and version)."""
    with open(path, "wb") as f:
        checkpoint._write(f, arrays, {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, **meta})


def _poisoned(arrays, where):
    name = next(k for k in sorted(arrays) if k.startswith(where))
    out = dict(arrays)
    out[name] = np.full_like(arrays[name], np.nan)
    return out


@pytest.mark.parametrize("label", sorted(NEEDS_CONFIG_RANGES))
def test_config_out_of_range_is_one_line_at_the_cli(tmp_path, base, label):
    from tests.faults.test_untrusted_checkpoints import _limited_cli

    meta = dict(base["meta"], config=dict(base["meta"]["config"], **NEEDS_CONFIG_RANGES[label]))
    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, base["arrays"], meta)
    rc, err, _ = _limited_cli("generate", "--ckpt", path, "--out", tmp_path / "images", "--n", "2", timeout=300)
    assert rc == 2, err
    assert_one_error_line(err, str(path))
    assert "out of memory" not in err


@pytest.mark.parametrize("label", ["st/flip", "st/extra-huge", "npz/bomb-8GiB-shape", "meta/step-string"])
def test_fuzzed_files_at_the_cli_are_one_error_line(tmp_path, base, main, label):
    """A few of the fuzz's refusals through the command line: exit 2 and one ``minigan: error:`` line."""
    path = tmp_path / checkpoint.FILENAME
    if label == "st/flip":
        blob = bytearray(base["safetensors"])
        blob[20] ^= 0x55
        path.write_bytes(bytes(blob))
    elif label == "st/extra-huge":
        header, data = cf.parse(base["safetensors"])
        header["extra"] = {"dtype": "F32", "shape": [3 << 30], "data_offsets": [len(data), len(data) + (12 << 30)]}
        cf.write_header(path, header, data)
    elif label == "npz/bomb-8GiB-shape":
        members = [m for m in _npz_mutations(base, np.random.default_rng(SEED)) if m[0] == "bomb-8GiB-shape"][0][1]
        cf.write_zip(path, members)
    else:
        _save_raw_meta(path, base["arrays"], dict(base["meta"], step="many"))
    rc, _, err = main("generate", "--ckpt", path, "--out", tmp_path / "images", "--n", "2")
    assert rc == 2, err
    assert_one_error_line(err, str(path))
    assert not (tmp_path / "images").exists()
