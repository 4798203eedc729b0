"""A whole training run: folder in, run folder out; resumable, interruptible, self-healing.

* Checkpoints every ``checkpoint_every`` steps (atomic), and at the end.
* ``resume=True`` continues from ``RUN/checkpoint.safetensors`` exactly where it
  stopped (the log is cut back to the checkpoint's step).
* Ctrl-C / SIGTERM finish the current step, save a checkpoint and stop
  (a second Ctrl-C stops at once, still never tearing a checkpoint).
* Non-finite losses or weights roll the run back to the last checkpoint and
  retry with fresh randomness; after ``max_retries`` in a row it stops with one
  clear error. Weights are checked every step, not just losses: a NaN weight
  can leave the losses finite (a ReLU maps NaN to 0) while it spreads through
  G, its moving average and the next checkpoint.
* A write that fails (disk full, folder gone) is one RunError/CheckpointError;
  the last checkpoint is never damaged.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import warnings

import numpy as np

from minigan import backend, checkpoint
from minigan.train import outputs
from minigan.train.config import ConfigError, TrainConfig
from minigan.train.trainer import Trainer, TrainingDiverged, expected_entries, load_checkpoint


class RunError(RuntimeError):
    """A run that cannot start or continue; one sentence naming the folder and the fix."""


class TrainingWarning(UserWarning):
    pass


def _check_writable(out: str) -> None:
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as exc:
        raise RunError(f"cannot write to the output folder '{out}' ({exc.strerror}): "
                       "choose another --out.") from exc


def _remove_stale_temporaries(out: str) -> None:
    """Delete checkpoint temporaries left by a process killed while saving (each one is model-sized)."""
    try:
        names = os.listdir(out)
    except OSError:
        return
    for name in names:
        if name.startswith(checkpoint.TEMP_PREFIX):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(out, name))


@contextlib.contextmanager
def _stop_requests():
    """SIGINT/SIGTERM set a flag the loop checks between steps; a second SIGINT interrupts at once."""
    flag = {"stop": False}

    def handler(signum, frame):
        if flag["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["stop"] = True

    if threading_main():
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    else:
        old = {}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def prepare(config: TrainConfig, resume: bool = False) -> tuple[Trainer, bool]:
    """Build the trainer for ``config``; with ``resume`` restore the run folder's checkpoint if present."""
    config.validate()
    out = config.out
    ckpt = checkpoint.find_in_run(out) or checkpoint.in_run(out)  # a legacy checkpoint.npz too
    if os.path.exists(ckpt) and not resume:
        raise RunError(f"'{out}' already holds a run ({checkpoint.FILENAME}): pass --resume to continue it, "
                       "or choose another --out.")
    _check_writable(out)
    _remove_stale_temporaries(out)
    if resume and os.path.exists(ckpt):
        def build(meta):
            saved = Trainer.config_from_checkpoint(meta, ckpt)
            if saved.model != config.model:
                raise RunError(f"'{out}' holds a {saved.model} run, not {config.model}: resume it with "
                               f"--model {saved.model}, or choose another --out.")
            for key in ("iters", "device", "sample_every", "checkpoint_every", "eval_every"):
                setattr(saved, key, getattr(config, key))
            if config.data is not None:  # the folder may have moved since; the sampler checks it is the same set
                saved.data = config.data
            saved.out = out
            return Trainer(saved)

        trainer, arrays, meta = load_checkpoint(ckpt, build)
        try:
            trainer.load_state(arrays, meta, source=ckpt)
        except ValueError as exc:  # e.g. the sampler's state is for another data set; the message says so
            if isinstance(exc, checkpoint.CheckpointError):
                raise
            raise RunError(f"cannot resume from '{ckpt}': {exc}") from exc
        return trainer, True
    return Trainer(config), False


def run(config: TrainConfig, resume: bool = False, progress: bool = True, log=print) -> Trainer:
    trainer, resumed = prepare(config, resume)
    try:
        return _run(trainer, resumed, progress, log)
    except OSError as exc:  # a sample, log or figure that cannot be written (disk full, folder removed)
        out = trainer.config.out
        raise RunError(f"could not write to the output folder '{out}' ({exc.strerror or exc}); its last "
                       "checkpoint is intact: free some disk space, then continue with --resume.") from exc


