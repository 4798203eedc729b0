"""Training: the config (resolved once), the Trainer (one iteration), the loss families, the Run (folder,
lock, checkpoints, resume, signals, logs) and the Generator (sampling).

The package is also callable, as the Python API's entry point::

    run = minigan.train("icons/", model="sagan", iters=3000, out="runs/icons")
    images = run.generator().generate(16, seed=0)
"""
import sys
import types

from minigan.train.config import ConfigError, TrainConfig, resolve
from minigan.train.generator import Generator, load
from minigan.train.losses import BCELoss, BEGANLoss, HingeLoss, LossFamily, SemiSupervisedLoss
from minigan.train.run import FolderLock, Run, RunError, TrainingWarning, run
from minigan.train.state import OutOfMemory
from minigan.train.trainer import Trainer, TrainingDiverged


def train(data=None, model: str = "sagan", *, resume: bool = False, progress: bool = True, log=print,
          **options) -> Run:
    """Train ``model`` on the images in folder ``data`` (None: the built-in faces); ``options`` are
    TrainConfig's fields (``iters=``, ``out=``, ``batch=``, ``lr_d=``, ...). Returns the finished Run."""
    return run(TrainConfig(data=None if data is None else str(data), model=model, **options),
               resume=resume, progress=progress, log=log)


class _CallablePackage(types.ModuleType):
    """``minigan.train(...)`` calls :func:`train`; ``minigan.train.X`` is still this package's X."""

    def __call__(self, *args, **kwargs) -> Run:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

__all__ = ["BCELoss", "BEGANLoss", "ConfigError", "FolderLock", "Generator", "HingeLoss", "LossFamily",
           "OutOfMemory", "Run", "RunError", "SemiSupervisedLoss", "TrainConfig", "Trainer", "TrainingDiverged",
           "TrainingWarning", "load", "resolve", "run", "train"]
