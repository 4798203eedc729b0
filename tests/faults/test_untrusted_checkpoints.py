"""Untrusted checkpoints at the command line: ``minigan generate --ckpt X`` and ``minigan train --resume``.

Every unusable file is exit code 2 and exactly one ``minigan: error:`` line that
names it, never a traceback, and a pickle is never executed. (The format layer
itself is tested in tests/product/test_checkpoint.py; these go through the CLI
and the Trainer, and add the zip and array headers that used to escape as
NotImplementedError, RuntimeError or MemoryError.)
"""
import io
import json
import os
import pickle
import shutil
import warnings
import zipfile

import numpy as np
import pytest

from minigan import checkpoint
from minigan.train import run
from tests.faults.conftest import Child, assert_one_error_line
from tests.product.conftest import tiny_config

class _Payload:
    """Unpickling this creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two finished tiny runs: a SAGAN and a DCGAN."""
    root = tmp_path_factory.mktemp("trained")
    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in ("sagan", "dcgan"):
            config = tiny_config(root / model, model=model, width=4, batch=2, iters=2, sample_every=100)
            run(config, progress=False, log=lambda *a: None)
            runs[model] = config.out
    return runs




def _rewrite(src_run, dst, arrays=None, meta=None):
    """A copy of ``src_run``'s checkpoint at ``dst`` with arrays/meta passed through the given functions."""
    a, m = checkpoint.load(os.path.join(src_run, "checkpoint.npz"))
    m = {k: v for k, v in m.items() if k not in ("format", "version")}
    checkpoint.save(dst, arrays(a) if arrays else a, meta(m) if meta else m)
    return dst


def _npy(shape, dtype="<f4", payload=b""):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


# -- the hostile files ---------------------------------------------------------------------------------
def make_pickle(trained, path):
    path.write_bytes(pickle.dumps(_Payload(str(path.parent / "pwned"))))


def make_truncated(cut):
    def make(trained, path):
        blob = open(os.path.join(trained["sagan"], "checkpoint.npz"), "rb").read()
        n = int(len(blob) * cut) if isinstance(cut, float) else cut
        path.write_bytes(blob[:n])
    return make


def make_garbled(offset_from_central_directory, value):
    """One byte of the zip central directory changed: version needed (+6), flags (+8) or compression (+10)."""
    def make(trained, path):
        blob = bytearray(open(os.path.join(trained["sagan"], "checkpoint.npz"), "rb").read())
        at = blob.index(b"PK\x01\x02") + offset_from_central_directory
        blob[at] = value
        path.write_bytes(bytes(blob))
    return make


def make_flipped(trained, path):
    blob = bytearray(open(os.path.join(trained["sagan"], "checkpoint.npz"), "rb").read())
    for i in np.random.default_rng(7).integers(64, len(blob) - 64, 40):
        blob[i] ^= 0x5A
    path.write_bytes(bytes(blob))


def make_huge_array(trained, path):
    """A well-formed zip whose array header declares 400 TiB of float32 (np.load would try to allocate it)."""
    meta = json.dumps({"format": "minigan-checkpoint", "version": 1, "step": 1}).encode()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", _npy((len(meta),), "|u1", meta))
        z.writestr("G/w.npy", _npy((10 ** 14,), "<f4", b"\0" * 64))


def make_wrong_model(trained, path):
    """DCGAN weights under SAGAN metadata: a checkpoint of another model."""
    dcgan_arrays, _ = checkpoint.load(os.path.join(trained["dcgan"], "checkpoint.npz"))
    _rewrite(trained["sagan"], path, arrays=lambda a: dcgan_arrays)


def make_wrong_shape(trained, path):
    def shrink(a):
        name = next(k for k in sorted(a) if k.startswith("G/") and a[k].ndim == 4)
        a[name] = a[name][:, :-1]
        return a
    _rewrite(trained["sagan"], path, arrays=shrink)


