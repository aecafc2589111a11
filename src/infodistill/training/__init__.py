"""Training: typed configs, the shared training loop, checkpoints, and runs built from configs.

``train_teacher(cfg)`` and ``distill(cfg)`` run what the CLI's ``train-teacher`` and ``distill`` run;
``build_distillation(cfg)`` returns the validated ``Fit`` without running it: the trainer's loop
over a ``Distiller`` (student + frozen teacher + method: one step's losses), which a user's own
loop can call as well.

Names are imported on first use, so the CLI (which registers its training commands without them)
starts without importing torch; the PID commands work on an installation without it.
"""

import importlib

_EXPORTS = {
    "CheckpointError": "checkpoint",
    "RunDir": "rundir",
    "TrainingError": "rundir",
    "load_checkpoint": "rundir",
    "read_log": "rundir",
    "save_checkpoint": "rundir",
    "ConfigError": "config",
    "DistillConfig": "config",
    "TeacherTrainConfig": "config",
    "load_config": "config",
    "Distiller": "distiller",
    "Supervised": "task",
    "Task": "task",
    "build_distillation": "runs",
    "distill": "runs",
    "model_from_config": "runs",
    "model_from_run": "runs",
    "train_teacher": "runs",
    "Fit": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
