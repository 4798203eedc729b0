"""A whole training run (:class:`Run`): folder in, run folder out; locked, resumable, interruptible,
self-healing. The iteration itself is the :class:`~minigan.train.trainer.Trainer`'s.

* One training per folder: an exclusive ``flock`` on ``RUN/.lock`` is held for
  the whole run (the kernel drops it when the process dies, even by SIGKILL);
  a second train or resume on the folder is one RunError naming the holder's PID.
  Stale checkpoint temporaries are removed only under the lock. Reading a run
  (generate, interpolate, eval) takes no lock: checkpoints are replaced atomically.
* Checkpoints every ``checkpoint_every`` steps (atomic), and at the end.
* ``resume=True`` continues from the run's checkpoint exactly where it
  stopped (the log is cut back to the checkpoint's step); without a checkpoint
  it is an error, and a fresh run never writes into a folder that holds a log.
* Ctrl-C / SIGTERM finish the current step, save a checkpoint and stop
  (a second Ctrl-C stops at once, still never tearing a checkpoint).
* ``minutes`` (a time budget) is resolved into the step count when a run
  starts from step 0: a few steps are timed and then undone (the step-0
  checkpoint is reloaded, so the run is the one ``--iters N`` would train), and
  ``iters`` (and ``lr_decay``, in proportion) are fixed in the config, its
  checkpoints and config.json. The count is looked at once more, from the pace
  of the run's own steps, just before the learning rates start to fall (half
  way without a decay), while the run is still the one the new count would
  train. A resume keeps the count it finds.
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
import dataclasses
import errno
import fcntl
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np

from minigan import backend, checkpoint
from minigan.train import outputs
from minigan.train.config import ConfigError, TrainConfig, resolve
from minigan.train.generator import Generator
from minigan.train.state import OutOfMemory, building, memory_for, read_checkpoint
from minigan.train.trainer import Trainer, TrainingDiverged

LOCK_NAME = ".lock"
LOG_NAME = "log.csv"
# options a resume takes from the command line; every other value is the checkpoint's
RESUME_OVERRIDES = ("iters", "sample_every", "checkpoint_every", "eval_every")


#: a time budget's calibration: steps run untimed first (numba compiles, buffers and caches fill), then
#: steps are timed until there are at least BUDGET_TIMED and BUDGET_SECONDS have passed, or
#: BUDGET_MAX_TIMED steps, or the timed steps have used BUDGET_SHARE of the budget (with at least 2 timed)
BUDGET_WARMUP = 3
BUDGET_TIMED = 10
BUDGET_SECONDS = 1.5
BUDGET_MAX_TIMED = 100
BUDGET_SHARE = 0.05
#: a budget's step count is rounded down to a multiple of this (when it buys at least two of them)
BUDGET_ROUND = 100


#: the count is looked at again (:meth:`Run._check_budget`) only after at least this many of the run's own steps
BUDGET_CHECK_AFTER = 50


@dataclasses.dataclass
class _Budget:
    """A time budget a run is keeping: ``seconds`` from ``started`` (time.perf_counter), at most ``most`` steps,
    ``decay`` the command's --lr-decay (for ``most``), and the step ``check_at`` where the count is looked at again."""

    seconds: float
    started: float
    most: int
    decay: int
    check_at: int


def scaled_decay(decay: int, steps: int, most: int) -> int:
    """--lr-decay for a count of ``steps`` where the command gave ``decay`` for ``most``: in proportion, at least 1
    (0 stays 0)."""
    return max(1, round(decay * steps / most)) if decay and most else decay


def _decay_note(decay: int) -> str:
    """The budget's log lines' words for a decay over ``decay`` steps ('' for none)."""
    return f", learning rates falling over the last {decay:,}" if decay else ""


def steps_within(budget_s: float, spent_s: float, step_s: float, most: int) -> int:
    """How many steps of ``step_s`` seconds fit in what is left of ``budget_s`` after ``spent_s``: rounded down
    to a multiple of BUDGET_ROUND when that leaves at least two of them, never under 1 (unless ``most`` is 0),
    never over ``most``."""
    fit = int(max(0.0, budget_s - spent_s) / max(step_s, 1e-9))
    if fit >= 2 * BUDGET_ROUND:
        fit -= fit % BUDGET_ROUND
    return min(most, max(1, fit))


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


