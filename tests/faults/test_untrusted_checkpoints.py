"""Untrusted checkpoints at the command line: ``minigan generate --ckpt X`` and ``minigan train --resume``.

Every unusable file is exit code 2 and exactly one ``minigan: error:`` line that
names it, never a traceback, and a pickle is never executed. (The format layer
itself is tested in tests/product/test_checkpoint.py; these go through the CLI
and the Trainer, and add the zip and array headers that used to escape as
NotImplementedError, RuntimeError or MemoryError.) The zip cases are legacy
``checkpoint.npz`` files, which minigan still loads.
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
from tests.faults.ckpt_files import write_legacy
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
    a, m = checkpoint.load(checkpoint.in_run(src_run))
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


def _legacy_blob(trained):
    """The SAGAN run's checkpoint as minigan wrote it before safetensors (a zip)."""
    path = os.path.join(trained["sagan"], "legacy.npz")
    if not os.path.exists(path):
        arrays, meta = checkpoint.load(trained["sagan"])
        write_legacy(path, arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    return open(path, "rb").read()


def make_truncated(cut):
    def make(trained, path):
        blob = open(checkpoint.in_run(trained["sagan"]), "rb").read()
        n = int(len(blob) * cut) if isinstance(cut, float) else cut
        path.write_bytes(blob[:n])
    return make


def make_garbled(offset_from_central_directory, value):
    """One byte of the zip central directory changed: version needed (+6), flags (+8) or compression (+10)."""
    def make(trained, path):
        blob = bytearray(_legacy_blob(trained))
        at = blob.index(b"PK\x01\x02") + offset_from_central_directory
        blob[at] = value
        path.write_bytes(bytes(blob))
    return make


def make_flipped(trained, path):
    blob = bytearray(open(checkpoint.in_run(trained["sagan"]), "rb").read())
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
    dcgan_arrays, _ = checkpoint.load(checkpoint.in_run(trained["dcgan"]))
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
    path = tmp_path / checkpoint.FILENAME
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
    make(trained, out / checkpoint.FILENAME)
    rc, _, err = main("train", "--out", out, "--resume", "--image-size", "32", "--width", "4", "--batch", "2",
                      "--iters", "4", "--quiet")
    assert rc == 2, err
    assert_one_error_line(err, str(out / checkpoint.FILENAME), expected)
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
    _rewrite(trained["sagan"], out / checkpoint.FILENAME, meta=BAD_META[name])
    rc, _, err = main("train", "--out", out, "--resume", "--image-size", "32", "--width", "4", "--batch", "2",
                      "--iters", "4", "--quiet")
    assert rc == 2, err
    assert_one_error_line(err, str(out / checkpoint.FILENAME))


@pytest.mark.parametrize("name", ["no-config", "no-step", "rng-garbled", "width-not-a-number"])
def test_generate_refuses_malformed_metadata_with_one_line(tmp_path, trained, main, name):
    path = _rewrite(trained["sagan"], tmp_path / checkpoint.FILENAME, meta=BAD_META[name])
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
    assert_one_error_line(err, str(out / checkpoint.FILENAME), "same data folder")


def test_generate_from_a_good_checkpoint_writes_images(tmp_path, trained, main):
    try:
        rc, out, err = main("generate", "--ckpt", trained["sagan"], "--out", tmp_path / "images", "--n", "3")
    except Exception as exc:  # the bug: a traceback
        pytest.fail(f"{type(exc).__name__}: {exc}")
    assert rc == 0, err
    assert len(os.listdir(tmp_path / "images")) == 3


def test_a_pickle_never_runs_in_a_real_process(tmp_path, trained):
    path = tmp_path / checkpoint.FILENAME
    make_pickle(trained, path)
    child = Child(["generate", "--ckpt", str(path), "--out", str(tmp_path / "images")], driver=False)
    assert child.finish() == 2, child.describe()
    assert_one_error_line(child.stderr, str(path), "not a readable minigan checkpoint")
    assert not (tmp_path / "pwned").exists()


# -- issue 13: loading is bounded by what the model needs ------------------------------------------------
MEMORY_LIMIT = 3 << 29  # 1.5 GiB of address space for the child: a tiny run needs < 1 GiB


def _limited_cli(*argv, timeout=120):
    """``minigan ARGV`` in a child that cannot map more than MEMORY_LIMIT -> (rc, stderr, seconds)."""
    import resource
    import subprocess
    import sys
    import time

    from tests.faults.conftest import ROOT

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "minigan", *map(str, argv)], cwd=ROOT, preexec_fn=limit,
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ, NUMBA_NUM_THREADS="1"))
    return done.returncode, done.stderr, time.monotonic() - started


