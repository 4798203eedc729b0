"""Batches for training: shuffled epochs, optional flips, exact resume.

The sampler walks a random permutation of the images and draws a new one
when it runs out, so over each epoch every image is seen exactly once; a
batch that straddles two epochs takes the tail of one permutation and the head
of the next. With fewer images than ``batch_size`` (a 3-image folder and batch
5), whole-epoch batches are impossible and it samples with replacement instead,
saying so once.

All randomness (permutations, flips, replacement draws) comes from one NumPy
Generator, and ``state_dict()`` captures it together with the position in the
current permutation, so a run resumed from a checkpoint sees the same batches
it would have seen without stopping.
"""
from __future__ import annotations

import warnings

import numpy as np

from minigan.data.folder import DataWarning
from minigan.imageio import to_float


class BatchSampler:
    """Draw training batches from uint8 images (N, H, W, 3).

    next_batch() -> (float32 (B, 3, H, W) in [-1, 1], int64 labels (B,) or None)
    """

    def __init__(self, images_uint8: np.ndarray, batch_size: int, seed: int = 0,
                 flip: bool = False, labels=None):
        images = np.asarray(images_uint8)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} "
                             f"{images.shape}.")
        if len(images) == 0:
            raise ValueError("cannot sample batches from an empty image set.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
            if labels.shape != (len(images),):
                raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}.")
        self.images = images                          # (N, H, W, 3) uint8
        self.labels = labels                          # (N,) int64 or None
        self.batch_size = int(batch_size)
        self.flip = bool(flip)
        self.rng = np.random.default_rng(seed)
        self.epoch = 0                                # permutations finished so far
        self._perm = self.rng.permutation(len(images))
        self._pos = 0                                 # next index into _perm
        self.with_replacement = len(images) < self.batch_size
        if self.with_replacement:
            warnings.warn(f"only {len(images)} images for batches of {self.batch_size}: "
                          f"sampling with replacement, so batches repeat images; add "
                          f"images or lower the batch size.", DataWarning, stacklevel=2)

    def __len__(self) -> int:
        """Batches per epoch (the last may run into the next epoch)."""
        return -(-len(self.images) // self.batch_size)

    def _next_indices(self) -> np.ndarray:
        """The image indices of the next batch: (B,) int64."""
        n = len(self.images)
        if self.with_replacement:
            return self.rng.integers(0, n, size=self.batch_size)
        take = []
        need = self.batch_size
        while need:
            k = min(need, n - self._pos)
            take.append(self._perm[self._pos:self._pos + k])
            self._pos += k
            need -= k
            if self._pos == n:                        # epoch done: reshuffle
                self._perm = self.rng.permutation(n)
                self._pos = 0
                self.epoch += 1
        return np.concatenate(take)

    def next_batch(self):
        """(float32 (B, 3, H, W) in [-1, 1], int64 (B,) labels or None)."""
        idx = self._next_indices()
        batch = self.images[idx]                      # fancy indexing copies: safe to flip
        if self.flip:
            flip = self.rng.random(len(idx)) < 0.5
            batch[flip] = batch[flip, :, ::-1]        # mirror the W axis of (B, H, W, 3)
        labels = None if self.labels is None else self.labels[idx]
        return to_float(batch), labels

    def state_dict(self) -> dict:
        """Everything needed to continue the exact batch sequence; JSON-serialisable."""
        return {
            "bit_generator": self.rng.bit_generator.state,
            "position": int(self._pos),
            "permutation": [int(i) for i in self._perm],
            "epoch": int(self.epoch),
            "num_images": len(self.images),
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from ``state_dict()`` (the image set must be the same size)."""
        if state["num_images"] != len(self.images):
            raise ValueError(f"sampler state is for {state['num_images']} images but this data "
                             f"set has {len(self.images)}: resume with the same data folder.")
        perm = np.asarray(state["permutation"], dtype=np.int64)
        if perm.shape != (len(self.images),) or not 0 <= state["position"] <= len(perm):
            raise ValueError("sampler state is corrupt: its permutation does not match the data.")
        self.rng.bit_generator.state = state["bit_generator"]
        self._perm = perm
        self._pos = int(state["position"])
        self.epoch = int(state["epoch"])
