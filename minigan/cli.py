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
from minigan.train.config import MODEL_NAMES, RECIPES, TrainConfig


class UsageError(ValueError):
    """A bad combination of command-line values."""


def _color(text: str):
    from PIL import ImageColor

    try:
        return tuple(ImageColor.getrgb(text)[:3])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a colour: use a name (white), #rrggbb or rgb(r,g,b)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minigan", description="Small GANs for small image sets.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a GAN on a folder of images (or the built-in faces)")
    t.add_argument("--model", default="sagan", choices=MODEL_NAMES)
    t.add_argument("--data", default=None, help="folder of images (default: built-in procedural faces)")
    t.add_argument("--out", default=None, help="run folder (default: runs/MODEL)")
    t.add_argument("--iters", type=int, default=2000)
    t.add_argument("--batch", type=int, default=None, help="default: the model's seed batch size")
    t.add_argument("--device", default=None, choices=DEVICES)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--image-size", type=int, default=64, choices=[32, 64, 128])
    t.add_argument("--z-dim", type=int, default=None)
    t.add_argument("--width", type=int, default=None, help="base channel width")
    t.add_argument("--lr-d", type=float, default=None)
    t.add_argument("--lr-g", type=float, default=None)
    t.add_argument("--beta1", type=float, default=None)
    t.add_argument("--beta2", type=float, default=None)
    t.add_argument("--recipe", default="small-data", choices=RECIPES,
                   help="small-data: the seed recipe + DiffAugment + EMA (default); seed: the seed recipe alone")
    t.add_argument("--diffaugment", default=None, help="policy, e.g. color,translation,cutout ('' disables)")
    t.add_argument("--ema", type=float, default=None, help="EMA decay of G's weights (0 disables)")
    t.add_argument("--d-steps", type=int, default=1, help="D updates per G update")
    t.add_argument("--label-smoothing", action="store_true", help="one-sided: real labels in [0.9, 1]")
    t.add_argument("--instance-noise", type=float, default=0.0, help="std of noise on D's inputs, annealed to 0")
    t.add_argument("--noise-anneal", type=int, default=0, help="steps to anneal the noise over (0: the whole run)")
    t.add_argument("--feature-matching", action="store_true")
    t.add_argument("--minibatch-discrimination", action="store_true")
    t.add_argument("--semi-supervised", action="store_true", help="K labelled subfolders -> K+1-class D")
    t.add_argument("--began-gamma", type=float, default=0.5)
    t.add_argument("--began-lambda-k", type=float, default=0.001)
    t.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    t.add_argument("--fit", default="crop", choices=["crop", "pad"], help="make images square by cropping or padding")
    t.add_argument("--background", type=_color, default=(255, 255, 255), help="colour behind transparent pixels")
    t.add_argument("--sample-every", type=int, default=200)
    t.add_argument("--checkpoint-every", type=int, default=200)
    t.add_argument("--eval-every", type=int, default=0, help="compute quality metrics every N steps (0: off)")
    t.add_argument("--eval-n", type=int, default=500)
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    g = sub.add_parser("generate", help="write new images from a trained run")
    g.add_argument("--ckpt", required=True, help="run folder or checkpoint file")
    g.add_argument("--n", type=int, default=64)
    g.add_argument("--out", required=True, help="folder for the images (or the grid's .png path with --grid)")
    g.add_argument("--grid", action="store_true", help="one grid image instead of one file per image")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=None, choices=DEVICES)
    g.add_argument("--no-ema", action="store_true", help="sample from G itself, not its moving average")

    i = sub.add_parser("interpolate", help="a latent walk (spherical interpolation) as a GIF and a strip")
    i.add_argument("--ckpt", required=True)
    i.add_argument("--out", default="walk.gif")
    i.add_argument("--points", type=int, default=4, help="key points in latent space")
    i.add_argument("--frames", type=int, default=12, help="frames between two key points")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--device", default=None, choices=DEVICES)

    e = sub.add_parser("eval", help="quality metrics of a run against its (or another) data set")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--data", default=None, help="reference images (default: the run's training data)")
    e.add_argument("--n", type=int, default=1000, help="generated images to evaluate")
    e.add_argument("--json", action="store_true")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default=None, choices=DEVICES)
    c = sub.add_parser("check", help="compile every kernel, test each against its CPU twin, time a step")
    c.add_argument("--device", default=None, choices=DEVICES)
    return p