def _legacy_with(trained, path, extra=(), replace=None):
    """The SAGAN run as a legacy zip, plus ``extra`` members, with members named in ``replace`` swapped."""
    from tests.faults.ckpt_files import legacy_members, write_zip

    arrays, meta = checkpoint.load(trained["sagan"])
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    members = [(name, (replace or {}).get(name, payload)) for name, payload in legacy_members(arrays, meta)]
    write_zip(path, members + list(extra))


def test_generate_refuses_a_12_gib_zip_member_of_zeros_at_once(tmp_path, trained):
    """Was 50 s and 12.7 GB of memory: every member's .npy header is read first, none is inflated."""
    from tests.faults.ckpt_files import npy_header, zero_bomb

    path = tmp_path / checkpoint.LEGACY_FILENAME
    _legacy_with(trained, path, extra=[("extra.npy", zero_bomb(npy_header((3 << 30,)), 12 << 10))])
    assert os.path.getsize(path) < 20 << 20
    rc, err, seconds = _limited_cli("generate", "--ckpt", path, "--out", tmp_path / "images", "--n", "2")
    assert rc == 2, err
    assert_one_error_line(err, str(path), "not a readable minigan checkpoint", "more than the")
    assert seconds < 60 and not (tmp_path / "images").exists()


def test_generate_skips_an_unknown_zip_member_unread(tmp_path, trained, main):
    """An entry the sampler does not need is never inflated: a damaged one (bad CRC) costs nothing."""
    from tests.faults.ckpt_files import npy_header, zero_bomb

    path = tmp_path / checkpoint.LEGACY_FILENAME
    _legacy_with(trained, path, extra=[("extra.npy", zero_bomb(npy_header((16,)), 1))])  # bad CRC, too long
    rc, _, err = main("generate", "--ckpt", path, "--out", tmp_path / "images", "--n", "2")
    assert rc == 0, err
    assert len(os.listdir(tmp_path / "images")) == 2


def test_resume_refuses_a_12_gib_zip_member_of_zeros_by_its_name(tmp_path, trained, main):
    from tests.faults.ckpt_files import npy_header, zero_bomb

    out = tmp_path / "run"
    out.mkdir()
    _legacy_with(trained, out / checkpoint.LEGACY_FILENAME,
                 extra=[("extra.npy", zero_bomb(npy_header((3 << 30,)), 12 << 10))])
    rc, _, err = main("train", "--out", out, "--resume", "--image-size", "32", "--width", "4", "--batch", "2",
                      "--iters", "4", "--quiet")
    assert rc == 2, err
    assert_one_error_line(err, str(out / checkpoint.LEGACY_FILENAME), "not a readable minigan checkpoint")


def test_a_weight_declaring_8_gib_is_refused_before_any_data(tmp_path, trained):
    """Was 38 s and 8.5 GB before the refusal: the declared shape is checked against the model first."""
    from tests.faults.ckpt_files import npy_header, zero_bomb

    arrays, _ = checkpoint.load(trained["sagan"])
    name = next(k for k in sorted(arrays) if k.startswith("G/") and arrays[k].ndim == 4)
    path = tmp_path / checkpoint.LEGACY_FILENAME
    _legacy_with(trained, path, replace={f"{name}.npy": zero_bomb(npy_header((2 << 30,)), 8 << 10)})
    rc, err, seconds = _limited_cli("generate", "--ckpt", path, "--out", tmp_path / "images", "--n", "2")
    assert rc == 2, err
    assert_one_error_line(err, str(path), "not a readable minigan checkpoint", f"{name} alone declares {8 << 30}")
    assert seconds < 60 and not (tmp_path / "images").exists()


