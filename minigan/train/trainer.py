"""One training iteration and the state it changes: ``d_steps`` discriminator updates, then one
generator update, with the losses of the model's :mod:`loss family <minigan.train.losses>`.

DiffAugment (when on) transforms every image D sees, real and fake, in both
steps; instance noise (when on) is added after it. G's exponential moving
average (decay min(ema, (1 + t) / (10 + t)) at step t, so it warms up) is
updated after every G step and is what samples are drawn from.

Every random draw comes from generators whose states are checkpointed, so a
resumed run continues exactly as an uninterrupted one would (bit for bit on
the CPU). The folder, the loop, signals and logs are :class:`minigan.train.run.Run`'s.
"""
from __future__ import annotations

import contextlib
import copy
import math

import numpy as np

from minigan import backend, checkpoint, random
from minigan.augment import diff_augment
from minigan.data import BatchSampler
from minigan.models import build
from minigan.optim import Adam
from minigan.tensor import Tensor, no_grad
from minigan.train.config import ConfigError, TrainConfig, load_data
from minigan.train.generator import Generator
from minigan.train.losses import loss_family
from minigan.train.state import entries_of


ADA_INTERVAL = 4  # steps between adjustments of ADA's p (the paper's N = 4 minibatches)


class TrainingDiverged(RuntimeError):
    """Losses stayed non-finite after every allowed rollback."""


