"""E3 [PROG]: the presets, the settings, run names and the configs of the runs.

Panigrahi, Liu, Malladi, Risteski, Goel, *Progressive distillation induces an implicit curriculum*
(ICLR 2025). What the report (:mod:`.report`) needs from the experiment lives here, so that it does
not import :mod:`.run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...training.config import DistillConfig, TeacherTrainConfig, from_dict
from ...training.rundir import RunDir

#: the student settings: labels only, KD from the final teacher, progressive from two checkpoints
#: (the transition checkpoint, then the final one: the paper's "2-shot"), progressive from all
SETTINGS = ("labels", "kd", "progressive", "progressive-all")


@dataclass
class ProgressivePreset:
    """Everything an E3 run depends on (recorded in the report).

    The paper's parity sandbox is n = 100, k = 6 with a one-hidden-layer MLP teacher of width 50 000
    and students of width 100-1 000, SGD at batch size 1 on fresh samples (8 M steps). A CPU does
    not get through n^(k-1) ~ 10^10 steps; (n, k) = (40, 5) with a width-1 000 teacher learns in
    ~30 000 steps of batch 32 (measured: docs/e3.md); the width-100 student is 10x narrower (the
    paper's is 50x narrower).
    """

    name: str
    n: int = 40
    k: int = 5
    #: one epoch is one pass over the training set: train_size / batch_size steps
    train_size: int = 32000
    test_size: int = 2000
    data_seed: int = 0
    teacher_hidden: int = 1000
    student_hidden: int = 100
    batch_size: int = 32
    #: plain SGD (no momentum, no weight decay) at a constant learning rate, as the reference code
    lr: float = 0.05
    teacher_epochs: int = 40
    student_epochs: int = 40
    teacher_seed: int = 1000
    #: KD's temperature; alpha = 0 (the reference config's kl_alpha for the parity runs: KL only)
    tau: float = 1.0
    #: the accuracy whose first crossing counts the steps (the reference config's eval_thresholds)
    target_accuracy: float = 0.9
    #: the intermediate checkpoint of "progressive": the first whose test accuracy reaches this
    #: (the start of the teacher's phase transition)
    transition_accuracy: float = 0.6
    #: the premise of every claim: the final teacher reaches this test accuracy
    teacher_premise: float = 0.95
    #: equal-width bins of the teacher's p(y = 1 | x) for the information measures
    pid_bins: int = 8
    #: fresh inputs the checkpoints are measured on (their own draw, seed data_seed + 1): at 20 000
    #: the plug-in bias of I(o; x_j) is ~3e-4 bits and the correlation's noise ~0.007
    probe_size: int = 20000
    settings: tuple[str, ...] = SETTINGS
    seeds: tuple[int, ...] = (0, 1, 2)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.train_size // self.batch_size)


PRESETS = {
    # about 7 minutes on 2 shared CPU cores (docs/e3.md)
    "quick": ProgressivePreset(name="quick", settings=("labels", "kd", "progressive")),
    "standard": ProgressivePreset(name="standard", seeds=(0, 1, 2, 3, 4)),
    # the paper's sizes (n = 100, k = 6, width 50 000 -> 1 000): for an accelerator and days, not a CPU
    "paper": ProgressivePreset(
        name="paper",
        n=100,
        k=6,
        train_size=1_000_000,
        teacher_hidden=50_000,
        student_hidden=1_000,
        lr=0.01,
        teacher_epochs=80,
        student_epochs=80,
    ),
}


def data_section(p: ProgressivePreset) -> dict:
    return {
        "name": "sparse-parity",
        "kwargs": {
            "n": p.n,
            "k": p.k,
            "train_size": p.train_size,
            "test_size": p.test_size,
            "seed": p.data_seed,
        },
        "batch_size": p.batch_size,
    }


def _optim(p: ProgressivePreset, epochs: int) -> dict:
    return {"lr": p.lr, "momentum": 0.0, "weight_decay": 0.0, "schedule": "constant", "epochs": epochs}


def _mlp(width: int) -> dict:
    return {"name": "mlp", "kwargs": {"hidden": [width]}}


def teacher_dir(out: Path) -> Path:
    return out / "teacher"


def checkpoint_path(out: Path, epoch: int) -> Path:
    """The teacher's checkpoint after ``epoch`` epochs (kept: ``run.keep_every = 1``)."""
    return RunDir(teacher_dir(out)).checkpoint_dir(epoch)


def teacher_config(p: ProgressivePreset, out: Path) -> TeacherTrainConfig:
    return from_dict(
        TeacherTrainConfig,
        {
            "data": data_section(p),
            "model": _mlp(p.teacher_hidden),
            "optim": _optim(p, p.teacher_epochs),
            "run": {"seed": p.teacher_seed, "out_dir": str(teacher_dir(out)), "keep_every": 1},
        },
    )


def distill_config(p: ProgressivePreset, setting: str, seed: int, out: Path, transition: int | None):
    """The config of one student run. ``transition``: the epoch of the intermediate checkpoint
    (needed by ``progressive`` only). The student follows the teacher's clock (the reference code's
    ``ckpt_multiplier = 1``): it learns from checkpoint e during the epochs the teacher spent
    reaching it."""
    run_out = out / run_name(setting, seed)
    final = str(checkpoint_path(out, p.teacher_epochs))
    method: dict
    checkpoints = [final]
    if setting == "labels":
        method = {"name": "baseline"}
    elif setting == "kd":
        method = {"name": "kd", "params": {"tau": p.tau, "alpha": 0.0}}
    elif setting == "progressive":
        if transition is None or not 1 <= transition < p.teacher_epochs:
            raise ValueError(
                f"progressive needs a transition epoch in 1..{p.teacher_epochs - 1}, got {transition}"
            )
        checkpoints = [str(checkpoint_path(out, transition)), final]
        method = {"name": "progressive", "params": {"tau": p.tau, "alpha": 0.0, "milestones": [transition]}}
    elif setting == "progressive-all":
        epochs = range(1, p.teacher_epochs + 1)
        checkpoints = [str(checkpoint_path(out, e)) for e in epochs]
        milestones = list(range(1, p.teacher_epochs))
        method = {"name": "progressive", "params": {"tau": p.tau, "alpha": 0.0, "milestones": milestones}}
    else:
        raise ValueError(f"unknown E3 setting {setting!r}; settings: {', '.join(SETTINGS)}")
    return from_dict(
        DistillConfig,
        {
            "data": data_section(p),
            "student": _mlp(p.student_hidden),
            "teacher": {"kind": "trained", "model": _mlp(p.teacher_hidden), "checkpoints": checkpoints},
            "method": method,
            "optim": _optim(p, p.student_epochs),
            "run": {"seed": seed, "out_dir": str(run_out)},
        },
    )


def run_name(setting: str, seed: int) -> str:
    return f"{setting}-s{seed}"


def transition_epoch(accuracies: list[float], threshold: float) -> int | None:
    """The first epoch (1-based) whose accuracy reaches ``threshold`` and is not the last one; None
    when the teacher never gets there before its end (no intermediate checkpoint to learn from)."""
    for epoch, acc in enumerate(accuracies[:-1], start=1):
        if acc >= threshold:
            return epoch
    return None


def steps_to(accuracies: list[float], target: float, steps_per_epoch: int) -> int | None:
    """Training steps until the first evaluation at or above ``target`` (evaluations after each
    epoch); None when no epoch reaches it."""
    for epoch, acc in enumerate(accuracies, start=1):
        if acc >= target:
            return epoch * steps_per_epoch
    return None
