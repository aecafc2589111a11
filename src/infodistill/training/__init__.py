"""Training: typed configs, the shared training loop, checkpoints, and runs built from configs.

``train_teacher(cfg)`` and ``distill(cfg)`` run what the CLI's ``train-teacher`` and ``distill`` run;
``build_distillation(cfg)`` returns the validated ``Fit`` without running it.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, DistillConfig, TeacherTrainConfig, load_config
from .runs import build_distillation, distill, train_teacher
from .trainer import Fit, TrainingError, read_log

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DistillConfig",
    "Fit",
    "TeacherTrainConfig",
    "TrainingError",
    "build_distillation",
    "distill",
    "load_checkpoint",
    "load_config",
    "read_log",
    "save_checkpoint",
    "train_teacher",
]
