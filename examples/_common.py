"""Shared by the example scripts: run ``minigan train`` with a model's defaults,
letting any command-line option override them."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minigan.cli import main  # noqa: E402


def train(defaults: list[str]) -> int:
    """``minigan train`` with ``defaults`` first, so the user's own flags win."""
    return main(["train", *defaults, *sys.argv[1:]])
