import contextlib
import importlib

import numpy as np
import pytest
from PIL import Image

from minigan import backend
from minigan.train import TrainConfig, resolve


def tiny_config(tmp_path, **kw):
    """A run small enough for CI: 32x32 images, narrow nets, a handful of steps (resolved: a Trainer takes it)."""
    defaults = dict(model="sagan", out=str(tmp_path / "run"), image_size=32, width=8, iters=4, batch=3,
                    sample_every=2, checkpoint_every=2, n_samples=4, seed=0)
    defaults.update(kw)
    options = TrainConfig(**defaults)
    return resolve(options, backend.resolve(options.device))


def record_progress_bar(monkeypatch, events):
    """Runs get a progress bar that appends "bar cleared" and "bar drawn" to ``events`` around what is printed in
    its external_write_mode (tqdm's: the bar cleared from the terminal, then drawn again)."""
    run_module = importlib.import_module("minigan.train.run")  # the module: minigan.train.run is also the function

    class Bar(run_module._NoBar):
        @contextlib.contextmanager
        def external_write_mode(self):
            events.append("bar cleared")
            yield
            events.append("bar drawn")

    monkeypatch.setattr(run_module, "_progress_bar", lambda *a: Bar())


def assert_printed_with_the_bar_cleared(events, text):
    at = [i for i, e in enumerate(events) if text in e]
    assert len(at) == 1 and events[at[0] - 1] == "bar cleared" and events[at[0] + 1] == "bar drawn", events


@pytest.fixture
def icon_folder(tmp_path):
    """Twelve small icons in two labelled subfolders (for the semi-supervised D too)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "icons"
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            a = np.full((40, 40, 3), 255, np.uint8)
            c = rng.integers(0, 255, 3)
            y, x = rng.integers(4, 20, 2)
            a[y:y + 16, x:x + 16] = c if label == "cats" else 255 - c
            Image.fromarray(a).save(root / label / f"{i}.png")
    return root
