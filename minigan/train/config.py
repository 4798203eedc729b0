"""Everything a training run needs to be reproduced, as one JSON-able dataclass.

``None`` means "the model's seed default" (learning rates, betas, batch size)
and is resolved when the run starts, so ``config.json`` records the values
actually used.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

RECIPES = ("small-data", "seed")
MODEL_NAMES = ("sagan", "dcgan", "dcgan128", "began")


_INTS = ("image_size", "iters", "seed", "ema_start", "d_steps", "noise_anneal", "sample_every",
         "checkpoint_every", "eval_every", "eval_n", "n_samples", "max_retries")
_OPTIONAL_INTS = ("z_dim", "width", "batch")
_FLOATS = ("instance_noise", "began_gamma", "began_lambda_k")
_OPTIONAL_FLOATS = ("lr_d", "lr_g", "ema")


class ConfigError(ValueError):
    """An option that cannot work; the message says which and what to use."""


@dataclass
class TrainConfig:
    model: str = "sagan"
    data: str | None = None  # None: the built-in procedural faces
    out: str = "runs/sagan"
    image_size: int = 64
    z_dim: int | None = None
    width: int | None = None
    iters: int = 2000
    batch: int | None = None
    lr_d: float | None = None
    lr_g: float | None = None
    betas: tuple[float | None, float | None] | None = None  # a None entry: the model's value
    device: str | None = None
    seed: int = 0
    # recipe: "small-data" = the seed's recipe + DiffAugment + EMA (the default);
    # "seed" = the seed's recipe alone
    recipe: str = "small-data"
    diffaugment: str | None = None  # policy, e.g. "color,translation,cutout"; "" disables
    ema: float | None = None  # decay of G's exponential moving average; 0 disables
    ema_start: int = 0  # iterations before the EMA starts tracking (it copies G until then)
    # the seeds' tricks
    d_steps: int = 1  # D updates per G update
    label_smoothing: bool = False  # one-sided: real label drawn per batch in [0.9, 1]
    instance_noise: float = 0.0  # std of Gaussian noise on D's inputs at step 0 ...
    noise_anneal: int = 0  # ... annealed linearly to 0 over this many steps (0: over the whole run)
    feature_matching: bool = False
    minibatch_discrimination: bool = False
    semi_supervised: bool = False  # K labelled subfolders -> a K+1-class D
    began_gamma: float = 0.5
    began_lambda_k: float = 0.001
    # data
    flip: bool = True
    fit: str = "crop"
    background: tuple[int, int, int] = (255, 255, 255)
    # outputs
    sample_every: int = 200
    checkpoint_every: int = 200
    eval_every: int = 0  # 0: never during training
    eval_n: int = 500
    n_samples: int = 64  # fixed-z grid size
    max_retries: int = 3  # rollbacks after non-finite losses before giving up
    extra: dict = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        for name in _INTS + _OPTIONAL_INTS + _FLOATS + _OPTIONAL_FLOATS:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_INTS + _OPTIONAL_FLOATS:
                continue
            numeric = (int,) if name in _INTS + _OPTIONAL_INTS else (int, float)
            if isinstance(value, bool) or not isinstance(value, numeric):
                raise ConfigError(f"option {name!r} must be a number, not {value!r}.")
        if self.model not in MODEL_NAMES:
            raise ConfigError(f"unknown model {self.model!r}: choose one of {', '.join(MODEL_NAMES)}.")
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}: choose one of {', '.join(RECIPES)}.")
        if self.image_size not in (32, 64, 128):
            raise ConfigError(f"image size {self.image_size} is not supported: use 32, 64 or 128.")
        if self.iters < 0 or (self.batch is not None and self.batch < 1) or self.d_steps < 1:
            raise ConfigError("--iters must be >= 0, and --batch and --d-steps >= 1.")
        if self.sample_every < 1 or self.checkpoint_every < 1 or self.eval_every < 0:
            raise ConfigError("--sample-every and --checkpoint-every must be >= 1, and --eval-every >= 0.")
        if self.fit not in ("crop", "pad"):
            raise ConfigError(f"--fit must be 'crop' or 'pad', not {self.fit!r}.")
        if self.model == "began" and (self.feature_matching or self.minibatch_discrimination or self.semi_supervised):
            raise ConfigError("feature matching, minibatch discrimination and the semi-supervised D need a "
                              "classifier D: use them with sagan, dcgan or dcgan128, not began.")
        return self

    # -- derived defaults ----------------------------------------------------------
    @property
    def diffaugment_policy(self) -> str:
        if self.diffaugment is not None:
            return self.diffaugment
        return "color,translation,cutout" if self.recipe == "small-data" else ""

    @property
    def ema_decay(self) -> float:
        if self.ema is not None:
            return self.ema
        return 0.999 if self.recipe == "small-data" else 0.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas) if self.betas is not None else None
        d["background"] = list(self.background)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}: this run was written by another minigan version.")
        d = dict(d)
        if d.get("betas") is not None:
            d["betas"] = tuple(d["betas"])
        if d.get("background") is not None:
            d["background"] = tuple(d["background"])
        return cls(**d)