def _train(args) -> int:
    from minigan import checkpoint
    from minigan.train import run

    betas = None if args.beta1 is None and args.beta2 is None else (args.beta1, args.beta2)  # None: the model's
    config = TrainConfig(
        model=args.model, data=args.data, out=args.out or os.path.join("runs", args.model),
        image_size=args.image_size, z_dim=args.z_dim, width=args.width, iters=args.iters, batch=args.batch,
        lr_d=args.lr_d, lr_g=args.lr_g, betas=betas, device=args.device, seed=args.seed, recipe=args.recipe,
        diffaugment=args.diffaugment, ema=args.ema, d_steps=args.d_steps, label_smoothing=args.label_smoothing,
        instance_noise=args.instance_noise, noise_anneal=args.noise_anneal,
        feature_matching=args.feature_matching, minibatch_discrimination=args.minibatch_discrimination,
        semi_supervised=args.semi_supervised, began_gamma=args.began_gamma, began_lambda_k=args.began_lambda_k,
        flip=not args.no_flip, fit=args.fit, background=args.background, sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every, eval_every=args.eval_every, eval_n=args.eval_n)
    trainer = run(config, resume=args.resume, progress=not args.quiet)
    out = trainer.config.out
    print(f"done: {trainer.step_count} steps; samples in '{os.path.join(out, 'samples')}', "
          f"checkpoint '{checkpoint.in_run(out)}'")
    return 0


def _sampler(args):
    from minigan.train import Trainer

    trainer = Trainer.from_checkpoint(args.ckpt, device=args.device, with_data=False)
    if getattr(args, "no_ema", False):
        trainer.G_ema = None
    return trainer


def _generate(args) -> int:
    from minigan.imageio import make_grid, save_png, to_uint8

    if args.n < 1:
        raise UsageError("--n must be at least 1.")
    trainer = _sampler(args)
    z = trainer.gan.sample_z(args.n, np.random.default_rng(args.seed))
    images = to_uint8(trainer.generate(z))
    if args.grid:
        path = args.out if args.out.lower().endswith(".png") else os.path.join(args.out, f"grid_seed{args.seed}.png")
        save_png(make_grid(images), path)
        print(f"wrote a grid of {args.n} images to '{path}'")
    else:
        for k, image in enumerate(images):
            save_png(image, os.path.join(args.out, f"seed{args.seed}_{k:04d}.png"))
        print(f"wrote {args.n} images to '{args.out}'")
    return 0


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between latent vectors (Shoemake; White 2016 for GANs)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = np.clip(np.dot(a / na, b / nb), -1.0, 1.0)
    omega = np.arccos(cos)
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def _interpolate(args) -> int:
    from minigan.imageio import make_grid, save_gif, save_png, to_uint8

    if args.points < 2 or args.frames < 1:
        raise UsageError("--points must be at least 2 and --frames at least 1.")
    trainer = _sampler(args)
    keys = trainer.gan.sample_z(args.points, np.random.default_rng(args.seed)).astype(np.float64)
    keys = np.concatenate([keys, keys[:1]])  # a closed loop
    z = [slerp(keys[i], keys[i + 1], f / args.frames) for i in range(args.points) for f in range(args.frames)]
    frames = to_uint8(trainer.generate(np.asarray(z, dtype=np.float32)))
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
    from minigan.train import Trainer

    trainer = Trainer.from_checkpoint(args.ckpt, device=args.device, with_data=args.data is None)
    c = trainer.config
    reference = trainer.data.images if args.data is None else load_folder(
        args.data, c.image_size, background=c.background, fit=c.fit).images
    fake = trainer.generate(trainer.gan.sample_z(args.n, np.random.default_rng(args.seed)))
    results = {k: float(v) for k, v in evaluate(reference, fake, seed=args.seed).items()}
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    else:
        print(f"{c.model} at step {trainer.step_count}: {args.n} generated vs {len(reference)} reference images")
        print(format_table(results))
    return 0


def _known_errors():
    from minigan.backend import DeviceError
    from minigan.checkpoint import CheckpointError
    from minigan.data import DataError
    from minigan.nn import StateDictError
    from minigan.train import ConfigError, RunError, TrainingDiverged

    return (DeviceError, CheckpointError, DataError, StateDictError, ConfigError, RunError, TrainingDiverged,
            UsageError)


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
    except MemoryError:
        print("minigan: error: out of memory: use a smaller --batch or --image-size.", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
