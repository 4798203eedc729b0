"""``minigan train --data`` on hostile folders (the loader itself is fuzzed in tests/data/test_hostile.py).

A folder mixing good and broken files trains and warns once; a folder that is
missing, empty, a file, or holds no readable image is exit 2 with one line
naming it. A run whose data folder moved resumes with ``--data NEW``.
"""
import shutil

import numpy as np
import pytest
from PIL import Image

from minigan import checkpoint
from tests.faults.conftest import assert_one_error_line

ARGS = ["--image-size", "32", "--width", "4", "--batch", "2", "--checkpoint-every", "2", "--sample-every", "100",
        "--quiet"]




def _good(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = rng.integers(0, 256, (24 + i, 30, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"good{i}.{'png' if i % 2 else 'jpg'}")


def _broken(folder):
    folder.mkdir(parents=True, exist_ok=True)
    png = (folder / "good1.png").read_bytes() if (folder / "good1.png").exists() else b"\x89PNG\r\n\x1a\n" + b"x" * 90
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "noise.jpg").write_bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes())
    return 4


def test_mixed_folder_trains_and_warns_once(tmp_path, main):
    data = tmp_path / "icons"
    _good(data, 5)
    bad = _broken(data)
    out = tmp_path / "run"
    rc, stdout, err = main("train", "--data", data, "--out", out, "--iters", "2", *ARGS)
    assert rc == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"minigan: warning: skipped {bad} of {bad + 5} files in '{data}'"), err
    assert checkpoint.load(out)[1]["step"] == 2


@pytest.mark.parametrize("case,expected", [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("a-file", "is a file, not a folder"),
    ("only-broken", "no readable images"),
])
def test_unusable_data_folder_is_exit_2_with_one_line_naming_it(tmp_path, main, case, expected):
    data = tmp_path / case
    if case == "empty":
        data.mkdir()
    elif case == "a-file":
        data.write_text("x")
    elif case == "only-broken":
        _broken(data)
    rc, _, err = main("train", "--data", data, "--out", tmp_path / "run", "--iters", "2", *ARGS)
    assert rc == 2, err
    line = assert_one_error_line(err, expected, "--data")
    assert f"'{data}'" in line, line


def test_a_run_whose_data_folder_moved_resumes_with_the_new_path(tmp_path, main):
    data = tmp_path / "icons"
    _good(data, 4)
    out = tmp_path / "run"
    assert main("train", "--data", data, "--out", out, "--iters", "2", *ARGS)[0] == 0
    moved = tmp_path / "moved"
    shutil.move(str(data), str(moved))
    rc, _, err = main("train", "--out", out, "--resume", "--iters", "4", *ARGS)
    assert rc == 2, err
    assert_one_error_line(err, f"'{data}'", "does not exist")  # the folder it was trained on, by name
    rc, stdout, err = main("train", "--data", moved, "--out", out, "--resume", "--iters", "4", *ARGS)
    assert rc == 0, err
    assert "resuming sagan from step 2" in stdout
    assert checkpoint.load(out)[1]["step"] == 4
