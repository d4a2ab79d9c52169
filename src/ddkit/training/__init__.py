"""Training: the configuration (:mod:`.config`), the Python API of ``ddkit train`` (:mod:`.api`),
the loop (:mod:`.trainer`) and what it needs — the run folder (:mod:`.rundir`), checkpoints
(:mod:`.checkpoint`), objectives, processes (:mod:`.distributed`), EMA, precision, stopping, the
reports — and loading a trained run (:mod:`.load`)."""

from .api import (
    CLASSIFIER_DEFAULTS,
    OPTIONS_BY_NAME,
    RESUME_MAY_CHANGE,
    TRAIN_OPTIONS,
    Option,
    ResumeConflict,
    classifier_run_config,
    run_config,
    train,
    train_classifier,
)
from .checkpoint import latest_checkpoint, list_checkpoints, load_matching
from .config import DataConfig, DiffusionConfig, RunConfig, TrainConfig
from .distributed import DistContext, ShardedBatches, init_distributed
from .ema import EMA
from .load import load, load_classifier, load_weak_model
from .objectives import ClassifierObjective, DiffusionObjective
from .rundir import RunDir, RunLock, RunLockedError
from .stops import NonFiniteLossError, TrainingInterrupted
from .trainer import Trainer, learning_rate

__all__ = [
    "CLASSIFIER_DEFAULTS",
    "OPTIONS_BY_NAME",
    "RESUME_MAY_CHANGE",
    "TRAIN_OPTIONS",
    "Option",
    "ResumeConflict",
    "classifier_run_config",
    "run_config",
    "train",
    "train_classifier",
    "latest_checkpoint",
    "list_checkpoints",
    "load_matching",
    "DataConfig",
    "DiffusionConfig",
    "RunConfig",
    "TrainConfig",
    "DistContext",
    "ShardedBatches",
    "init_distributed",
    "EMA",
    "load",
    "load_classifier",
    "load_weak_model",
    "ClassifierObjective",
    "DiffusionObjective",
    "RunDir",
    "RunLock",
    "RunLockedError",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "Trainer",
    "learning_rate",
]
