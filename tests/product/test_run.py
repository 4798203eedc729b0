"""The run folder's guarantees (lock, resume needs a checkpoint, no appending to an old log), option and
checkpoint-config validation, out-of-memory messages, streaming generate, and the Python API."""
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from minigan import checkpoint
from minigan.cli import main
from minigan.train import FolderLock, Generator, RunError, TrainConfig, run
from tests.product.conftest import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--image-size", "32", "--width", "4", "--batch", "2", "--sample-every", "100", "--quiet"]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _quiet(*args):
    pass


def _one_error_line(capsys, *needles):
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("minigan: error: "), err
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    return err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run (SAGAN, small-data recipe: it has an EMA)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--out", str(out), "--iters", "2", *TINY]) == 0
    return out


# -- the lock -----------------------------------------------------------------------------------------
def test_a_second_training_on_a_locked_folder_is_one_error_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / (checkpoint.TEMP_PREFIX + "left-by-the-holder.npz")
    stale.write_bytes(b"being written")
    with FolderLock(str(out)):
        assert main(["train", "--out", str(out), "--iters", "2", *TINY]) == 2
        _one_error_line(capsys, f"'{out}' is in use by another training (PID {os.getpid()})")
        assert stale.exists()  # the holder's temporary is not removed from under it
        assert not (out / "log.csv").exists() and not (out / checkpoint.FILENAME).exists()
    assert main(["train", "--out", str(out), "--iters", "2", *TINY]) == 0  # released: the folder is usable
    assert not stale.exists()  # removed under the lock


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, trained, capsys):
    out = tmp_path / "run"
    code = ("import sys, time; from minigan.train import FolderLock\n"
            "with FolderLock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        out.mkdir()
        assert child.stdout.readline().strip() == "locked"
        assert main(["train", "--out", str(out), "--iters", "2", *TINY]) == 2
        _one_error_line(capsys, f"PID {child.pid}")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert main(["train", "--out", str(out), "--iters", "2", *TINY]) == 0


def test_a_run_holds_the_lock_while_it_trains_and_readers_need_none(tmp_path, monkeypatch):
    from minigan.train import Trainer

    seen = []
    original = Trainer.step

    def step(self):
        with pytest.raises(RunError, match="in use by another training"):
            with FolderLock(self.config.out):
                pass
        seen.append(Generator.load(self.config.out).step)  # the run is read while it trains: no lock needed
        return original(self)

    monkeypatch.setattr(Trainer, "step", step)
    run(tiny_config(tmp_path, iters=3, checkpoint_every=2), progress=False, log=_quiet)
    assert seen == [0, 0, 2]  # its step-0, then its step-2 checkpoint


# -- resume and fresh runs ----------------------------------------------------------------------------
def test_resume_without_a_checkpoint_is_one_error_saying_how_to_start(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--resume", "--iters", "2", *TINY]) == 2
    _one_error_line(capsys, "no checkpoint to resume", "without --resume")
    assert not (out / "log.csv").exists()


def test_a_fresh_run_never_appends_to_an_old_log(tmp_path, trained, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.csv").write_bytes((trained / "log.csv").read_bytes())  # a log whose checkpoint was deleted
    before = (out / "log.csv").read_bytes()
    assert main(["train", "--out", str(out), "--iters", "2", *TINY]) == 2
    _one_error_line(capsys, "log.csv", "choose another --out")
    assert (out / "log.csv").read_bytes() == before
    assert main(["train", "--out", str(out), "--resume", "--iters", "2", *TINY]) == 2
    _one_error_line(capsys, "no checkpoint to resume")


# -- validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value,needle", [
    ("--lr-d", "nan", "--lr-d must be a finite number > 0"),
    ("--lr-g", "inf", "--lr-g must be a finite number > 0"),
    ("--lr-d", "-1e-4", "--lr-d must be"),
    ("--width", "0", "--width must be a whole number >= 1"),
    ("--width", "100000", "<= 512"),
    ("--z-dim", "0", "--z-dim must be"),
    ("--batch", "0", "--batch must be"),
    ("--iters", "-1", "--iters must be"),
    ("--d-steps", "0", "--d-steps must be"),
    ("--ema", "1", "--ema must be a finite number >= 0 and < 1"),
    ("--ema", "nan", "--ema must be"),
    ("--beta1", "1.5", "--beta1 must be"),
    ("--beta2", "nan", "--beta2 must be"),
    ("--began-gamma", "0", "--began-gamma must be"),
    ("--began-lambda-k", "-1", "--began-lambda-k must be"),
    ("--instance-noise", "nan", "--instance-noise must be"),
    ("--seed", "-1", "--seed must be"),
    ("--sample-every", "0", "--sample-every must be"),
    ("--eval-every", "-2", "--eval-every must be"),
    ("--diffaugment", "color,blur", "--diffaugment must be a comma-separated list"),
])
def test_every_numeric_option_is_checked_up_front_in_one_sentence(tmp_path, capsys, flag, value, needle):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--iters", "2", *TINY, f"{flag}={value}"]) == 2
    line = _one_error_line(capsys, needle)
    assert line.count(". ") == 0 and line.endswith(".")
    assert not out.exists()  # refused before anything was made


def _rewrite_config(src, dst, drop=(), **changes):
    """A copy of checkpoint ``src`` at ``dst`` with config ``changes``, without the entries under ``drop``."""
    arrays, meta = checkpoint.load(src)
    arrays = {k: v for k, v in arrays.items() if not k.startswith(tuple(f"{d}/" for d in drop))}
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    meta["config"] = dict(meta["config"], **changes)
    checkpoint.save(dst, arrays, meta)
    return dst


@pytest.mark.parametrize("key,value", [("width", 100000), ("lr_d", float("nan")), ("z_dim", -3),
                                       ("batch", 0), ("ema", 1.5), ("image_size", 48)])
def test_a_checkpoint_config_out_of_range_is_refused_before_any_model_is_built(tmp_path, trained, capsys,
                                                                              monkeypatch, key, value):
    import minigan.models

    def no_build(*a, **k):
        raise AssertionError("a model was built from a refused config")

    monkeypatch.setattr(minigan.models, "build", no_build)
    monkeypatch.setattr("minigan.train.generator.build", no_build)
    monkeypatch.setattr("minigan.train.trainer.build", no_build)
    path = _rewrite_config(trained / checkpoint.FILENAME, tmp_path / "run" / checkpoint.FILENAME, **{key: value})
    assert main(["generate", "--ckpt", str(path), "--out", str(tmp_path / "images"), "--n", "2"]) == 2
    _one_error_line(capsys, str(path), f"{key} = {value!r}")
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--iters", "4", *TINY]) == 2
    _one_error_line(capsys, str(path), f"{key} = {value!r}")


def test_an_old_checkpoint_config_with_recipe_seed_and_extra_still_loads(tmp_path, trained, capsys):
    out = tmp_path / "run"
    # what such a run saved: the recipe without an EMA had no average of G
    path = _rewrite_config(trained / checkpoint.FILENAME, out / checkpoint.FILENAME, drop=["G_ema"], recipe="seed",
                           extra={}, diffaugment=None, ema=None, z_dim=None)
    (out / "log.csv").write_bytes((trained / "log.csv").read_bytes())
    assert Generator.load(path).generate(2).shape == (2, 32, 32, 3)
    assert main(["train", "--out", str(out), "--resume", "--iters", "3", *TINY]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["recipe"] == "original" and saved["diffaugment"] == "" and saved["ema"] == 0.0
    assert "extra" not in saved


def test_recipe_seed_is_an_alias_of_original(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--iters", "1", *TINY, "--recipe", "seed"]) == 0
    assert json.loads((out / "config.json").read_text())["recipe"] == "original"


# -- out of memory ------------------------------------------------------------------------------------
def test_out_of_memory_names_what_asked_for_it(tmp_path, trained, capsys, monkeypatch):
    def exhausted(*a, **k):
        raise MemoryError

    monkeypatch.setattr("minigan.train.generator.build", exhausted)
    assert main(["generate", "--ckpt", str(trained), "--out", str(tmp_path / "images"), "--n", "2"]) == 2
    line = _one_error_line(capsys, "out of memory", str(trained / checkpoint.FILENAME))
    assert "--batch" not in line  # the checkpoint's config asked for the memory, not an option

    monkeypatch.setattr("minigan.train.trainer.build", exhausted)
    out = tmp_path / "fresh"
    assert main(["train", "--out", str(out), "--iters", "2", *TINY]) == 2
    _one_error_line(capsys, "out of memory building the sagan", "--batch", "--width")


# -- streaming generate -------------------------------------------------------------------------------
def test_stream_gives_the_images_of_one_big_batch(trained):
    G = Generator.load(trained)
    whole = G.images(G.sample_z(150, np.random.default_rng(4)))
    from minigan.imageio import to_uint8

    np.testing.assert_array_equal(G.generate(150, seed=4), to_uint8(whole))
    assert G.gan.D is None  # sampling built no discriminator


def _peak_bytes(trained, tmp_path, n):
    tracemalloc.start()
    try:
        assert main(["generate", "--ckpt", str(trained), "--out", str(tmp_path / f"n{n}"), "--n", str(n),
                     "--quiet"]) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_generate_writes_as_it_goes_with_memory_flat_in_n(tmp_path, trained):
    small = _peak_bytes(trained, tmp_path, 64)
    large = _peak_bytes(trained, tmp_path, 1500)  # all at once: 1500 x 3x32x32 float32 = 18 MB more
    assert len(os.listdir(tmp_path / "n1500")) == 1500
    assert large - small < 2 * 2 ** 20, f"peak {small / 2 ** 20:.1f} MB for 64 images, {large / 2 ** 20:.1f} MB for 1500"


def test_generate_shows_progress_for_large_n(tmp_path, trained, capsys):
    assert main(["generate", "--ckpt", str(trained), "--out", str(tmp_path / "imgs"), "--n", "300"]) == 0
    assert "generating" in capsys.readouterr().err


# -- the Python API -----------------------------------------------------------------------------------
def test_the_python_api_example_runs(tmp_path):
    out = tmp_path / "api"
    started = time.monotonic()
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python_api.py"), str(out), "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=ROOT, NUMBA_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(16, 32, 32, 3) uint8" in done.stdout and "(32, 32, 32, 3)" in done.stdout, done.stdout
    assert (out / checkpoint.FILENAME).exists(), time.monotonic() - started


def test_minigan_train_and_load_in_process(tmp_path):
    import minigan

    finished = minigan.train(None, model="dcgan", out=str(tmp_path / "r"), image_size=32, width=4, batch=2,
                             iters=2, sample_every=100, progress=False, log=_quiet)
    assert finished.step == 2 and finished.config.lr_d == 2e-4 and finished.config.device == "cpu"
    with pytest.raises(Exception):
        finished.config.iters = 5  # resolved once: nothing writes back to it
    G = minigan.load(finished.folder)
    images = G.generate(3, seed=1)
    assert images.dtype == np.uint8 and images.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(images, finished.generator().generate(3, seed=1))
    assert TrainConfig.from_dict(finished.config.to_dict()) == finished.config


@pytest.mark.parametrize("argv,needle", [
    (["generate", "--n", "0"], "--n must be a whole number from 1"),
    (["generate", "--n", "5000", "--grid"], "--n must be a whole number from 1 to 4,096"),
    (["interpolate", "--points", "1"], "--points must be"),
    (["eval", "--n", "1"], "--n must be"),
])
def test_sampling_counts_are_checked_before_loading(tmp_path, trained, capsys, argv, needle):
    assert main([argv[0], "--ckpt", str(trained), "--out", str(tmp_path / "o"), *argv[1:]]
                if argv[0] != "eval" else [argv[0], "--ckpt", str(trained), *argv[1:]]) == 2
    _one_error_line(capsys, needle)


def test_a_negative_sampling_seed_is_refused_by_the_parser(trained, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--ckpt", str(trained), "--out", "x", "--seed", "-1"])
    assert exc.value.code == 2 and "is not a seed" in capsys.readouterr().err