def _run(trainer: Trainer, resumed: bool, progress: bool, log) -> Trainer:
    c = trainer.config
    out = c.out
    losses = outputs.CsvLog(os.path.join(out, "log.csv"))
    metrics = outputs.CsvLog(os.path.join(out, "metrics.csv"))
    if resumed:
        losses.truncate_after(trainer.step_count)
        metrics.truncate_after(trainer.step_count)
        log(f"resuming {c.model} from step {trainer.step_count} in '{out}'")
    else:
        outputs.save_mean_image(out, trainer.data.images)
        trainer.save_checkpoint()  # step 0: the first rollback target
    outputs.write_config(out, c.to_dict())

    bar = _progress_bar(c.iters, trainer.step_count, progress)
    retries = 0
    last_saved = trainer.step_count  # a resumed run's checkpoint, or the step-0 one just written
    started = time.time()
    with _stop_requests() as stop:
        try:
            while trainer.step_count < c.iters and not stop["stop"]:
                stats = trainer.step()
                problem = _divergence(trainer, stats)
                if problem:
                    retries += 1
                    _roll_back(trainer, retries, problem, log)
                    # rows logged after the checkpoint belong to the abandoned attempt
                    losses.truncate_after(trainer.step_count)
                    metrics.truncate_after(trainer.step_count)
                    continue
                stats["time"] = round(time.time() - started, 3)
                losses.append(stats)
                step = trainer.step_count
                bar.update(1)
                bar.set_postfix(_postfix(stats), refresh=False)
                if step % c.sample_every == 0:
                    outputs.save_samples(out, step, trainer.generate(trainer.fixed_z))
                if c.eval_every and step % c.eval_every == 0:
                    _evaluate(trainer, metrics)
                if step % c.checkpoint_every == 0:
                    _save(trainer, losses, metrics)
                    last_saved, retries = step, 0
        except KeyboardInterrupt:
            stop["stop"] = True  # a second Ctrl-C mid-step: the last checkpoint stays the resume point
            bar.close()
            log(f"interrupted after step {trainer.step_count}; continue from the last checkpoint "
                f"(step {last_saved}) with --resume")
            raise
    bar.close()
    _save(trainer, losses, metrics)
    _final_figures(trainer, losses, metrics)
    if stop["stop"] and trainer.step_count < c.iters:
        log(f"stopped at step {trainer.step_count}; checkpoint saved to '{checkpoint.in_run(out)}'. "
            "Continue with --resume.")
        raise KeyboardInterrupt
    return trainer


def _save(trainer, losses, metrics):
    losses.flush()
    metrics.flush()
    trainer.save_checkpoint()


def _weights_finite(trainer: Trainer) -> bool:
    """Whether every parameter and buffer of G and D is finite (G's moving average follows G).

    One float64 sum per array and a single device sync: a NaN or inf anywhere makes the total non-finite.
    """
    sums = []
    for module in (trainer.G, trainer.D):
        for p in module.parameters():
            sums.append(p.data.sum(dtype=np.float64))
        for _, b in module.named_buffers():
            if b.dtype.kind == "f":
                sums.append(b.sum(dtype=np.float64))
    if not sums:
        return True
    xp = backend.array_module(sums[0])
    return bool(xp.isfinite(xp.stack(sums).sum()))


def _divergence(trainer: Trainer, stats: dict) -> str:
    """What went non-finite in the last step ('' when nothing did)."""
    if not Trainer.losses_finite(stats):
        return (f"non-finite loss at step {stats.get('step')} (loss_d={stats.get('loss_d')}, "
                f"loss_g={stats.get('loss_g')})")
    if not _weights_finite(trainer):
        return f"non-finite weights after step {stats.get('step')} (the losses were finite)"
    return ""


def _roll_back(trainer: Trainer, retries: int, problem: str, log) -> None:
    c = trainer.config
    if retries > c.max_retries:
        raise TrainingDiverged(
            f"training diverged in '{c.out}': {problem}, still after {c.max_retries} rollbacks to its last "
            "checkpoint; lower the learning rates (--lr-d/--lr-g) or use --recipe small-data.")
    path = checkpoint.locate(c.out)  # (a run resumed from a legacy checkpoint.npz may not have saved yet)
    arrays, meta = checkpoint.load(path, expect=lambda meta: expected_entries(trainer))
    trainer.load_state(arrays, meta, source=path)
    # the same randomness would diverge the same way: draw a fresh stream for the retry
    trainer.rng = np.random.default_rng([c.seed, 1, trainer.step_count, retries])
    warnings.warn(f"{problem}; rolled back to step {trainer.step_count} and retrying "
                  f"({retries}/{c.max_retries})", TrainingWarning, stacklevel=2)


def _evaluate(trainer: Trainer, metrics: outputs.CsvLog) -> dict:
    from minigan.metrics import evaluate

    c = trainer.config
    rng = np.random.default_rng([c.seed, 3, trainer.step_count])
    n = min(c.eval_n, max(len(trainer.data.images), 64))
    fake = trainer.generate(trainer.gan.sample_z(n, rng))
    results = evaluate(trainer.data.images, fake, seed=c.seed)
    metrics.append(dict(step=trainer.step_count, **{k: float(v) for k, v in results.items()}))
    return results


def _postfix(stats: dict) -> dict:
    keys = ["loss_d", "loss_g", "k_t", "M_global"]
    return {k: f"{stats[k]:.3f}" for k in keys if k in stats}


def _final_figures(trainer: Trainer, losses, metrics) -> None:
    c, out = trainer.config, trainer.config.out
    images = trainer.generate(trainer.fixed_z)
    outputs.save_samples(out, trainer.step_count, images)
    order = np.random.default_rng(c.seed).permutation(len(trainer.data.images))
    outputs.save_real_vs_fake(out, trainer.data.images[order], images)
    outputs.save_progress(out, c.image_size)
    names = ["loss_d", "loss_g", "k_t", "M_global"] if c.model == "began" else ["loss_d", "loss_g", "D_real", "D_fake"]
    outputs.plot_curves(losses, os.path.join(out, "losses.png"), names, f"{c.model} losses")
    if metrics.rows:
        outputs.plot_curves(metrics, os.path.join(out, "metrics.png"),
                            ["swd_mean", "precision", "recall", "ndb_ratio"], f"{c.model} quality")


class _NoBar:
    def update(self, n=1): pass
    def set_postfix(self, *a, **k): pass
    def close(self): pass


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, file=sys.stderr,
                desc="training", smoothing=0.1)


__all__ = ["ConfigError", "RunError", "TrainConfig", "TrainingDiverged", "TrainingWarning", "prepare", "run"]
