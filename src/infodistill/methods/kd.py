"""Knowledge distillation on logits [KD] (Hinton, Vinyals, Dean 2015), as used by [FID]
(Stanton et al., NeurIPS 2021)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Batch, DistillMethod, MethodSetup, cross_entropy, upcast


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, tau: float = 1.0) -> Tensor:
    """Batch mean of sum_j softmax(z_t/tau)_j * (-log softmax(z_s/tau)_j), without the tau^2 factor.

    It differs from KL(p_t || p_s) by the teacher's entropy, a constant for the student, so both have
    the same gradient with respect to the student.
    """
    p_t = F.softmax(upcast(teacher_logits) / tau, dim=-1)
    return -(p_t * F.log_softmax(upcast(student_logits) / tau, dim=-1)).sum(-1).mean()


def kd_terms(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, tau: float, alpha: float):
    """{"ce": alpha * CE(z_s, y), "kd": (1 - alpha) * tau^2 * soft CE}. The tau^2 keeps the soft term's
    gradient scale independent of tau (its gradient scales as 1/tau^2) [KD]."""
    return {
        "ce": alpha * cross_entropy(student_logits, labels),
        "kd": (1.0 - alpha) * tau**2 * soft_cross_entropy(student_logits, teacher_logits, tau),
    }


def ensemble_logits(logits: Sequence[Tensor] | Tensor) -> Tensor:
    """Logits of an ensemble's averaged prediction: log((1/m) sum_i softmax(z_i)) [FID].

    Computed as logsumexp_i(log_softmax(z_i)) - log m, which never under/overflows. Accepts a list of
    (B, C) tensors or one (m, B, C) tensor.
    """
    members = list(logits.unbind(0)) if isinstance(logits, Tensor) else list(logits)
    if not members:
        raise ValueError("ensemble_logits needs at least one member's logits")
    shapes = {tuple(z.shape) for z in members}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"ensemble members must all be (B, C) logits of one shape, got {sorted(shapes)}")
    log_p = torch.stack([F.log_softmax(upcast(z), dim=-1) for z in members])
    return torch.logsumexp(log_p, dim=0) - math.log(len(members))


def check_kd_hparams(tau: float, alpha: float) -> None:
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


class KD(DistillMethod):
    """Hinton KD.

    L = alpha * CE(z_s, y) + (1 - alpha) * tau^2 * sum_j softmax(z_t/tau)_j * (-log softmax(z_s/tau)_j),
    averaged over the batch. [FID] uses alpha = 0 and tau in {1, 4}; the defaults here (tau = 4,
    alpha = 0.1) are Hinton's "small weight on the hard targets". For an ensemble teacher the trainer
    passes ``ensemble_logits(member_logits)`` as the teacher logits. Layer pairs, if given, are ignored.
    """

    name = "kd"
    uses_teacher_logits = True

    def __init__(
        self,
        setup: MethodSetup,
        *,
        tau: float = 4.0,
        alpha: float = 0.1,
    ):
        super().__init__(setup)
        check_kd_hparams(tau, alpha)
        self.tau, self.alpha = float(tau), float(alpha)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return kd_terms(batch.student_logits, self._teacher_logits(batch), batch.labels, self.tau, self.alpha)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, alpha={self.alpha}"
