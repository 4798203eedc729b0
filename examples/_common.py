"""Shared by the example scripts: run ``minigan train`` with a model's defaults,
letting any command-line option override them (the user's flags come last, so they win)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minigan import backend  # noqa: E402
from minigan.cli import main  # noqa: E402


def on_gpu() -> bool:
    """Whether this run will use the GPU (--device or MINIGAN_DEVICE, else: is one usable)."""
    argv = sys.argv[1:]
    if "--device" in argv:
        return argv[argv.index("--device") + 1] == "cuda"
    return backend.default_device() == "cuda"


def train(defaults: list[str], cpu: list[str] = (), gpu: list[str] = ()) -> int:
    """``minigan train`` with ``defaults`` plus the device's own defaults, then the user's flags."""
    device_defaults = list(gpu if on_gpu() else cpu)
    if device_defaults:
        where = "GPU" if on_gpu() else "CPU"
        print(f"{where} defaults: {' '.join(device_defaults)} (any flag you pass overrides them)")
    return main(["train", *defaults, *device_defaults, *sys.argv[1:]])
