"""The `minigan` command end to end on a tiny CPU run, and the errors a user can make."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from minigan import checkpoint
from minigan.cli import main
from minigan.train.generator import slerp

TINY = ["--image-size", "32", "--width", "4", "--batch", "2", "--iters", "3", "--sample-every", "3",
        "--checkpoint-every", "3", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--model", "sagan", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_the_run_folder(run_dir):
    for name in [checkpoint.FILENAME, "config.json", "log.csv", "losses.png", "samples/step_000003.png"]:
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "config.json").read_text())["model"] == "sagan"


def test_generate_files_and_grid(run_dir, tmp_path):
    assert main(["generate", "--ckpt", str(run_dir), "--n", "5", "--out", str(tmp_path / "imgs"), "--seed", "3"]) == 0
    files = sorted(os.listdir(tmp_path / "imgs"))
    assert files == [f"seed3_{k:04d}.png" for k in range(5)]
    assert Image.open(tmp_path / "imgs" / files[0]).size == (32, 32)
    assert main(["generate", "--ckpt", str(run_dir), "--n", "4", "--grid", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (2 + 2 * 34, 2 + 2 * 34)
    # the same seed gives the same images
    assert main(["generate", "--ckpt", str(run_dir), "--n", "5", "--out", str(tmp_path / "again"), "--seed", "3"]) == 0
    a = np.asarray(Image.open(tmp_path / "imgs" / files[2]))
    b = np.asarray(Image.open(tmp_path / "again" / files[2]))
    np.testing.assert_array_equal(a, b)


def test_interpolate_writes_gif_and_strip(run_dir, tmp_path):
    gif = tmp_path / "walk.gif"
    assert main(["interpolate", "--ckpt", str(run_dir), "--out", str(gif), "--points", "3", "--frames", "4"]) == 0
    im = Image.open(gif)
    assert im.n_frames == 12
    assert (tmp_path / "walk_strip.png").exists()


def test_slerp_stays_on_the_sphere_between_endpoints():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(20), rng.standard_normal(20)
    np.testing.assert_allclose(slerp(a, b, 0.0), a)
    np.testing.assert_allclose(slerp(a, b, 1.0), b)
    mid = slerp(a / np.linalg.norm(a), b / np.linalg.norm(b), 0.5)
    np.testing.assert_allclose(np.linalg.norm(mid), 1.0)


def test_eval_prints_json(run_dir, capsys):
    assert main(["eval", "--ckpt", str(run_dir), "--n", "64", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {"swd_mean", "precision", "recall", "ndb", "nn_dist_median"} <= set(results)


@pytest.mark.parametrize("argv,needle", [
    (["generate", "--ckpt", "/nonexistent/run", "--out", "x"], "no checkpoint"),
    (["train", "--data", "/nonexistent/icons", "--out", "{tmp}/r", *TINY], "/nonexistent/icons"),
    (["train", "--device", "cuda", "--out", "{tmp}/r2", *TINY], "cuda"),
])
def test_user_errors_are_one_line(tmp_path, capsys, argv, needle):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    from minigan import backend
    if "cuda" in argv and backend.cuda_available():
        pytest.skip("a GPU is present")
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("minigan: error: ") and needle in err[0], err


def test_unknown_model_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "stylegan"])
    assert exc.value.code == 2
    assert "invalid choice: 'stylegan'" in capsys.readouterr().err


def test_python_dash_m_minigan_is_the_command():
    out = subprocess.run([sys.executable, "-m", "minigan", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout and "generate" in out.stdout
