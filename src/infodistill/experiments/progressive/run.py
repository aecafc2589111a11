"""E3 [PROG]: does a student learn the sparse parity faster from the teacher's trajectory?

Panigrahi, Liu, Malladi, Risteski, Goel, *Progressive distillation induces an implicit curriculum*
(ICLR 2025). One MLP teacher is trained on the (n, k) sparse parity with every epoch's checkpoint
kept; narrower students are then trained, per seed (each a resumable run directory):

* ``labels``: cross-entropy on the labels only;
* ``kd``: KD (alpha = 0) from the final teacher;
* ``progressive``: KD from the transition checkpoint (the first whose accuracy reaches
  ``transition_accuracy``) for as many epochs as the teacher took to reach it, then from the final
  teacher (the paper's 2-shot progressive distillation);
* ``progressive-all``: KD from checkpoint e during epoch e (every checkpoint in turn).

``run_progressive(preset, out_dir)`` trains the teacher, measures the curriculum in its checkpoints
(:mod:`.curriculum`), runs the students and writes the report (:mod:`.report`).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path

from ...training.config import ConfigError
from ...training.rundir import RunDir
from ...training.runs import distill, train_teacher
from ..common import atomic_write, run_unfinished
from .curriculum import teacher_trajectory
from .presets import (
    PRESETS,
    SETTINGS,
    ProgressivePreset,
    checkpoint_path,
    distill_config,
    run_name,
    steps_to,
    teacher_config,
    teacher_dir,
    transition_epoch,
)
from .report import write_progressive_report

__all__ = [
    "PRESETS",
    "SETTINGS",
    "ProgressivePreset",
    "checkpoint_path",
    "distill_config",
    "run_name",
    "run_progressive",
    "steps_to",
    "teacher_accuracies",
    "teacher_config",
    "transition_epoch",
]


def teacher_accuracies(out: Path) -> list[float]:
    """The teacher's test accuracy after each epoch, from its log."""
    return [r["test"]["accuracy"] for r in RunDir(teacher_dir(out)).read_log() if "test" in r]


def check_preset(p: ProgressivePreset) -> None:
    """Refuse settings that cannot run, before anything trains (ConfigError: one line on the CLI)."""
    unknown = [s for s in p.settings if s not in SETTINGS]
    if unknown:
        raise ConfigError(f"unknown E3 setting(s) {unknown}; settings: {', '.join(SETTINGS)}")
    if not 0.5 < p.target_accuracy <= 1 or not 0.5 < p.transition_accuracy < 1:
        raise ConfigError(
            "target_accuracy must lie in (0.5, 1] and transition_accuracy in (0.5, 1) (chance is 0.5), "
            f"got {p.target_accuracy} and {p.transition_accuracy}"
        )
    if p.k > p.n:
        raise ConfigError(f"the support size k ({p.k}) must be <= n ({p.n})")
    if p.pid_bins < 2:
        raise ConfigError(f"pid_bins must be >= 2, got {p.pid_bins}")
    if p.teacher_epochs < 2 or p.student_epochs < 1:
        raise ConfigError("teacher_epochs must be >= 2 (a trajectory) and student_epochs >= 1")


def run_progressive(preset: ProgressivePreset, out_dir: str | Path, progress: bool = True) -> Path:
    """Run (or finish) every run of the preset and write the report; returns the report path."""
    check_preset(preset)
    out = Path(out_dir)
    teacher = teacher_config(preset, out)
    # The label-only and KD configs are built (and so checked) before anything trains.
    grid = {(s, seed): None for s, seed in itertools.product(preset.settings, preset.seeds)}
    for s, seed in grid:
        if s in ("labels", "kd"):
            distill_config(preset, s, seed, out, None)
    with RunDir(out).locked():
        atomic_write(out / "preset.json", json.dumps(asdict(preset), indent=2))
        run_unfinished([teacher], train_teacher, "E3 teacher", progress)
        accs = teacher_accuracies(out)
        transition = transition_epoch(accs, preset.transition_accuracy)
        path = out / "curriculum.json"
        if path.exists():
            curriculum = {int(e): r for e, r in json.loads(path.read_text()).items()}
        else:
            curriculum = teacher_trajectory(preset, out, list(range(1, len(accs) + 1)))
            atomic_write(path, json.dumps(curriculum, indent=2))
        configs = [
            distill_config(preset, s, seed, out, transition)
            for s, seed in grid
            if s != "progressive" or transition is not None  # no transition: the premise report says so
        ]
        run_unfinished(configs, distill, "E3 students", progress)
        return write_progressive_report(preset, out, accs, transition, curriculum)
