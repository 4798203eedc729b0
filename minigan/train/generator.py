"""Sampling: a trained G (its moving average or itself), its z distribution and its image size.

    G = minigan.load("runs/sagan")            # a run folder or a checkpoint file; no data, no D
    images = G.generate(16, seed=0)           # uint8 (16, H, W, 3)
    for batch in G.stream(100_000, seed=0):   # uint8 batches, memory flat in n
        ...
    frames = G.interpolate(points=4, frames=12)

The Trainer samples through the same class (:meth:`Trainer.generator`), so the
grids a run writes and the images ``minigan generate`` writes come from one code path.
"""
from __future__ import annotations

import os

import numpy as np

from minigan import backend, checkpoint
from minigan.imageio import to_uint8
from minigan.models import build
from minigan.tensor import Tensor, no_grad
from minigan.train.config import resolve
from minigan.train.state import OutOfMemory, building, entries_of, memory_for, read_checkpoint

BATCH = 64  # images per forward pass when sampling


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between latent vectors (Shoemake; White 2016 for GANs)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = np.clip(np.dot(a / na, b / nb), -1.0, 1.0)
    omega = np.arccos(cos)
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


class Generator:
    """``module``: G (or its EMA); ``gan``: the GAN it belongs to (z size and distribution, image size)."""

    def __init__(self, module, gan, device: str, step: int = 0, config=None):
        self.module, self.gan, self.device = module, gan, device
        self.step, self.config = step, config

    @property
    def image_size(self) -> int:
        return self.gan.image_size

    @property
    def z_dim(self) -> int:
        return self.gan.z_dim

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path, device: str | None = None, ema: bool = True) -> "Generator":
        """G from a checkpoint (a run folder or the file): the EMA weights when there are any and ``ema``."""
        source = checkpoint.locate(path)
        device = backend.resolve(device)

        def build_g(config, meta):
            with memory_for(building(config, source, batch=False), checkpoint=source):
                gan = build(config.model, image_size=config.image_size, z_dim=config.z_dim, width=config.width,
                            discriminator=False)
            weights = gan.G.state_dict()
            # a run with an EMA saved its average (an old config may leave the decay to its recipe)
            prefixes = ("G", "G_ema") if ema and resolve(config, device).ema > 0 else ("G",)
            return gan, entries_of({name: a for p in prefixes for name, a in checkpoint.join(p, weights).items()})

        # D, the optimizers' state and anything else are left unread
        gan, arrays, meta, config = read_checkpoint(source, build_g, skip_unknown=True)
        G = gan.G.to(device).eval()
        from minigan.nn import StateDictError

        try:  # G's own weights first, so a damaged G is refused even when its average is what is used
            G.load_state_dict(checkpoint.split(arrays, "G"))
            average = checkpoint.split(arrays, "G_ema")
            if ema and average:
                G.load_state_dict(average)
        except (StateDictError, ValueError) as exc:
            raise checkpoint.CheckpointError(
                f"'{source}' does not fit this model (the {config.model} its own config describes: {exc}); "
                "it is damaged or was edited: use another checkpoint.") from exc
        return cls(G, gan, device, step=int(meta["step"]), config=config)

    # -- sampling -------------------------------------------------------------------------------
    def sample_z(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.gan.sample_z(n, rng)

    def images(self, z: np.ndarray, batch: int = BATCH) -> np.ndarray:
        """float32 (N, 3, S, S) in [-1, 1] for latent vectors z (N, z_dim), ``batch`` at a time."""
        return np.concatenate([self._forward(z[i:i + batch]) for i in range(0, len(z), batch)])

    def _forward(self, z: np.ndarray) -> np.ndarray:
        G = self.module
        was_training = G.training
        G.eval()
        try:
            with no_grad():
                out = G(Tensor(backend.to_device(z, self.device))).numpy()
        finally:
            G.train(was_training)
        return out if self.gan.tanh_output else np.clip(out, -1.0, 1.0)

    def stream(self, n: int, seed: int = 0, batch: int = BATCH):
        """uint8 batches (b, H, W, 3), n images in all: z is drawn batch by batch from one stream, so the
        images are those of ``generate(n, seed)``, and memory does not grow with n."""
        rng = np.random.default_rng(seed)
        for start in range(0, n, batch):
            with memory_for(f"generating a batch of {batch} {self.image_size}x{self.image_size} images"):
                images = to_uint8(self._forward(self.sample_z(min(batch, n - start), rng)))
            yield images

    def generate(self, n: int, seed: int = 0, batch: int = BATCH) -> np.ndarray:
        """n images as uint8 (n, H, W, 3); the same seed gives the same images."""
        return np.concatenate(list(self.stream(n, seed, batch)))

    def interpolate(self, points: int = 4, frames: int = 12, seed: int = 0) -> np.ndarray:
        """A closed latent walk: ``points`` key points, ``frames`` slerp steps between two; uint8 frames."""
        keys = self.sample_z(points, np.random.default_rng(seed)).astype(np.float64)
        keys = np.concatenate([keys, keys[:1]])
        z = [slerp(keys[i], keys[i + 1], f / frames) for i in range(points) for f in range(frames)]
        return to_uint8(self.images(np.asarray(z, dtype=np.float32)))


def load(path: str | os.PathLike, device: str | None = None, ema: bool = True) -> Generator:
    """``minigan.load``: the Generator of a run folder or checkpoint file."""
    return Generator.load(path, device=device, ema=ema)


__all__ = ["Generator", "OutOfMemory", "load", "slerp"]
