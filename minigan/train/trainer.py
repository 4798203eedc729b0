"""The training loop: one iteration = ``d_steps`` discriminator updates + one generator update.

Losses by model family:

* hinge (SAGAN):  L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))];  L_G = -E[D(G(z))]
* bce (DCGAN):    L_D = BCE(D(x), y_real) + BCE(D(G(z)), 0);     L_G = BCE(D(G(z)), 1)
                  (the non-saturating G loss; y_real in [0.9, 1] with one-sided label smoothing;
                  L_G = ||E f(x) - E f(G(z))||^2 with feature matching)
* semi-supervised (any classifier D with K labelled classes): D outputs K+1 logits,
                  L_D = CE(D(x), label) + CE(D(G(z)), K);  L_G = -E log(1 - p_K(G(z)))
* began (BEGAN):  L(v) = E|v - D(v)|;  L_D = L(x) - k_t L(G(z));  L_G = L(G(z));
                  k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1);
                  M_global = L(x) + |gamma L(x) - L(G(z))|

DiffAugment (when on) transforms every image D sees, real and fake, in both
steps; instance noise (when on) is added after it. G's exponential moving
average (decay min(ema, (1 + t) / (10 + t)) at step t, so it warms up) is
updated after every G step and is what samples are drawn from.

Every random draw comes from generators whose states are checkpointed, so a
resumed run continues exactly as an uninterrupted one would (bit for bit on
the CPU).
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import warnings

import numpy as np

import minigan.ops as F
from minigan import backend, checkpoint, random
from minigan.augment import diff_augment
from minigan.data import BatchSampler, default_dataset, load_folder
from minigan.models import build
from minigan.models.base import feature_matching_loss
from minigan.optim import Adam
from minigan.tensor import Tensor, no_grad
from minigan.train.config import ConfigError, TrainConfig


MAX_CLASSES = 1000  # labelled subfolders a checkpoint's semi-supervised D may declare


class TrainingDiverged(RuntimeError):
    """Losses stayed non-finite after every allowed rollback."""


@contextlib.contextmanager
def _frozen(module):
    """Parameters of ``module`` need no gradient inside the block (gradients still flow through it)."""
    params = module.parameters()
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad = False
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad = flag


def _logsumexp(x, axis=1):
    m = Tensor(x.data.max(axis=axis, keepdims=True))  # a constant shift: no gradient needed
    return F.log(F.sum(F.exp(x - m), axis=axis)) + F.reshape(m, (-1,))


class Trainer:
    def __init__(self, config: TrainConfig, dataset=None):
        self.config = config.validate()
        self.device = backend.resolve(config.device)
        random.manual_seed(config.seed)
        self.data = dataset if dataset is not None else self._load_data()
        if config.semi_supervised and self.data.labels is None:
            raise ConfigError(f"--semi-supervised needs a data folder with at least two labelled subfolders; "
                              f"'{config.data}' has none.")
        k = self.data.num_classes if config.semi_supervised else 0
        self.num_classes = k
        self.gan = build(config.model, image_size=config.image_size, z_dim=config.z_dim, width=config.width,
                         num_classes=k, minibatch_discrimination=config.minibatch_discrimination)
        self._resolve_defaults()
        self.G, self.D = self.gan.G.to(self.device), self.gan.D.to(self.device)
        self.G_ema = None
        if config.ema_decay > 0:
            self.G_ema = copy.deepcopy(self.G).eval()  # same architecture, same weights, own arrays
        c = self.config
        self.opt_d = Adam(self.D.parameters(), lr=c.lr_d, betas=c.betas)
        self.opt_g = Adam(self.G.parameters(), lr=c.lr_g, betas=c.betas)
        self.sampler = BatchSampler(self.data.images, c.batch, seed=c.seed, flip=c.flip,
                                    labels=self.data.labels if k else None)
        self.rng = np.random.default_rng([c.seed, 1])  # z, augmentation, noise
        self.fixed_z = self.gan.sample_z(c.n_samples, np.random.default_rng([c.seed, 2]))
        self.step_count = 0
        self.k_t = 0.0
        self.last = {}

    # -- set-up ------------------------------------------------------------------
    def _load_data(self):
        c = self.config
        if c.data is None:
            return default_dataset(size=c.image_size, seed=c.seed)
        return load_folder(c.data, c.image_size, background=c.background, fit=c.fit,
                           cache_dir=os.path.join(c.out, "cache"))

    def _resolve_defaults(self):
        c, d = self.config, self.gan.defaults
        c.batch = c.batch or d["batch"]
        c.lr_d = c.lr_d if c.lr_d is not None else d["lr_d"]
        c.lr_g = c.lr_g if c.lr_g is not None else d["lr_g"]
        given = c.betas if c.betas is not None else (None, None)  # either beta may be left to the model
        c.betas = tuple(b if b is not None else default for b, default in zip(given, d["betas"]))

    # -- pieces of a step -----------------------------------------------------------
    def _tensor(self, array):
        return Tensor(backend.to_device(array, self.device))

    def _z(self, n):
        return self._tensor(self.gan.sample_z(n, self.rng))

    def _d_input(self, x):
        """What D sees: DiffAugment, then annealed instance noise."""
        c = self.config
        if c.diffaugment_policy:
            x = diff_augment(x, c.diffaugment_policy, self.rng)
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

    def _discriminate(self, x, features=False):
        return self.D(self._d_input(x), features=features)

    def _d_loss(self, real, labels):
        c, family = self.config, self.gan.loss
        with no_grad():
            fake = self.G(self._z(real.shape[0]))
        fake = fake.detach()
        if family == "began":
            loss_real = self._recon(real)
            loss_fake = self._recon(fake)
            loss = loss_real - self.k_t * loss_fake
            return loss, {"L_real": loss_real.item(), "L_fake": loss_fake.item()}
        real_logits, fake_logits = self._discriminate(real), self._discriminate(fake)
        if self.num_classes:
            fake_label = np.full(fake.shape[0], self.num_classes)
            loss = F.cross_entropy(real_logits, labels) + F.cross_entropy(fake_logits, fake_label)
        elif family == "hinge":
            loss = F.hinge_d_loss(real_logits, fake_logits)
        else:
            real_target = self.rng.uniform(0.9, 1.0) if c.label_smoothing else 1.0
            loss = F.bce_with_logits(real_logits, real_target) + F.bce_with_logits(fake_logits, 0.0)
        return loss, {"D_real": float(real_logits.data.mean()), "D_fake": float(fake_logits.data.mean())}

    def _recon(self, x):
        """BEGAN's L(v) = mean |v - D(v)| on what D sees."""
        seen = self._d_input(x)
        return F.l1_loss(seen, self.D(seen))

    def _g_loss(self, real):
        c, family = self.config, self.gan.loss
        fake = self.G(self._z(c.batch))
        if family == "began":
            return self._recon(fake), {}
        if c.feature_matching:
            with no_grad():
                _, real_feats = self._discriminate(real, features=True)
            _, fake_feats = self._discriminate(fake, features=True)
            return feature_matching_loss(real_feats.detach(), fake_feats), {}
        logits = self._discriminate(fake)
        if self.num_classes:  # -log(1 - p_K) = logsumexp(all) - logsumexp(real classes)
            real_part = _logsumexp(logits[:, :self.num_classes])
            return F.mean(_logsumexp(logits) - real_part), {}
        if family == "hinge":
            return F.hinge_g_loss(logits), {}
        return F.bce_with_logits(logits, 1.0), {}

    # -- one iteration --------------------------------------------------------------------
    def step(self) -> dict:
        """One training iteration; returns the losses and diagnostics as floats."""
        c = self.config
        self.G.train()
        self.D.train()
        stats = {}
        for _ in range(c.d_steps):
            batch, labels = self.sampler.next_batch()
            real = self._tensor(batch)
            self.opt_d.zero_grad()
            loss_d, extra = self._d_loss(real, labels)
            loss_d.backward()
            self.opt_d.step()
            stats.update(extra)
        self.opt_g.zero_grad()
        with _frozen(self.D):  # D's weight gradients would be computed and thrown away
            loss_g, extra = self._g_loss(real)
            loss_g.backward()
        self.opt_g.step()
        stats.update(extra)
        self.step_count += 1
        self._update_ema()
        stats.update(step=self.step_count, loss_d=loss_d.item(), loss_g=loss_g.item())
        if self.gan.loss == "began":
            balance = c.began_gamma * stats["L_real"] - stats["L_fake"]
            self.k_t = float(min(max(self.k_t + c.began_lambda_k * balance, 0.0), 1.0))
            stats.update(k_t=self.k_t, M_global=stats["L_real"] + abs(balance))
        self.last = stats
        return stats

    def _update_ema(self):
        if self.G_ema is None:
            return
        if self.step_count <= self.config.ema_start:
            self.G_ema.copy_from(self.G)
            return
        # warm-up (as TensorFlow's ExponentialMovingAverage with num_updates): early on the
        # average follows G closely, so it is not dragged towards the random initialisation
        t = self.step_count - self.config.ema_start
        decay = min(self.config.ema_decay, (1.0 + t) / (10.0 + t))
        for (_, pe), (_, p) in zip(self.G_ema.named_parameters(), self.G.named_parameters()):
            pe.data *= decay
            pe.data += (1.0 - decay) * p.data
        for (_, be), (_, b) in zip(self.G_ema.named_buffers(), self.G.named_buffers()):
            be[...] = b  # running statistics and spectral-norm vectors follow G

    @staticmethod
    def losses_finite(stats: dict) -> bool:
        return all(math.isfinite(v) for k, v in stats.items() if isinstance(v, float))

    # -- sampling ---------------------------------------------------------------------------
    @property
    def sampling_generator(self):
        return self.G_ema if self.G_ema is not None else self.G

    def generate(self, z: np.ndarray, batch: int = 64) -> np.ndarray:
        """Images (N, 3, S, S) in [-1, 1] as a NumPy array, from the EMA generator if any."""
        G = self.sampling_generator
        was_training = G.training
        G.eval()
        out = []
        with no_grad():
            for i in range(0, len(z), batch):
                out.append(G(self._tensor(z[i:i + batch])).numpy())
        G.train(was_training)
        images = np.concatenate(out)
        return np.clip(images, -1.0, 1.0) if self.gan.loss == "began" else images

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
            "k_t": self.k_t,
            "num_classes": self.num_classes,
            "class_names": list(getattr(self.data, "class_names", []) or []),
            "rng": self.rng.bit_generator.state,
            "init_rng": random.get_state(),
            "sampler": self.sampler.state_dict(),
        }
        return arrays, meta

    def save_checkpoint(self, path=None):
        path = path or checkpoint.in_run(self.config.out)
        arrays, meta = self.state()
        checkpoint.save(path, arrays, meta)
        return path

    def load_state(self, arrays: dict, meta: dict, source: str = "checkpoint", restore_sampler: bool = True,
                   sampling_only: bool = False):
        """Restore everything a checkpoint holds (model shapes are checked first).

        Every way the checkpoint can fail to fit is one CheckpointError naming ``source``.
        ``restore_sampler=False`` leaves the data sampler alone (sampling without the data);
        ``sampling_only`` restores G, its moving average and fixed_z alone.
        """
        from minigan.nn import StateDictError

        try:
            self.G.load_state_dict(checkpoint.split(arrays, "G"))
            if self.G_ema is not None:
                ema = checkpoint.split(arrays, "G_ema")
                self.G_ema.load_state_dict(ema if ema else checkpoint.split(arrays, "G"))
            if not sampling_only:
                self.D.load_state_dict(checkpoint.split(arrays, "D"))
                self.opt_d.load_state_dict(checkpoint.split(arrays, "opt_d"))
                self.opt_g.load_state_dict(checkpoint.split(arrays, "opt_g"))
        except (StateDictError, ValueError, KeyError) as exc:
            raise checkpoint.CheckpointError(
                f"'{source}' does not fit this model (the {self.config.model} its own config describes: {exc}); "
                "it is damaged or was edited: use another checkpoint.") from exc
        try:
            self.fixed_z = arrays.get("fixed_z", self.fixed_z)
            self.step_count = int(meta["step"])
            if self.step_count < 0:
                raise ValueError(f"step {self.step_count} is negative")
            self.k_t = float(meta.get("k_t", 0.0))
            self.rng.bit_generator.state = meta["rng"]
            random.set_state(meta["init_rng"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise checkpoint.CheckpointError(
                f"'{source}' has incomplete or malformed metadata ({type(exc).__name__}: {exc}); "
                "use another checkpoint.") from exc
        if restore_sampler:
            try:
                self.sampler.load_state_dict(meta["sampler"])
            except (KeyError, TypeError, AttributeError, IndexError) as exc:
                raise checkpoint.CheckpointError(
                    f"'{source}' has a malformed data-sampler state ({type(exc).__name__}: {exc}); "
                    "use another checkpoint.") from exc

    @staticmethod
    def config_from_checkpoint(meta: dict, source: str) -> TrainConfig:
        """The TrainConfig a checkpoint was written with, or one CheckpointError naming ``source``."""
        try:
            return TrainConfig.from_dict(meta["config"]).validate()
        except ConfigError as exc:
            raise checkpoint.CheckpointError(f"cannot use '{source}': {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise checkpoint.CheckpointError(
                f"'{source}' has no usable run configuration ({type(exc).__name__}: {exc}); "
                "use another checkpoint.") from exc

    @classmethod
    def from_checkpoint(cls, path, device=None, with_data=True):
        """Rebuild a run from its checkpoint (the config stored in it).

        ``with_data=False`` skips loading the training images: enough to sample (D and the optimizers'
        state are left unread).
        """
        source = os.fspath(path)

        def build(meta):
            config = cls.config_from_checkpoint(meta, source)
            if device is not None:
                config.device = device
            try:
                return cls(config) if with_data else cls._for_sampling(config, meta, source)
            except ConfigError as exc:  # e.g. a semi-supervised config without its classes
                raise checkpoint.CheckpointError(f"cannot use '{source}': {exc}") from exc

        trainer, arrays, meta = load_checkpoint(path, build, sampling_only=not with_data)
        trainer.load_state(arrays, meta, source=source, restore_sampler=with_data, sampling_only=not with_data)
        return trainer

    @classmethod
    def _for_sampling(cls, config, meta, source="checkpoint"):
        """A trainer without the training data (for generate/interpolate): a tiny stand-in set."""
        from minigan.data.folder import ImageSet

        config.data = None
        size = config.image_size
        k = meta.get("num_classes", 0)
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_CLASSES or not isinstance(
                meta.get("class_names", []), list):
            raise checkpoint.CheckpointError(f"'{source}' has malformed class metadata (num_classes {k!r}); "
                                             "use another checkpoint.")
        n = max(2, k)
        stand_in = ImageSet(images=np.zeros((n, size, size, 3), np.uint8),
                            labels=np.arange(n) % k if k else None,
                            class_names=list(meta.get("class_names", [])), paths=[], skipped=[])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(config, dataset=stand_in)


# -- bounded checkpoint loading (issue 13) ------------------------------------------------------------------
_SAMPLING_ENTRIES = ("G/", "G_ema/")  # plus fixed_z: what generate/interpolate/eval read


def expected_entries(trainer: Trainer, sampling_only: bool = False) -> dict:
    """name -> (dtype, shape) of every array a checkpoint of ``trainer``'s model holds (from a fresh state)."""
    arrays, _ = trainer.state()
    return {name: (a.dtype, a.shape) for name, a in arrays.items()
            if not sampling_only or name == "fixed_z" or name.startswith(_SAMPLING_ENTRIES)}


def load_checkpoint(path, build, sampling_only: bool = False):
    """checkpoint.load bounded by the model ``build(meta)`` makes from its metadata -> (trainer, arrays, meta).

    Nothing but the header is read before the model exists; then only the entries it has, each of its
    dtype and shape (``sampling_only``: G's alone, the rest left unread).
    """
    built = []

    def expect(meta):
        built.append(build(meta))
        return expected_entries(built[0], sampling_only)

    arrays, meta = checkpoint.load(path, expect=expect, skip_unknown=sampling_only)
    return built[0], arrays, meta