HOSTILE = {
    "pickle": (make_pickle, "not a readable minigan checkpoint"),
    "empty": (make_truncated(0), "not a readable minigan checkpoint"),
    "truncated-100": (make_truncated(100), "not a readable minigan checkpoint"),
    "truncated-half": (make_truncated(0.5), "not a readable minigan checkpoint"),
    "truncated-tail": (make_truncated(-10), "not a readable minigan checkpoint"),
    "flipped-bytes": (make_flipped, "not a readable minigan checkpoint"),
    "zip-version": (make_garbled(6, 0xFF), "not a readable minigan checkpoint"),
    "zip-encrypted-flag": (make_garbled(8, 0x01), "not a readable minigan checkpoint"),
    "zip-compression": (make_garbled(10, 0x63), "not a readable minigan checkpoint"),
    "huge-array-header": (make_huge_array, "not a readable minigan checkpoint"),
    "wrong-model": (make_wrong_model, "does not fit this model"),
    "wrong-shape": (make_wrong_shape, "does not fit this model"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_generate_refuses_a_hostile_checkpoint_with_one_line(tmp_path, trained, main, name):
    make, expected = HOSTILE[name]
    path = tmp_path / "checkpoint.npz"
    make(trained, path)
    rc, out, err = main("generate", "--ckpt", path, "--out", tmp_path / "images", "--n", "2")
    assert rc == 2, err
    assert_one_error_line(err, str(path), expected)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize("name", ["pickle", "truncated-half", "zip-version", "huge-array-header", "wrong-shape"])
def test_resume_refuses_a_hostile_checkpoint_with_one_line(tmp_path, trained, main, name):
    make, expected = HOSTILE[name]
    out = tmp_path / "run"
    out.mkdir()
    make(trained, out / "checkpoint.npz")
    rc, _, err = main("train", "--out", out, "--resume", "--image-size", "32", "--width", "4", "--batch", "2",
                      "--iters", "4", "--quiet")
    assert rc == 2, err
    assert_one_error_line(err, str(out / "checkpoint.npz"), expected)
    assert not (tmp_path / "pwned").exists()


def _drop(key):
    return lambda m: {k: v for k, v in m.items() if k != key}


def _set(key, value):
    return lambda m: dict(m, **{key: value})


BAD_META = {
    "no-config": _drop("config"),
    "config-not-a-dict": _set("config", [1, 2]),
    "no-step": _drop("step"),
    "step-not-a-number": _set("step", "many"),
    "no-rng": _drop("rng"),
    "rng-garbled": _set("rng", {"bit_generator": "PCG64", "state": 5}),
    "no-sampler": _drop("sampler"),
    "width-not-a-number": lambda m: dict(m, config=dict(m["config"], width="wide")),
}


@pytest.mark.parametrize("name", sorted(BAD_META))
def test_resume_refuses_malformed_metadata_with_one_line(tmp_path, trained, main, name):
    out = tmp_path / "run"
    _rewrite(trained["sagan"], out / "checkpoint.npz", meta=BAD_META[name])
    rc, _, err = main("train", "--out", out, "--resume", "--image-size", "32", "--width", "4", "--batch", "2",
                      "--iters", "4", "--quiet")
    assert rc == 2, err
    assert_one_error_line(err, str(out / "checkpoint.npz"))


@pytest.mark.parametrize("name", ["no-config", "no-step", "rng-garbled", "width-not-a-number"])
def test_generate_refuses_malformed_metadata_with_one_line(tmp_path, trained, main, name):
    path = _rewrite(trained["sagan"], tmp_path / "checkpoint.npz", meta=BAD_META[name])
    try:
        rc, _, err = main("generate", "--ckpt", path, "--out", tmp_path / "images", "--n", "2")
    except Exception as exc:  # the bug: a traceback
        pytest.fail(f"{type(exc).__name__}: {exc}")
    assert rc == 2, err
    assert_one_error_line(err, str(path))


def test_resume_with_another_data_set_is_one_line(tmp_path, trained, main):
    """The sampler's state is for the training set; resuming on a different folder is refused, not a traceback."""
    out = tmp_path / "run"
    shutil.copytree(trained["sagan"], out)
    data = tmp_path / "icons"
    data.mkdir()
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (40, 40), (10 * i, 0, 0)).save(data / f"{i}.png")
    rc, _, err = main("train", "--out", out, "--resume", "--data", data, "--iters", "4", "--quiet")
    assert rc == 2, err
    assert_one_error_line(err, str(out / "checkpoint.npz"), "same data folder")


def test_generate_from_a_good_checkpoint_writes_images(tmp_path, trained, main):
    try:
        rc, out, err = main("generate", "--ckpt", trained["sagan"], "--out", tmp_path / "images", "--n", "3")
    except Exception as exc:  # the bug: a traceback
        pytest.fail(f"{type(exc).__name__}: {exc}")
    assert rc == 0, err
    assert len(os.listdir(tmp_path / "images")) == 3


def test_a_pickle_never_runs_in_a_real_process(tmp_path, trained):
    path = tmp_path / "checkpoint.npz"
    make_pickle(trained, path)
    child = Child(["generate", "--ckpt", str(path), "--out", str(tmp_path / "images")], driver=False)
    assert child.finish() == 2, child.describe()
    assert_one_error_line(child.stderr, str(path), "not a readable minigan checkpoint")
    assert not (tmp_path / "pwned").exists()
