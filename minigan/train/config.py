"""Everything a training run needs to be reproduced, as one frozen dataclass.

A ``TrainConfig`` built from options may leave values to the model (``None``:
batch, learning rates, betas, DiffAugment, EMA, the run folder, the device).
:func:`resolve` is the one place they are filled in, from the model registry's
recipe, the recipe name and the device; it returns a new frozen value that
nothing writes back to, and ``config.json`` and checkpoints record it.

Each field's metadata (:class:`Option`) is its help text, type and allowed
range: the ``minigan train`` parser is built from it and :meth:`TrainConfig.validate`
checks every value against it, for options and for configs read from checkpoints.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from minigan.backend import DEVICES
from minigan.models import IMAGE_SIZES, MODEL_NAMES, MODELS

RECIPES = ("small-data", "original")
RECIPE_ALIASES = {"seed": "original"}  # the name it had before "seed" meant only the RNG seed
FITS = ("crop", "pad")
MAX_STEPS = 10 ** 9
DROPPED_KEYS = ("extra",)  # keys older minigan versions wrote; ignored when read


class ConfigError(ValueError):
    """An option that cannot work; the message says which and what to use."""


@dataclass(frozen=True)
class Option:
    """How one config field is set on the command line and what values it takes."""

    help: str
    kind: type = str  # int, float, str or bool; a tuple field: the type of each element
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself excluded
    hi_open: bool = False
    choices: tuple | None = None
    flags: tuple[str, ...] = ()  # default: --field-name; a tuple field: one flag per element
    cli: bool = True  # False: Python and checkpoints only
    parse: object = None  # the command line's converter, when not ``kind``

    def rule(self) -> str:
        """What a valid value is, as words: 'a whole number >= 1 and <= 512'."""
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        words = ["a whole number" if self.kind is int else "a finite number"]
        if self.lo is not None:
            words.append(f"{'>' if self.lo_open else '>='} {_number(self.lo)}")
        if self.hi is not None:
            words.append(f"{'and ' if self.lo is not None else ''}{'<' if self.hi_open else '<='} {_number(self.hi)}")
        return " ".join(words)

    def accepts(self, value) -> bool:
        if self.choices is not None:
            return isinstance(value, self.kind) and not isinstance(value, bool) and value in self.choices
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str)
        numeric = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric) or not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))


def _number(x) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _option(default, help, kind=None, optional=False, **rules):
    kind = kind or type(default)
    return field(default=default, metadata={"option": Option(help, kind, **rules), "optional": optional})


def parse_color(text: str) -> tuple[int, int, int]:
    """'white', '#rrggbb' or 'rgb(r,g,b)' -> (r, g, b)."""
    import argparse

    from PIL import ImageColor

    try:
        return tuple(ImageColor.getrgb(text)[:3])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a colour: use a name (white), #rrggbb or rgb(r,g,b)")


def parse_recipe(text: str) -> str:
    import argparse

    name = RECIPE_ALIASES.get(text, text)
    if name not in RECIPES:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(RECIPES)})")
    return name


@dataclass(frozen=True)
class TrainConfig:
    model: str = _option("sagan", "architecture", choices=MODEL_NAMES)
    data: str | None = _option(None, "folder of images (default: built-in procedural faces)", str, True)
    out: str | None = _option(None, "run folder (default: runs/MODEL)", str, True)
    iters: int = _option(2000, "training iterations (with --minutes: the most)", lo=0, hi=MAX_STEPS)
    minutes: float = _option(0.0, "a time budget: train for about this many minutes, at most --iters steps. A fresh "
                             "run times a few steps, undoes them, and fixes its step count (printed, and recorded "
                             "in config.json; a resume keeps it), then looks at it once more from its own pace "
                             "before the learning rates start to fall; --lr-decay shrinks in proportion "
                             "(0: --iters is the count)", lo=0, hi=10 ** 6)
    batch: int | None = _option(None, "batch size (default: the model's original)", int, True, lo=1, hi=4096)
    device: str | None = _option(None, "cpu or cuda (default: MINIGAN_DEVICE, else the GPU if usable)", str, True,
                                 choices=DEVICES)
    seed: int = _option(0, "RNG seed: the same seed gives the same run", lo=0, hi=2 ** 32 - 1)
    image_size: int = _option(64, "image size (square)", choices=IMAGE_SIZES)
    z_dim: int | None = _option(None, "latent size (default: the model's)", int, True, lo=1, hi=4096)
    width: int | None = _option(None, "base channel width (default: the model's, 64)", int, True, lo=1, hi=512)
    lr_d: float | None = _option(None, "D's learning rate (default: the model's)", float, True,
                                 lo=0, hi=1, lo_open=True)
    lr_g: float | None = _option(None, "G's learning rate (default: the model's)", float, True,
                                 lo=0, hi=1, lo_open=True)
    betas: tuple | None = _option(None, "Adam's beta1 / beta2 (default: the model's)", float, True,
                                  lo=0, hi=1, hi_open=True, flags=("--beta1", "--beta2"))
    # "small-data" = the original recipe + DiffAugment + EMA (the default); "original" = the original alone
    recipe: str = _option("small-data", "small-data: the original recipe + DiffAugment + EMA (default); "
                          "original (or seed): the original project's recipe alone", choices=RECIPES,
                          parse=parse_recipe)
    diffaugment: str | None = _option(None, "policy, e.g. color,translation,cutout ('' disables)", str, True)
    ema: float | None = _option(None, "EMA decay of G's weights, in [0, 1) (0 disables)", float, True,
                                lo=0, hi=1, hi_open=True)
    ema_start: int = _option(0, "iterations before the EMA starts tracking (it copies G until then)",
                             lo=0, hi=MAX_STEPS)
    lr_decay: int = _option(0, "the last N iterations' learning rates fall linearly towards 0 (both nets; "
                            "CycleGAN's schedule; 0: constant); counted back from --iters, so a run resumed "
                            "with more --iters is back at full rate until its new last N", lo=0, hi=MAX_STEPS)
    lecam: float = _option(0.0, "LeCam regularisation weight (Tseng et al. 2021; 0: off)", lo=0, hi=100)
    lecam_decay: float = _option(0.99, "decay of LeCam's moving averages of D's outputs, in [0, 1)",
                                 lo=0, hi=1, hi_open=True)
    bcr: float = _option(0.0, "balanced consistency regularisation weight (bCR, Zhao et al. 2021): D's logits on "
                         "what it sees of real and fake images are pulled towards its logits on a flipped and "
                         "shifted copy (10 in the paper; 0: off)", lo=0, hi=100)
    top_k: float = _option(0.0, "top-k training (Sinha et al. 2020): G learns only from the samples of its batch D "
                           "rates most real, a share that starts at 1 and is multiplied by --top-k-decay every "
                           "epoch, down to this share (0.5 in the paper; 0: off)", lo=0, hi=1)
    top_k_decay: float = _option(0.99, "top-k: the kept share's factor per epoch (a pass over the data)",
                                 lo=0, hi=1, lo_open=True)
    ada_target: float = _option(0.0, "adaptive augmentation (ADA, Karras et al. 2020): DiffAugment's probability p "
                                "is tuned so that E[sign D(real)] stays at this target (0.6 in the paper; 0: off, "
                                "p = 1)", lo=0, hi=1)
    ada_images: int = _option(20000, "ADA: real images shown over which p can move from 0 to 1", lo=1, hi=MAX_STEPS)
    # the original projects' tricks
    d_steps: int = _option(1, "D updates per G update", lo=1, hi=100)
    label_smoothing: bool = _option(False, "one-sided: real labels in [0.9, 1]")
    instance_noise: float = _option(0.0, "std of noise on D's inputs, annealed to 0", lo=0, hi=10)
    noise_anneal: int = _option(0, "steps to anneal the noise over (0: the whole run)", lo=0, hi=MAX_STEPS)
    feature_matching: bool = _option(False, "G matches the mean of D's features on real data")
    minibatch_discrimination: bool = _option(False, "a minibatch-discrimination layer before D's last")
    semi_supervised: bool = _option(False, "K labelled subfolders -> K+1-class D")
    began_gamma: float = _option(0.5, "BEGAN's equilibrium ratio gamma, in (0, 1]", lo=0, hi=1, lo_open=True)
    began_lambda_k: float = _option(0.001, "BEGAN's k_t learning rate, in [0, 1]", lo=0, hi=1)
    # data
    flip: bool = _option(True, "no random horizontal flips", flags=("--no-flip",))
    fit: str = _option("crop", "make images square by cropping or padding", choices=FITS)
    background: tuple = _option((255, 255, 255), "colour behind transparent pixels", int, lo=0, hi=255,
                                parse=parse_color)
    # outputs
    sample_every: int = _option(200, "write the fixed-z sample grid every N steps", lo=1, hi=MAX_STEPS)
    checkpoint_every: int = _option(200, "write a checkpoint every N steps", lo=1, hi=MAX_STEPS)
    eval_every: int = _option(0, "compute quality metrics every N steps (0: off)", lo=0, hi=MAX_STEPS)
    eval_n: int = _option(500, "generated images per quality evaluation", lo=1, hi=10 ** 6)
    n_samples: int = _option(64, "fixed-z grid size", lo=1, hi=1024, cli=False)
    max_retries: int = _option(3, "rollbacks after non-finite losses before giving up", lo=0, hi=100, cli=False)

    # -- checks ---------------------------------------------------------------------
    def validate(self, source: str | None = None) -> "TrainConfig":
        """Every value against its field's Option; one ConfigError naming the option (or ``source``'s key)."""
        for f in dataclasses.fields(self):
            option, value = f.metadata["option"], getattr(self, f.name)
            if value is None and f.metadata["optional"]:
                continue
            if f.name == "recipe":
                value = RECIPE_ALIASES.get(value, value)
            width = len(option.flags) if len(option.flags) > 1 else 3 if isinstance(f.default, tuple) else 0
            if not width:
                if not option.accepts(value):
                    raise ConfigError(_bad_value(f.name, option.flags, value, option.rule(), source))
                continue
            if not isinstance(value, (tuple, list)) or len(value) != width:
                raise ConfigError(_bad_value(f.name, option.flags, value, f"{width} values", source))
            for i, v in enumerate(value):  # a tuple's elements: named by their own flag when they have one
                if not ((v is None and f.metadata["optional"]) or option.accepts(v)):
                    name, flags = (f"{f.name}[{i}]", option.flags[i:i + 1]) if option.flags else (f.name, ())
                    raise ConfigError(_bad_value(name, flags, v if option.flags else value,
                                                 option.rule() if option.flags else f"{width} values, each "
                                                 f"{option.rule()}", source))
        policy = self.diffaugment or ""
        from minigan.augment import AUGMENTATIONS

        unknown = [p.strip() for p in policy.split(",") if p.strip() and p.strip() not in AUGMENTATIONS]
        if unknown:
            raise ConfigError(_bad_value("diffaugment", (), self.diffaugment,
                                         f"a comma-separated list of {', '.join(AUGMENTATIONS)}", source))
        tricks = self.feature_matching or self.minibatch_discrimination or self.semi_supervised
        if tricks and self.model in MODELS and not MODELS[self.model].classifier:
            classifiers = [name for name, entry in MODELS.items() if entry.classifier]
            raise ConfigError(f"feature matching, minibatch discrimination and the semi-supervised D need a "
                              f"classifier D: use them with {', '.join(classifiers)}, not {self.model}.")
        if self.top_k > 0 and (self.feature_matching or self.semi_supervised):
            raise ConfigError("--top-k ranks fakes by one logit each; feature matching and the semi-supervised D "
                              "give G another loss: leave --top-k at 0 with them.")
        autoencoder = self.model in MODELS and not MODELS[self.model].logits
        for flag, value, what in (("--ada-target", self.ada_target, "reads the sign of D's logits"),
                                  ("--lecam", self.lecam, "regularises a D that outputs logits"),
                                  ("--bcr", self.bcr, "regularises a D that outputs logits"),
                                  ("--top-k", self.top_k, "ranks fakes by D's logits")):
            if value > 0 and autoencoder:
                raise ConfigError(f"{flag} {what}; {self.model}'s D is an autoencoder: leave {flag} at 0 for it.")
        return self

    @property
    def is_resolved(self) -> bool:
        return None not in (self.out, self.batch, self.lr_d, self.lr_g, self.betas, self.device, self.diffaugment,
                            self.ema) and None not in self.betas and self.recipe in RECIPES

    # -- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas) if self.betas is not None else None
        d["background"] = list(self.background)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config as ``to_dict`` (of this or an older version) wrote it; not validated yet."""
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k not in DROPPED_KEYS}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}: this run was written by another minigan version.")
        for key in ("betas", "background"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        if d.get("recipe") in RECIPE_ALIASES:
            d["recipe"] = RECIPE_ALIASES[d["recipe"]]
        return cls(**d)


def _bad_value(name: str, flags: tuple, value, rule: str, source: str | None) -> str:
    """One sentence: the option's flag and the fix, or for a checkpoint's config the file, the key and the value."""
    if source is not None:
        return (f"'{source}' holds a run configuration with {name} = {value!r}, which must be {rule}; "
                "the file is damaged or was edited: use another checkpoint.")
    flag = "/".join(flags) if flags else "--" + name.replace("_", "-")
    return f"{flag} must be {rule}, not {value!r}."


def resolve(options: TrainConfig, device: str) -> TrainConfig:
    """The config a run uses: ``options`` (validated) with every ``None`` the model's, the recipe's or the
    device's value. Pure: the same options and device give the same config; resolving twice changes nothing."""
    options.validate()
    recipe = MODELS[options.model].recipe
    small_data = RECIPE_ALIASES.get(options.recipe, options.recipe) == "small-data"
    given = options.betas if options.betas is not None else (None, None)  # either beta may be left to the model
    return dataclasses.replace(
        options,
        out=options.out if options.out is not None else os.path.join("runs", options.model),
        recipe="small-data" if small_data else "original",
        batch=options.batch if options.batch is not None else recipe["batch"],
        lr_d=options.lr_d if options.lr_d is not None else recipe["lr_d"],
        lr_g=options.lr_g if options.lr_g is not None else recipe["lr_g"],
        betas=tuple(b if b is not None else default for b, default in zip(given, recipe["betas"])),
        device=device,
        diffaugment=(options.diffaugment if options.diffaugment is not None
                     else "color,translation,cutout" if small_data else ""),
        ema=options.ema if options.ema is not None else 0.999 if small_data else 0.0,
    )


def fields_with_options():
    """(field, Option) of every TrainConfig field, in order (the CLI's train options)."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(TrainConfig)]


def load_data(config: TrainConfig):
    """The ImageSet a (resolved) config trains on: its --data folder, or the built-in procedural faces."""
    from minigan.data import default_dataset, load_folder

    if config.data is None:
        return default_dataset(size=config.image_size, seed=config.seed)
    return load_folder(config.data, config.image_size, background=config.background, fit=config.fit,
                       cache_dir=os.path.join(config.out, "cache"))
