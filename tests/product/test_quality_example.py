"""The main example's small-data defaults: on unless the original recipe is asked for."""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _example():
    spec = importlib.util.spec_from_file_location("train_melicon", os.path.join(ROOT, "examples", "train_melicon.py"))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.join(ROOT, "examples"))
    return module


def test_original_recipe_is_recognised_in_every_spelling():
    example = _example()
    for argv in (["--recipe", "original"], ["--recipe=seed"], ["--data", "x", "--recipe", "seed"]):
        assert example.original_recipe(argv), argv
    for argv in ([], ["--recipe", "small-data"], ["--recipe"], ["--data", "original"]):
        assert not example.original_recipe(argv), argv
    assert "--ada-target" in example.CPU_SMALL_DATA and "--ada-target" not in example.CPU


def test_the_small_data_defaults_are_valid_options(tmp_path):
    from minigan.cli import _config_from_args, _parser

    example = _example()
    args = _parser().parse_args(["train", "--out", str(tmp_path / "r"), *example.CPU, *example.CPU_SMALL_DATA])
    config = _config_from_args(args).validate()
    assert config.ada_target == 0.6 and config.diffaugment == "translation,cutout"