@contextlib.contextmanager
def frozen(module):
    """Parameters of ``module`` need no gradient inside the block (gradients still flow through it).

    Any module whose ``parameters()`` yields objects with a settable ``requires_grad`` will do: the
    benchmarks freeze a PyTorch twin's D with it too."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad = False
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad = flag


class Trainer:
    """``config``: a resolved TrainConfig (:func:`minigan.train.config.resolve`); ``dataset``: the ImageSet
    to train on (default: what the config names, through :func:`load_data`)."""

    def __init__(self, config: TrainConfig, dataset=None):
        if not config.is_resolved:
            raise ValueError("Trainer needs a resolved config: pass resolve(options, device).")
        self.config = c = config
        self.device = c.device
        random.manual_seed(c.seed)
        self.data = dataset if dataset is not None else load_data(c)
        if c.semi_supervised and self.data.labels is None:
            raise ConfigError(f"--semi-supervised needs a data folder with at least two labelled subfolders; "
                              f"'{c.data}' has none.")
        self.num_classes = k = self.data.num_classes if c.semi_supervised else 0
        self.gan = build(c.model, image_size=c.image_size, z_dim=c.z_dim, width=c.width, num_classes=k,
                         minibatch_discrimination=c.minibatch_discrimination)
        self.G, self.D = self.gan.G.to(self.device), self.gan.D.to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval() if c.ema > 0 else None  # same weights, own arrays
        self.opt_d = Adam(self.D.parameters(), lr=c.lr_d, betas=c.betas)
        self.opt_g = Adam(self.G.parameters(), lr=c.lr_g, betas=c.betas)
        self.loss = loss_family(self.gan, c, self.D, self.see)
        self.sampler = BatchSampler(self.data.images, c.batch, seed=c.seed, flip=c.flip,
                                    labels=self.data.labels if k else None)
        self.rng = np.random.default_rng([c.seed, 1])  # z, augmentation, noise
        self.fixed_z = self.gan.sample_z(c.n_samples, np.random.default_rng([c.seed, 2]))
        self.step_count = 0
        self.ada_p = 0.0 if c.ada_target > 0 else 1.0  # DiffAugment's probability (ADA tunes it from 0)
        self.ada_signs = []  # E[sign D(real)] of the D steps since p was last adjusted

    # -- pieces of a step -----------------------------------------------------------
    def _tensor(self, array):
        return Tensor(backend.to_device(array, self.device))

    def _z(self, n):
        return self._tensor(self.gan.sample_z(n, self.rng))

    def see(self, x):
        """What D is shown of images x: DiffAugment, then annealed instance noise."""
        c = self.config
        if c.diffaugment:
            x = diff_augment(x, c.diffaugment, self.rng, p=self.ada_p)
        sigma = self.noise_std()
        if sigma > 0:
            x = x + self._tensor(self.rng.standard_normal(x.shape).astype(np.float32) * sigma)
        return x

    def noise_std(self) -> float:
        c = self.config
        if c.instance_noise <= 0:
            return 0.0
        horizon = c.noise_anneal or c.iters or 1
        return c.instance_noise * max(0.0, 1.0 - self.step_count / horizon)

    # -- one iteration --------------------------------------------------------------------
    def step(self) -> dict:
        """One training iteration; returns the losses and diagnostics as floats."""
        c = self.config
        self.G.train()
        self.D.train()
        stats = {}
        scale = self.lr_scale()
        self.opt_d.lr, self.opt_g.lr = c.lr_d * scale, c.lr_g * scale
        for _ in range(c.d_steps):
            batch, labels = self.sampler.next_batch()
            real = self._tensor(batch)
            self.opt_d.zero_grad()
            with no_grad():
                fake = self.G(self._z(real.shape[0]))
            loss_d, extra = self.loss.d_loss(real, fake.detach(), labels, self.rng)
            loss_d.backward()
            self.opt_d.step()
            stats.update(extra)
            if "D_real_sign" in extra:
                self.ada_signs.append(extra["D_real_sign"])
        self.opt_g.zero_grad()
        with frozen(self.D):  # D's weight gradients would be computed and thrown away
            loss_g, extra = self.loss.g_loss(real, self.G(self._z(c.batch)), keep=self.top_k_kept())
            loss_g.backward()
        self.opt_g.step()
        stats.update(extra)
        self.step_count += 1
        self._update_ema()
        self._update_ada(stats)
        stats.update(step=self.step_count, loss_d=loss_d.item(), loss_g=loss_g.item())
        stats.update(self.loss.end_step(stats))
        return stats

    def top_k_kept(self) -> int | None:
        """How many of the G step's fakes it learns from with --top-k (Sinha et al. 2020): the batch times
        max(top_k_decay^epoch, top_k), rounded up, the epoch = images shown so far // the data's size; None
        without --top-k."""
        c = self.config
        if c.top_k <= 0:
            return None
        epoch = self.step_count * c.batch // max(1, len(self.data.images))
        # - 1e-9: a share times the batch that should be whole (16 * 0.5) and rounds a hair above it stays whole
        return max(1, math.ceil(c.batch * max(c.top_k_decay ** epoch, c.top_k) - 1e-9))

    def lr_scale(self) -> float:
        """The learning rates' factor at this step: 1, or with --lr-decay N, (iters - t) / N over the last N
        of the run's iterations (t = 0, 1, ...: the last step's is 1 / N)."""
        c = self.config
        return min(1.0, max(0.0, (c.iters - self.step_count) / c.lr_decay)) if c.lr_decay else 1.0

    def _update_ada(self, stats):
        """Every ADA_INTERVAL steps: p += sign(r_t - target) * (images shown since) / ada_images, clipped to
        [0, 1]; r_t = E[sign D(x_real)] over those steps (Karras et al. 2020, sec. 3)."""
        c = self.config
        if c.ada_target <= 0:
            return
        if self.step_count % ADA_INTERVAL == 0 and self.ada_signs:
            r_t = float(np.mean(self.ada_signs))
            shown = len(self.ada_signs) * c.batch
            self.ada_p = float(min(max(self.ada_p + np.sign(r_t - c.ada_target) * shown / c.ada_images, 0.0), 1.0))
            self.ada_signs = []
        stats["ada_p"] = self.ada_p

    def _update_ema(self):
        if self.G_ema is None:
            return
        if self.step_count <= self.config.ema_start:
            self.G_ema.copy_from(self.G)
            return
        # warm-up (as TensorFlow's ExponentialMovingAverage with num_updates): early on the
        # average follows G closely, so it is not dragged towards the random initialisation
        t = self.step_count - self.config.ema_start
        decay = min(self.config.ema, (1.0 + t) / (10.0 + t))
        for (_, pe), (_, p) in zip(self.G_ema.named_parameters(), self.G.named_parameters()):
            pe.data *= decay
            pe.data += (1.0 - decay) * p.data
        for (_, be), (_, b) in zip(self.G_ema.named_buffers(), self.G.named_buffers()):
            be[...] = b  # running statistics and spectral-norm vectors follow G

    @staticmethod
    def losses_finite(stats: dict) -> bool:
        return all(math.isfinite(v) for k, v in stats.items() if isinstance(v, float))

    # -- sampling ---------------------------------------------------------------------------
    def generator(self) -> Generator:
        """What samples are drawn from: the EMA of G if there is one, else G (the same arrays, not a copy)."""
        G = self.G_ema if self.G_ema is not None else self.G
        return Generator(G, self.gan, self.device, step=self.step_count, config=self.config)

    def generate(self, z: np.ndarray) -> np.ndarray:
        """Images (N, 3, S, S) in [-1, 1] as a NumPy array for latent vectors z."""
        return self.generator().images(z)

    # -- checkpoints ----------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict]:
        arrays = {}
        arrays.update(checkpoint.join("G", self.G.state_dict()))
        arrays.update(checkpoint.join("D", self.D.state_dict()))
        if self.G_ema is not None:
            arrays.update(checkpoint.join("G_ema", self.G_ema.state_dict()))
        arrays.update(checkpoint.join("opt_d", self.opt_d.state_dict()))
        arrays.update(checkpoint.join("opt_g", self.opt_g.state_dict()))
        arrays["fixed_z"] = self.fixed_z
        meta = {
            "config": self.config.to_dict(),
            "step": self.step_count,
            **self.loss.state_dict(),
            "num_classes": self.num_classes,
            "class_names": list(getattr(self.data, "class_names", []) or []),
            "rng": self.rng.bit_generator.state,
            "init_rng": random.get_state(),
            "sampler": self.sampler.state_dict(),
        }
        if self.config.ada_target > 0:
            meta["ada"] = {"p": self.ada_p, "signs": list(self.ada_signs)}
        return arrays, meta

    def expected_entries(self) -> dict:
        """name -> (dtype, shape) of every array a checkpoint of this trainer holds."""
        return entries_of(self.state()[0])

    def load_state(self, arrays: dict, meta: dict, source: str = "checkpoint"):
        """Restore everything a checkpoint holds (model shapes are checked first).

        Every way the checkpoint can fail to fit is one CheckpointError naming ``source``.
        """
        from minigan.nn import StateDictError

        try:
            self.G.load_state_dict(checkpoint.split(arrays, "G"))
            self.D.load_state_dict(checkpoint.split(arrays, "D"))
            if self.G_ema is not None:
                ema = checkpoint.split(arrays, "G_ema")
                self.G_ema.load_state_dict(ema if ema else checkpoint.split(arrays, "G"))
            self.opt_d.load_state_dict(checkpoint.split(arrays, "opt_d"))
            self.opt_g.load_state_dict(checkpoint.split(arrays, "opt_g"))
        except (StateDictError, ValueError, KeyError) as exc:
            raise checkpoint.CheckpointError(
                f"'{source}' does not fit this model (the {self.config.model} its own config describes: {exc}); "
                "it is damaged or was edited: use another checkpoint.") from exc
        try:
            self.fixed_z = arrays.get("fixed_z", self.fixed_z)
            self.step_count = int(meta["step"])
            self.loss.load_state_dict(meta)
            if self.config.ada_target > 0:
                ada = meta.get("ada", {"p": 0.0, "signs": []})
                self.ada_p, self.ada_signs = float(ada["p"]), [float(v) for v in ada["signs"]]
            self.rng.bit_generator.state = meta["rng"]
            random.set_state(meta["init_rng"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise checkpoint.CheckpointError(
                f"'{source}' has incomplete or malformed metadata ({type(exc).__name__}: {exc}); "
                "use another checkpoint.") from exc
        try:
            self.sampler.load_state_dict(meta["sampler"])
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise checkpoint.CheckpointError(
                f"'{source}' has a malformed data-sampler state ({type(exc).__name__}: {exc}); "
                "use another checkpoint.") from exc