class FolderLock:
    """An exclusive ``flock`` on ``FOLDER/.lock`` while the block runs; the file holds the holder's PID."""

    def __init__(self, folder: str):
        self.folder, self.path, self.fd = folder, os.path.join(folder, LOCK_NAME), None

    def __enter__(self) -> "FolderLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunError(f"'{self.folder}' is in use by another training (PID {holder}): let it finish or "
                               "stop it first, or choose another --out.") from exc
            raise RunError(f"cannot lock the output folder '{self.folder}' ({exc.strerror}): "
                           "choose another --out.") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _remove_stale_temporaries(out: str) -> None:
    """Delete checkpoint temporaries left by a process killed while saving (each one is model-sized).
    Called only under the folder's lock: no live training is writing one."""
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

    # signal handlers can only be set from the main thread; a run in another thread keeps Python's
    old = ({s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
           if threading.current_thread() is threading.main_thread() else {})
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Run:
    """A training run in a folder: ``options`` are resolved (or, on resume, read from the checkpoint), the
    folder is locked, and :meth:`train` loops the Trainer with checkpoints, signals, logs and figures.

    After :meth:`train`: ``trainer`` (the state), ``config`` (the resolved config), ``step``, and
    :meth:`generator` for sampling.
    """

    def __init__(self, options: TrainConfig, resume: bool = False, progress: bool = True, log=print):
        self.options, self.resume, self.progress, self.log = options, resume, progress, log
        self.trainer: Trainer | None = None
        self.resumed = False
        self._budget: _Budget | None = None  # a time budget this process resolved, until its second look

    @property
    def config(self) -> TrainConfig:
        return self.trainer.config

    @property
    def step(self) -> int:
        return self.trainer.step_count

    @property
    def folder(self) -> str:
        return self.config.out

    def generator(self) -> Generator:
        return self.trainer.generator()

    # -- starting ------------------------------------------------------------------------------
    def train(self) -> "Run":
        config = resolve(self.options, backend.resolve(self.options.device))
        out = config.out
        _check_writable(out)
        with FolderLock(out):
            self._check_folder(out)
            _remove_stale_temporaries(out)
            self.trainer = self._resume(config) if self.resume else self._fresh(config)
            self.resumed = self.resume
            try:
                self._loop()
            except OSError as exc:  # a sample, log or figure that cannot be written (disk full, folder removed)
                raise RunError(f"could not write to the output folder '{out}' ({exc.strerror or exc}); its last "
                               "checkpoint is intact: free some disk space, then continue with --resume.") from exc
            except OutOfMemory:
                raise
            except MemoryError as exc:
                c = self.config
                fix = (f"this run's configuration (from its checkpoint '{checkpoint.in_run(out)}') needs more "
                       "memory than this device has: resume it on a bigger device" if self.resumed else
                       "use a smaller --batch, --width or --image-size")
                raise OutOfMemory(f"out of memory at step {self.step + 1} of training the {c.model} (batch "
                                  f"{c.batch}, width {c.width}, {c.image_size}x{c.image_size}): {fix}.") from exc
        return self

    def _check_folder(self, out: str) -> None:
        has_checkpoint = checkpoint.find_in_run(out) is not None
        if has_checkpoint and not self.resume:
            raise RunError(f"'{out}' already holds a run ({checkpoint.FILENAME}): pass --resume to continue it, "
                           "or choose another --out.")
        if self.resume and not has_checkpoint:
            raise RunError(f"'{out}' has no checkpoint to resume ({checkpoint.FILENAME}): run the same command "
                           "without --resume to start a fresh run there.")
        if not self.resume and os.path.exists(os.path.join(out, LOG_NAME)):
            raise RunError(f"'{out}' holds the {LOG_NAME} of an earlier run but no checkpoint to continue from: "
                           "choose another --out, or delete that folder to start again.")

    def _fresh(self, config: TrainConfig) -> Trainer:
        with memory_for(building(config), fix="use a smaller --batch, --width or --image-size"):
            return Trainer(config)

    def _resume(self, options: TrainConfig) -> Trainer:
        path = checkpoint.locate(options.out)  # its checkpoint.safetensors, else a legacy checkpoint.npz

        def build(saved, meta):
            if saved.model != options.model:
                raise RunError(f"'{options.out}' holds a {saved.model} run, not {options.model}: resume it with "
                               f"--model {saved.model}, or choose another --out.")
            changes = {key: getattr(options, key) for key in RESUME_OVERRIDES}
            if saved.minutes > 0 and options.minutes > 0:  # its budget was fixed as steps when it started
                del changes["iters"]
                if options.iters != saved.iters:
                    self.log(f"this run's time budget fixed it at {saved.iters:,} steps when it started; pass "
                             f"--minutes 0 --iters N to train to another count")
            elif saved.minutes > 0:  # --minutes 0: the command's --iters is the count from now on
                changes["minutes"] = 0.0
            elif options.minutes > 0:
                self.log(f"--minutes is resolved when a run starts; this resumed run trains to --iters "
                         f"{options.iters}")
            if self.options.data is not None:  # the folder may have moved; the sampler checks it is the same set
                changes["data"] = self.options.data
            config = resolve(dataclasses.replace(saved, out=options.out, **changes), options.device)
            with memory_for(building(config, path), checkpoint=path):
                trainer = Trainer(config)
            return trainer, trainer.expected_entries()

        trainer, arrays, meta, _ = read_checkpoint(path, build)
        try:
            trainer.load_state(arrays, meta, source=path)
        except ValueError as exc:  # e.g. the sampler's state is for another data set; the message says so
            if isinstance(exc, checkpoint.CheckpointError):
                raise
            raise RunError(f"cannot resume from '{path}': {exc}") from exc
        return trainer

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        out = self.config.out
        losses = outputs.CsvLog(os.path.join(out, LOG_NAME))
        metrics = outputs.CsvLog(os.path.join(out, "metrics.csv"))
        try:
            self._train_logging_to(losses, metrics)
        finally:  # the logs' append handles, however the loop ends (done, Ctrl-C, diverged, disk full)
            losses.close()
            metrics.close()

    def _train_logging_to(self, losses: outputs.CsvLog, metrics: outputs.CsvLog) -> None:
        trainer, log = self.trainer, self.log
        out = self.config.out
        if self.resumed:
            losses.truncate_after(trainer.step_count)
            metrics.truncate_after(trainer.step_count)
            log(f"resuming {self.config.model} from step {trainer.step_count} in '{out}'")
        else:
            outputs.save_mean_image(out, trainer.data.images)
            self._save_checkpoint()  # step 0: the first rollback target
        # (a run stopped while timing resumes at 0; --iters 0 has no step to time)
        if self.config.minutes > 0 and trainer.step_count == 0 and self.config.iters > 0:
            self._fit_budget()
        c = self.config
        outputs.write_config(out, c.to_dict())

        bar = _progress_bar(c.iters, trainer.step_count, self.progress)
        retries = 0
        last_saved = trainer.step_count  # a resumed run's checkpoint, or the step-0 one just written
        started, paced = time.time(), (time.perf_counter(), trainer.step_count)
        with _stop_requests() as stop:
            try:
                while trainer.step_count < c.iters and not stop["stop"]:
                    if self._budget is not None and trainer.step_count == self._budget.check_at:
                        # in tqdm's external_write_mode the bar is cleared from the terminal and drawn again
                        # after: a line printed while it is up would start where the bar's text ends
                        with bar.external_write_mode():
                            self._check_budget(*paced)
                        c = self.config
                        bar.total = c.iters
                        bar.refresh()
                    stats = trainer.step()
                    problem = _divergence(trainer, stats)
                    if problem:
                        retries += 1
                        with bar.external_write_mode():  # the same for its warning
                            self._roll_back(retries, problem)
                        # rows logged after the checkpoint belong to the abandoned attempt
                        losses.truncate_after(trainer.step_count)
                        metrics.truncate_after(trainer.step_count)
                        continue
                    stats["time"] = round(time.time() - started, 3)
                    losses.append(stats)
                    step = trainer.step_count
                    bar.update(1)
                    bar.set_postfix({k: f"{stats[k]:.3f}" for k in trainer.loss.shown if k in stats}, refresh=False)
                    if step % c.sample_every == 0:
                        outputs.save_samples(out, step, trainer.generate(trainer.fixed_z))
                    if c.eval_every and step % c.eval_every == 0:
                        self._evaluate(metrics)
                    if step % c.checkpoint_every == 0:
                        losses.flush()
                        metrics.flush()
                        self._save_checkpoint()
                        last_saved, retries = step, 0
            except KeyboardInterrupt:
                stop["stop"] = True  # a second Ctrl-C mid-step: the last checkpoint stays the resume point
                bar.close()
                log(f"interrupted after step {trainer.step_count}; continue from the last checkpoint "
                    f"(step {last_saved}) with --resume")
                raise
        bar.close()
        losses.flush()
        metrics.flush()
        self._save_checkpoint()
        self._final_figures(losses, metrics)
        if stop["stop"] and trainer.step_count < c.iters:
            log(f"stopped at step {trainer.step_count}; checkpoint saved to '{checkpoint.in_run(out)}'. "
                "Continue with --resume.")
            raise KeyboardInterrupt

    def _save_checkpoint(self) -> None:
        arrays, meta = self.trainer.state()
        checkpoint.save(checkpoint.in_run(self.config.out), arrays, meta)

    def _reload_checkpoint(self) -> None:
        """The trainer back at the run's last checkpoint (its config stays the trainer's)."""
        trainer = self.trainer
        path = checkpoint.locate(self.config.out)  # a run resumed from a legacy checkpoint.npz may not have saved yet
        _, arrays, meta, _ = read_checkpoint(path, lambda config, meta: (trainer, trainer.expected_entries()))
        trainer.load_state(arrays, meta, source=path)

    def _fit_budget(self) -> None:
        """Resolve ``minutes`` into ``iters`` (and ``lr_decay``, in proportion) at step 0; :meth:`_check_budget`
        looks at the count once more later.

        Steps are run (BUDGET_WARMUP untimed, then timed) and undone by reloading the step-0 checkpoint;
        their time counts against the budget. The step-0 checkpoint is then written again with the new
        count, so a run killed before its next checkpoint resumes with it too.
        """
        trainer, c = self.trainer, self.config
        budget = 60.0 * c.minutes
        started = time.perf_counter()
        for _ in range(BUDGET_WARMUP):
            trainer.step()
        timed, timing = 0, time.perf_counter()
        while True:
            trainer.step()
            timed += 1
            now = time.perf_counter()
            # (the share counts the timed steps only: a first run's warm-up holds numba's compilation, 10 s or more)
            if timed >= BUDGET_MAX_TIMED or (timed >= 2 and now - timing >= BUDGET_SHARE * budget) or (
                    timed >= BUDGET_TIMED and now - timing >= BUDGET_SECONDS):
                break
        step_s = (now - timing) / timed
        self._reload_checkpoint()
        steps = steps_within(budget, time.perf_counter() - started, step_s, c.iters)
        decay = scaled_decay(c.lr_decay, steps, c.iters)
        trainer.config = dataclasses.replace(c, iters=steps, lr_decay=decay)
        self._save_checkpoint()
        short = f" (--minutes 0 trains all {c.iters:,})" if steps < c.iters else ""
        self.log(f"time budget {c.minutes:g} min: {steps:,} of at most {c.iters:,} steps{_decay_note(decay)} "
                 f"({step_s * 1e3:.0f} ms a step, timed over {timed} steps){short}")
        # looked at again where the rates start to fall (half way without a decay), if the run has paced itself by
        # then; not when the instance noise anneals over the count: the steps before would change with it
        check_at = steps - decay if decay else steps // 2
        if check_at >= BUDGET_CHECK_AFTER and not (c.instance_noise > 0 and not c.noise_anneal):
            self._budget = _Budget(budget, started, c.iters, c.lr_decay, check_at)

    def _check_budget(self, since: float, since_step: int) -> None:
        """The budget's second look, at ``check_at``, before any step the new count would train differently: the
        count is what the run's own pace (its steps since ``since_step``, sampling and checkpoints included) buys
        in what is left of the budget, at most the command's --iters; the decay keeps its share of the count and
        starts here at the earliest. A count that moves is logged and written to config.json (the checkpoints
        take it from the next one on)."""
        budget, trainer, c = self._budget, self.trainer, self.config
        self._budget = None
        now, done = time.perf_counter(), trainer.step_count
        step_s = (now - since) / max(1, done - since_step)
        steps = done + steps_within(budget.seconds, now - budget.started, step_s, budget.most - done)
        decay = min(scaled_decay(budget.decay, steps, budget.most), steps - done)  # (0 stays 0)
        if (steps, decay) == (c.iters, c.lr_decay):
            return
        trainer.config = dataclasses.replace(c, iters=steps, lr_decay=decay)
        outputs.write_config(c.out, trainer.config.to_dict())
        self.log(f"time budget {c.minutes:g} min: {steps:,} steps, not {c.iters:,}{_decay_note(decay)} "
                 f"({step_s * 1e3:.0f} ms a step over the last {done - since_step:,})")

    def _roll_back(self, retries: int, problem: str) -> None:
        trainer, c = self.trainer, self.config
        if retries > c.max_retries:
            raise TrainingDiverged(
                f"training diverged in '{c.out}': {problem}, still after {c.max_retries} rollbacks to its last "
                "checkpoint; lower the learning rates (--lr-d/--lr-g) or use --recipe small-data.")
        self._reload_checkpoint()
        # the same randomness would diverge the same way: draw a fresh stream for the retry
        trainer.rng = np.random.default_rng([c.seed, 1, trainer.step_count, retries])
        warnings.warn(f"{problem}; rolled back to step {trainer.step_count} and retrying "
                      f"({retries}/{c.max_retries})", TrainingWarning, stacklevel=3)

    def _evaluate(self, metrics: outputs.CsvLog) -> dict:
        from minigan.metrics import evaluate

        trainer, c = self.trainer, self.config
        rng = np.random.default_rng([c.seed, 3, trainer.step_count])
        n = min(c.eval_n, max(len(trainer.data.images), 64))
        fake = trainer.generate(trainer.gan.sample_z(n, rng))
        results = evaluate(trainer.data.images, fake, seed=c.seed)
        metrics.append(dict(step=trainer.step_count, **{k: float(v) for k, v in results.items()}))
        return results

    def _final_figures(self, losses, metrics) -> None:
        trainer, c = self.trainer, self.config
        out = c.out
        images = trainer.generate(trainer.fixed_z)
        outputs.save_samples(out, trainer.step_count, images)
        order = np.random.default_rng(c.seed).permutation(len(trainer.data.images))
        outputs.save_real_vs_fake(out, trainer.data.images[order], images)
        outputs.save_progress(out, c.image_size)
        outputs.plot_curves(losses, os.path.join(out, "losses.png"), list(trainer.loss.plotted), f"{c.model} losses")
        if metrics.rows:
            outputs.plot_curves(metrics, os.path.join(out, "metrics.png"),
                                ["swd_mean", "precision", "recall", "ndb_ratio"], f"{c.model} quality")


def run(config: TrainConfig, resume: bool = False, progress: bool = True, log=print) -> Run:
    """Train ``config`` (options, or a resolved config) in its folder; returns the finished Run."""
    return Run(config, resume=resume, progress=progress, log=log).train()


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


class _NoBar:
    total = 0
    def update(self, n=1): pass
    def refresh(self): pass
    def set_postfix(self, *a, **k): pass
    def close(self): pass
    def external_write_mode(self): return contextlib.nullcontext()


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, file=sys.stderr,
                desc="training", smoothing=0.1)


__all__ = ["ConfigError", "FolderLock", "Run", "RunError", "TrainConfig", "TrainingDiverged", "TrainingWarning",
           "run"]
