"""Reading a run's checkpoint back, and naming what asked for memory when there is none.

:func:`read_checkpoint` is the one place the training layer reads a checkpoint
(resume, rollback, ``minigan.load``): the header through :func:`minigan.checkpoint.load`,
then its metadata and its run configuration checked (types and ranges, with
errors naming the file and the value) before any model is built from them, and
only the arrays that model needs read, each checked against it first.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from minigan import checkpoint
from minigan.train.config import ConfigError, TrainConfig


class OutOfMemory(MemoryError):
    """Memory ran out; the message says what asked for it and what to change."""


def building(config: TrainConfig, source: str | None = None, batch: bool = True) -> str:
    """What a model build asks memory for, for :func:`memory_for`: 'building the sagan (width 32, ...)'."""
    origin = f" that '{source}' describes" if source is not None else ""
    sizes = f"width {config.width}, z size {config.z_dim}, {config.image_size}x{config.image_size}"
    return f"building the {config.model}{origin} ({sizes}{f', batch {config.batch}' if batch else ''})"


@contextlib.contextmanager
def memory_for(what: str, checkpoint: str | None = None, fix: str = ""):
    """Turn a MemoryError (NumPy's, or CuPy's OutOfMemoryError) inside the block into one OutOfMemory
    sentence: "out of memory WHAT: FIX", the fix naming the checkpoint when its config asked for it."""
    try:
        yield
    except OutOfMemory:
        raise
    except MemoryError as exc:
        if checkpoint is not None:
            fix = (fix or f"its configuration in '{checkpoint}' asks for more memory than this device has: use "
                   "another checkpoint or a device with more memory")
        raise OutOfMemory(f"out of memory {what}: {fix or 'free some memory or use a smaller --batch'}.") from exc


def config_from_meta(meta: dict, source: str) -> TrainConfig:
    """The TrainConfig a checkpoint was written with, validated, or one CheckpointError naming ``source``."""
    try:
        return TrainConfig.from_dict(meta["config"]).validate(source=source)
    except ConfigError as exc:
        message = str(exc) if source in str(exc) else f"cannot use '{source}': {exc}"
        raise checkpoint.CheckpointError(message) from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise checkpoint.CheckpointError(
            f"'{source}' has no usable run configuration ({type(exc).__name__}: {exc}); "
            "use another checkpoint.") from exc


def _check_meta(meta: dict, source: str) -> None:
    """The step, k_t and RNG states are what a Trainer or a Generator will use: refuse bad ones up front."""
    step, k_t = meta.get("step"), meta.get("k_t", 0.0)
    problem = None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        problem = f"its step is {step!r}, not a whole number >= 0"
    elif isinstance(k_t, bool) or not isinstance(k_t, (int, float)) or not (math.isfinite(k_t) and 0 <= k_t <= 1):
        problem = f"its k_t is {k_t!r}, not a number in [0, 1]"
    else:
        for key in ("rng", "init_rng"):
            try:
                np.random.default_rng().bit_generator.state = meta[key]
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                problem = f"its random-generator state {key!r} is missing or malformed ({type(exc).__name__})"
                break
    if problem:
        raise checkpoint.CheckpointError(f"'{source}' has malformed metadata: {problem}; use another checkpoint.")


def entries_of(arrays: dict) -> dict:
    """name -> (dtype, shape) of a state's arrays: what a checkpoint of that state must hold."""
    return {name: (a.dtype, a.shape) for name, a in arrays.items()}


def read_checkpoint(path, build, skip_unknown: bool = False):
    """-> (what ``build`` made, arrays, metadata, the validated config), bounded by what the model needs.

    Only the header is read before ``build(config, meta) -> (made, entries)`` runs on the checked config
    and metadata: ``entries`` (name -> (dtype, shape), from the freshly built state) are then the only
    arrays read, each checked against the header before its data is (``skip_unknown``: others are left
    unread instead of refused). A hostile file can therefore make minigan allocate no more than the model
    its validated config describes.
    """
    source = checkpoint.locate(path)
    made = {}

    def expect(meta):
        config = config_from_meta(meta, source)
        _check_meta(meta, source)
        made["thing"], entries = build(config, meta)
        made["config"] = config
        return entries

    arrays, meta = checkpoint.load(source, expect=expect, skip_unknown=skip_unknown)
    return made["thing"], arrays, meta, made["config"]
