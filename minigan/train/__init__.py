"""Training: the config, the Trainer (one iteration of any model), and the run loop."""
from minigan.train.config import ConfigError, TrainConfig
from minigan.train.run import RunError, TrainingWarning, prepare, run
from minigan.train.trainer import Trainer, TrainingDiverged

__all__ = ["ConfigError", "RunError", "TrainConfig", "Trainer", "TrainingDiverged", "TrainingWarning",
           "prepare", "run"]
