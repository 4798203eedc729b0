"""The ``minigan`` command: train, generate, interpolate, eval.

Every error a user can make is one line, ``minigan: error: ...``, naming the
file or option and the fix; never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import numpy as np

from minigan.backend import DEVICES
from minigan.train.config import TrainConfig, fields_with_options
from minigan.train.generator import BATCH

MAX_IMAGES = 10 ** 9  # generate writes them one batch at a time: the bound is the disk's, not memory's
MAX_GRID = 4096  # a grid is one image in memory


class UsageError(ValueError):
    """A bad combination of command-line values."""


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field (its metadata: flag, help, type, choices); defaults are the fields'."""
    for f, option in fields_with_options():
        if not option.cli:
            continue
        flags = option.flags or ("--" + f.name.replace("_", "-"),)
        if option.kind is bool:
            action = "store_false" if f.default else "store_true"
            parser.add_argument(*flags, dest=f.name, action=action, help=option.help)
        elif len(flags) > 1:  # one flag per element of a tuple field (--beta1, --beta2)
            for i, flag in enumerate(flags):
                parser.add_argument(flag, dest=f"{f.name}.{i}", type=option.kind, default=None, metavar="B",
                                    help=option.help)
        elif option.parse is not None and option.choices:  # choices checked by the converter (aliases)
            parser.add_argument(*flags, dest=f.name, type=option.parse, default=f.default, help=option.help,
                                metavar="{" + ",".join(option.choices) + "}")
        else:
            parser.add_argument(*flags, dest=f.name, type=option.parse or option.kind, default=f.default,
                                choices=option.choices, help=option.help)


def _config_from_args(args) -> TrainConfig:
    values = {}
    for f, option in fields_with_options():
        if not option.cli:
            continue
        if len(option.flags) > 1:
            given = tuple(getattr(args, f"{f.name}.{i}") for i in range(len(option.flags)))
            values[f.name] = None if all(v is None for v in given) else given  # None: the model's
        else:
            values[f.name] = getattr(args, f.name)
    return TrainConfig(**values)


