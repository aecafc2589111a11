"""Progressive distillation from the teacher's training trajectory: the student is distilled from a
sequence of teacher checkpoints, earliest first (Jin et al., "Knowledge Distillation via Route
Constrained Optimization", ICCV 2019; Panigrahi et al., "Progressive distillation induces an implicit
curriculum", ICLR 2025)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .base import Batch, DistillMethod, MethodSetup, check_epoch
from .kd import check_kd_hparams, kd_terms


class Progressive(DistillMethod):
    """KD against the currently active teacher checkpoint.

    The method owns the schedule only: ``active_teacher(epoch, total)`` says which of the
    ``num_checkpoints`` checkpoints (index 0 = earliest) teaches during an epoch, and ``set_phase``
    records it in ``self.active``. The trainer loads that checkpoint's weights into the frozen teacher
    before the epoch, so ``batch.teacher_logits`` always come from the active checkpoint. The loss is
    :class:`~infodistill.methods.kd.KD`'s, with (tau, alpha).

    Schedule: by default the run is split evenly, checkpoint i teaching epochs
    [floor(i * total / n), floor((i + 1) * total / n)) (with fewer epochs than checkpoints some are
    skipped); ``milestones`` (n - 1 increasing epochs) gives the switch epochs explicitly, checkpoint
    i teaching from milestones[i - 1]. The papers switch anchors by epoch too (RCO), or by steps.
    """

    name = "progressive"
    uses_teacher_logits = True
    uses_teacher_checkpoints = True

    def __init__(
        self,
        setup: MethodSetup,
        *,
        milestones: Sequence[int] | None = None,
        tau: float = 4.0,
        alpha: float = 0.1,
    ):
        super().__init__(setup)
        n = setup.num_checkpoints
        if n is None:
            raise ValueError("method 'progressive': missing required argument(s) ['num_checkpoints']")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_checkpoints must be an integer >= 1, got {n!r}")
        self.num_checkpoints = n
        if milestones is not None:
            milestones = [int(m) for m in milestones]
            if len(milestones) != self.num_checkpoints - 1 or any(
                b <= a for a, b in zip([0, *milestones], milestones, strict=False)
            ):
                n = self.num_checkpoints - 1
                raise ValueError(f"milestones must be {n} strictly increasing epochs > 0, got {milestones}")
        check_kd_hparams(tau, alpha)
        self.milestones, self.tau, self.alpha = milestones, float(tau), float(alpha)
        self.phases = tuple(f"checkpoint_{i}" for i in range(self.num_checkpoints))
        self.phase, self.active = self.phases[0], 0
        self._phase_set = self.num_checkpoints == 1

    def active_teacher(self, epoch: int, total_epochs: int) -> int:
        """Index (0 = earliest) of the checkpoint that teaches during ``epoch``."""
        check_epoch(epoch, total_epochs)
        if self.milestones is not None:
            return sum(epoch >= m for m in self.milestones)
        return epoch * self.num_checkpoints // total_epochs

    def set_phase(self, step: int, total_steps: int, steps_per_epoch: int = 1) -> None:
        super().set_phase(step, total_steps, steps_per_epoch)
        # Checkpoints change per epoch (the framework loads one before each epoch).
        spe = int(steps_per_epoch)
        self.active = self.active_teacher(step // spe, -(-total_steps // spe))
        self.phase = self.phases[self.active]

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        self._require_phase()
        return kd_terms(batch.student_logits, self._teacher_logits(batch), batch.labels, self.tau, self.alpha)
