"""The main example's small-data defaults: on unless the original recipe is asked for."""
import importlib.util
import os
import sys

from minigan.train.config import resolve

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
    for argv in ([], ["--recipe", "small-data"], ["--recipe"], ["--data", "original"],
                 ["--recipe", "original", "--recipe", "small-data"]):  # the last one given wins, as in argparse
        assert not example.original_recipe(argv), argv
    assert "--ada-target" in example.CPU_SMALL_DATA and "--ada-target" not in example.CPU


def _config(tmp_path, argv):
    """The config the example's CPU run resolves for these user flags (its defaults, then the flags)."""
    from minigan.cli import _config_from_args, _parser

    args = _parser().parse_args(["train", "--out", str(tmp_path / "r"), *_example().cpu_defaults(argv), *argv])
    return _config_from_args(args).validate()


def test_the_small_data_defaults_are_valid_options(tmp_path):
    config = _config(tmp_path, [])
    assert config.ada_target == 0.6 and config.diffaugment == "translation,cutout"
    assert (config.iters, config.lr_decay) == (4000, 2000)  # the rates fall over the second half
    assert config.minutes == 3.5  # ... of at most 4,000 steps: what fits in 3.5 minutes
    # G's rate raised to D's; D's rate and the betas the original's (a faster D lost at 4,000 steps: the seventh round)
    resolved = resolve(config, "cpu")
    assert (resolved.lr_g, resolved.lr_d, resolved.betas) == (4e-4, 4e-4, (0.0, 0.9))


def test_the_time_budget_yields_to_the_users_step_count_and_to_their_own_budget(tmp_path):
    assert _config(tmp_path, ["--iters", "4000"]).minutes == 0  # a count the user asked for is a count
    assert (lambda c: (c.iters, c.minutes))(_config(tmp_path, ["--iters=900", "--minutes", "2"])) == (900, 2)
    assert (lambda c: (c.iters, c.minutes))(_config(tmp_path, ["--minutes=10"])) == (4000, 10)
    assert _config(tmp_path, ["--recipe", "original"]).minutes == 0  # the original recipe keeps its 3,000 steps


def test_the_decay_follows_the_users_iterations_and_yields_to_their_own(tmp_path):
    assert (lambda c: (c.iters, c.lr_decay))(_config(tmp_path, ["--iters", "1000"])) == (1000, 500)
    assert (lambda c: (c.iters, c.lr_decay))(_config(tmp_path, ["--iters=600", "--data", "x"])) == (600, 300)
    assert (lambda c: (c.iters, c.lr_decay))(_config(tmp_path, ["--lr-decay", "0"])) == (4000, 0)
    assert (lambda c: (c.iters, c.lr_decay))(_config(tmp_path, ["--iters", "1", "--lr-decay=7"])) == (1, 7)


def test_the_original_recipe_keeps_its_steps_and_constant_rates(tmp_path):
    config = _config(tmp_path, ["--recipe", "original"])
    assert (config.iters, config.lr_decay, config.ada_target) == (3000, 0, 0.0)