def _seed(text: str) -> int:
    """An RNG seed on the command line: the same range as TrainConfig.seed."""
    option = TrainConfig.__dataclass_fields__["seed"].metadata["option"]
    try:
        value = int(text)
    except ValueError:
        value = None
    if not option.accepts(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed: use {option.rule()}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minigan", description="Small GANs for small image sets.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a GAN on a folder of images (or the built-in faces)")
    _add_config_options(t)
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    g = sub.add_parser("generate", help="write new images from a trained run")
    g.add_argument("--ckpt", required=True, help="run folder or checkpoint file")
    g.add_argument("--n", type=int, default=64)
    g.add_argument("--out", required=True, help="folder for the images (or the grid's .png path with --grid)")
    g.add_argument("--grid", action="store_true", help="one grid image instead of one file per image")
    g.add_argument("--seed", type=_seed, default=0, help="RNG seed of the latent vectors")
    g.add_argument("--device", default=None, choices=DEVICES)
    g.add_argument("--no-ema", action="store_true", help="sample from G itself, not its moving average")
    g.add_argument("--quiet", action="store_true", help="no progress bar")

    i = sub.add_parser("interpolate", help="a latent walk (spherical interpolation) as a GIF and a strip")
    i.add_argument("--ckpt", required=True)
    i.add_argument("--out", default="walk.gif")
    i.add_argument("--points", type=int, default=4, help="key points in latent space")
    i.add_argument("--frames", type=int, default=12, help="frames between two key points")
    i.add_argument("--seed", type=_seed, default=0, help="RNG seed of the key points")
    i.add_argument("--device", default=None, choices=DEVICES)

    e = sub.add_parser("eval", help="quality metrics of a run against its (or another) data set")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--data", default=None, help="reference images (default: the run's training data)")
    e.add_argument("--n", type=int, default=1000, help="generated images to evaluate")
    e.add_argument("--json", action="store_true")
    e.add_argument("--seed", type=_seed, default=0, help="RNG seed of the latent vectors")
    e.add_argument("--device", default=None, choices=DEVICES)
    c = sub.add_parser("check", help="compile every kernel, test each against its CPU twin, time a step")
    c.add_argument("--device", default=None, choices=DEVICES)
    return p


def _train(args) -> int:
    from minigan import checkpoint
    from minigan.train import run

    finished = run(_config_from_args(args), resume=args.resume, progress=not args.quiet)
    out = finished.folder
    print(f"done: {finished.step} steps; samples in '{os.path.join(out, 'samples')}', "
          f"checkpoint '{checkpoint.in_run(out)}'")
    return 0


def _count(name: str, value: int, least: int, most: int = MAX_IMAGES) -> int:
    if not least <= value <= most:
        raise UsageError(f"{name} must be a whole number from {least} to {most:,}, not {value}.")
    return value


def _generate(args) -> int:
    from minigan.imageio import make_grid, save_png
    from minigan.train import Generator

    n = _count("--n", args.n, 1, MAX_GRID if args.grid else MAX_IMAGES)
    G = Generator.load(args.ckpt, device=args.device, ema=not args.no_ema)
    batches = G.stream(n, seed=args.seed)
    if not args.quiet and n > 4 * BATCH:
        from tqdm import tqdm

        batches = tqdm(batches, total=-(-n // BATCH), unit="batch", desc="generating", file=sys.stderr)
    if args.grid:  # one image: it holds every sample
        path = args.out if args.out.lower().endswith(".png") else os.path.join(args.out, f"grid_seed{args.seed}.png")
        save_png(make_grid(np.concatenate(list(batches))), path)
        print(f"wrote a grid of {n} images to '{path}'")
        return 0
    k = 0
    for images in batches:  # each batch written as soon as it is made: memory does not grow with n
        for image in images:
            save_png(image, os.path.join(args.out, f"seed{args.seed}_{k:04d}.png"))
            k += 1
    print(f"wrote {n} images to '{args.out}'")
    return 0


def _interpolate(args) -> int:
    from minigan.imageio import make_grid, save_gif, save_png
    from minigan.train import Generator

    _count("--points", args.points, 2, 1000)
    _count("--frames", args.frames, 1, 1000)
    frames = Generator.load(args.ckpt, device=args.device).interpolate(args.points, args.frames, seed=args.seed)
    out = args.out if args.out.lower().endswith(".gif") else args.out + ".gif"
    save_gif(list(frames), out)
    strip = os.path.splitext(out)[0] + "_strip.png"
    step = max(1, len(frames) // 16)
    save_png(make_grid(frames[::step][:16], nrow=16), strip)
    print(f"wrote '{out}' ({len(frames)} frames) and '{strip}'")
    return 0


def _eval(args) -> int:
    from minigan.data import load_folder
    from minigan.metrics import evaluate, format_table
    from minigan.train import Generator
    from minigan.train.config import load_data

    n = _count("--n", args.n, 2, 10 ** 6)
    G = Generator.load(args.ckpt, device=args.device)
    c = G.config
    reference = load_data(c).images if args.data is None else load_folder(
        args.data, c.image_size, background=c.background, fit=c.fit).images
    fake = G.images(G.sample_z(n, np.random.default_rng(args.seed)))  # every image at once: the metrics need all
    results = {k: float(v) for k, v in evaluate(reference, fake, seed=args.seed).items()}
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    else:
        print(f"{c.model} at step {G.step}: {n} generated vs {len(reference)} reference images")
        print(format_table(results))
    return 0


def _known_errors():
    from minigan.backend import DeviceError
    from minigan.checkpoint import CheckpointError
    from minigan.data import DataError
    from minigan.nn import StateDictError
    from minigan.train import ConfigError, OutOfMemory, RunError, TrainingDiverged

    return (DeviceError, CheckpointError, DataError, StateDictError, ConfigError, RunError, TrainingDiverged,
            UsageError, OutOfMemory)


def _one_line_warnings():
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"minigan: warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def _check(args) -> int:
    from minigan.check import main as check

    return check(args.device)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    _one_line_warnings()
    commands = {"train": _train, "generate": _generate, "interpolate": _interpolate, "eval": _eval, "check": _check}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        print("minigan: interrupted", file=sys.stderr)
        return 130
    except _known_errors() as exc:
        print(f"minigan: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:  # not inside a step that says what asked for it (those raise OutOfMemory)
        print(f"minigan: error: out of memory during `minigan {args.command}`: free some memory.", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