def test_a_safetensors_entry_declaring_8_gib_is_refused_before_any_data(tmp_path, trained):
    from tests.faults.ckpt_files import read_header, write_header

    header, data = read_header(checkpoint.in_run(trained["sagan"]))
    name = next(k for k in sorted(header) if k.startswith("G/") and len(header[k]["shape"]) == 4)
    begin = header[name]["data_offsets"][0]
    header[name].update(shape=[2 << 30], data_offsets=[begin, begin + (8 << 30)])
    path = tmp_path / checkpoint.FILENAME
    write_header(path, header, data)
    rc, err, seconds = _limited_cli("generate", "--ckpt", path, "--out", tmp_path / "images", "--n", "2")
    assert rc == 2, err
    assert_one_error_line(err, str(path), "not a readable minigan checkpoint")
    assert seconds < 60


def _poisoner(where, value):
    """arrays -> arrays with the first value of the first entry under ``where`` set to ``value``."""
    def poison(a):
        name = next(k for k in sorted(a) if k == where or k.startswith(where + "/"))
        a[name] = a[name].copy()
        a[name].flat[0] = value
        poison.name = name
        return a

    return poison


@pytest.mark.parametrize("where", ["G", "G_ema"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_generate_refuses_non_finite_weights_naming_the_tensor(tmp_path, trained, main, where, value):
    """Was: black images and exit code 0."""
    poison = _poisoner(where, value)
    path = _rewrite(trained["sagan"], tmp_path / checkpoint.FILENAME, arrays=poison)
    rc, _, err = main("generate", "--ckpt", path, "--out", tmp_path / "images", "--n", "2")
    assert rc == 2, err
    assert_one_error_line(err, str(path), "non-finite", f"'{poison.name}'")
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize("where", ["fixed_z", "D", "opt_g"])
def test_resume_refuses_non_finite_state_naming_the_tensor(tmp_path, trained, main, where):
    """What sampling never reads (D, the optimizers, the fixed latents) is still refused where it is used."""
    out = tmp_path / "run"
    shutil.copytree(trained["sagan"], out)
    poison = _poisoner(where, np.nan)
    path = _rewrite(out, out / checkpoint.FILENAME, arrays=poison)
    rc, _, err = main("train", "--out", out, "--resume", "--image-size", "32", "--width", "4", "--batch", "2",
                      "--iters", "4", "--quiet")
    assert rc == 2, err
    assert_one_error_line(err, str(path), "non-finite", f"'{poison.name}'")


def test_a_legacy_run_folder_still_generates_and_resumes_into_safetensors(tmp_path, trained, main):
    out = tmp_path / "run"
    shutil.copytree(trained["sagan"], out)
    arrays, meta = checkpoint.load(out)
    os.unlink(out / checkpoint.FILENAME)
    write_legacy(out / checkpoint.LEGACY_FILENAME, arrays, {k: v for k, v in meta.items()
                                                             if k not in ("format", "version")})
    rc, _, err = main("generate", "--ckpt", out, "--out", tmp_path / "images", "--n", "2")
    assert rc == 0, err
    rc, _, err = main("train", "--out", out, "--iters", "4", "--quiet")  # a legacy run is still a run
    assert rc == 2 and "--resume" in err, err
    rc, _, err = main("train", "--out", out, "--resume", "--iters", "4", "--checkpoint-every", "1", "--quiet")
    assert rc == 0, err
    assert checkpoint.locate(out) == str(out / checkpoint.FILENAME)
    assert checkpoint.load(out)[1]["step"] == 4
