"""FitNets: hints for thin deep nets (Romero et al., ICLR 2015)."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from .base import Batch, MethodSetup, TwoStageMethod, check_step, cross_entropy, upcast
from .kd import check_kd_hparams, kd_terms


class FitNets(TwoStageMethod):
    """Two-stage FitNets: hint training, then KD.

    Stage ``"hint"`` (the first ``hint_epochs`` epochs, default ``round(hint_fraction * total)``):
        L_hint = hint_weight * sum_k mean[(r_k(S_k) - T_k)^2],
    where S_k is the student's hint layer, T_k the teacher's guided layer and r_k a conv regressor
    (kernel 1 or 3, C_s -> C_t). Only the student up to the hint layer receives gradient (the layers
    after it do not appear in the loss, so their ``grad`` stays None and the optimizer skips them).
    Stage ``"kd"``: the KD loss of :class:`~infodistill.methods.kd.KD` with (tau, alpha); the
    regressors are unused.

    ``one_stage=True`` is NOT the paper's method but the common "hint loss + CE" variant, labelled
    ``fitnets-one-stage``: L = CE(z_s, y) + L_hint every epoch.

    Deviations from the paper, and why: the regressor keeps the spatial size ("same" padding) and a
    spatial mismatch is bridged by average pooling to the smaller map, instead of a kernel
    sized to shrink the map; the hint loss is a mean, not (1/2) * sum, so its scale does not depend on
    the layer size; stage 2 is standard KD with fixed weights, not the paper's annealed lambda.
    """

    name = "fitnets"
    phases = ("hint", "kd")
    uses_teacher_logits = True
    uses_teacher_features = True

    def __init__(
        self,
        setup: MethodSetup,
        *,
        hint_epochs: int | None = None,
        hint_fraction: float = 0.25,
        regressor_kernel: int = 1,
        hint_weight: float = 1.0,
        tau: float = 4.0,
        alpha: float = 0.1,
        one_stage: bool = False,
    ):
        super().__init__(setup)
        if regressor_kernel not in (1, 3):
            raise ValueError(f"regressor_kernel must be 1 or 3, got {regressor_kernel}")
        self._set_stages(hint_epochs, hint_fraction, "hint")
        check_kd_hparams(tau, alpha)
        self.hint_weight, self.tau, self.alpha = float(hint_weight), float(tau), float(alpha)
        self.one_stage = bool(one_stage)
        if self.one_stage:
            self.phases = ("hint+ce",)
            self.phase, self._phase_set = "hint+ce", True
        k = regressor_kernel
        self.regressors = nn.ModuleList(
            nn.Conv2d(p.c_s, p.c_t, kernel_size=k, padding=k // 2) for p in self.pairs
        )

    @property
    def label(self) -> str:
        return "fitnets-one-stage (hint loss + CE variant)" if self.one_stage else "fitnets"

    def stage(self, step: int, total_steps: int, steps_per_epoch: int = 1) -> str:
        """The stage a step belongs to."""
        if self.one_stage:
            check_step(step, total_steps)
            return "hint+ce"
        return super().stage(step, total_steps, steps_per_epoch)

    def hint_loss(self, batch: Batch) -> Tensor:
        total = 0.0
        for k, (pair, regressor) in enumerate(zip(self.pairs, self.regressors, strict=True)):
            if not self.pair_active(k):
                continue
            s, t = self._maps(batch, pair)
            total = total + (upcast(regressor(s)) - upcast(t)).pow(2).mean()
        return self.hint_weight * self._no_term(total, batch)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        self._require_phase()
        if self.phase == "hint+ce":
            return {"ce": cross_entropy(batch.student_logits, batch.labels), "hint": self.hint_loss(batch)}
        if self.phase == "hint":
            return {"hint": self.hint_loss(batch)}
        return kd_terms(batch.student_logits, self._teacher_logits(batch), batch.labels, self.tau, self.alpha)

    def phase_parameters(self, phase: str | None = None) -> list[nn.Parameter]:
        return list(self.regressors.parameters()) if self._check_phase_name(phase) != "kd" else []
