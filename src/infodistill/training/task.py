"""What the trainer trains: the student, the modules trained beside it, and one step's losses.

The loop (``trainer.Fit``) knows nothing of teachers or methods. It asks its task, before every
epoch, to set up that epoch (:meth:`Task.on_epoch`: a progressive teacher's checkpoint), before
every step to set up that step (:meth:`Task.on_step`: a method's phase, counted in steps) and which
parameters stay fixed in it (:meth:`Task.frozen`), and, per batch, for the named loss terms and
logits (:meth:`Task.step`); with a teacher it also asks for the teacher's logits, for the agreement
and KL metrics. :class:`Supervised` is training on the labels (``train-teacher``);
``distiller.Distiller`` is a distillation step, the same one a user's own loop can call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..methods import OptimGroup


@dataclass
class StepOutput:
    """What a step returns: named loss terms (summed by the trainer), and logits for the metrics."""

    losses: dict[str, torch.Tensor]
    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None = None


class Task:
    """The protocol the trainer consumes; subclasses set ``student`` and implement :meth:`step`."""

    student: nn.Module
    #: modules trained (and checkpointed) beside the student: a method's adapters; None if none
    extra: nn.Module | None = None
    #: whether :meth:`teacher_logits` exists (the fidelity metrics need it)
    has_teacher = False
    #: the teacher never changes during the run, so its test logits are computed once
    teacher_fixed = True

    def on_epoch(self, epoch: int, total_epochs: int) -> None:
        """Called at the start of every 0-based epoch, a resumed one included."""

    def on_step(self, step: int, total_steps: int, steps_per_epoch: int) -> str | None:
        """Called before every optimiser step (0-based over the run); returns the name of the
        step's phase when the task has several (the log counts the steps of each), else None."""
        return None

    def optim_groups(self) -> list[OptimGroup]:
        """What the optimiser trains, by parameter group (learning-rate multiple, schedule,
        clipping): the student first, then the modules of ``extra`` in a group of their own."""
        groups = [OptimGroup("student", tuple(self.student.parameters()))]
        if self.extra is not None and any(True for _ in self.extra.parameters()):
            groups.append(OptimGroup("method", tuple(self.extra.parameters())))
        return groups

    def frozen(self) -> set:
        """Parameters that must not change in the current step (their gradients are dropped)."""
        return set()

    def step(
        self, x: torch.Tensor, y: torch.Tensor, epoch: int, idx: torch.Tensor | None = None
    ) -> StepOutput:
        """Losses of one batch, in training mode under autograd; ``idx`` are the batch's
        training-set indices (for cached teacher outputs)."""
        raise NotImplementedError

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no teacher")


class Supervised(Task):
    """Plain training on the labels: L = CE(model(x), y) (teachers, and ``train-teacher``)."""

    def __init__(self, model: nn.Module):
        self.student = model

    def step(self, x, y, epoch, idx=None) -> StepOutput:
        logits = self.student(x)
        return StepOutput({"ce": F.cross_entropy(logits, y)}, logits)


__all__ = ["StepOutput", "Supervised", "Task"]
