"""Task-aware layer-wise distillation, TED (Liang, Zuo, Zhang, He, Chen, Zhao, "Less is More:
Task-aware Layer-wise Distillation for Language Model Compression", ICML 2023)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from .adapters import check_init, class_head, student_filter, teacher_filter
from .base import Batch, MethodSetup, TwoStageMethod, cross_entropy, upcast


class TED(TwoStageMethod):
    """TED: align only the task-relevant part of each layer, extracted by task-aware filters.

    Stage 1 "filters" (first ``filter_epochs`` epochs, default round(filter_fraction * total)):
    teacher filters f_t and student filters f_s are trained, each with its own classification head
    (h_t, h_s), while the student itself is not trained (its features are detached):
        sum_k CE(h_t(f_t(T_k)), y) + sum_k CE(h_s(f_s(S_k)), y)
    Stage 2 "distill": heads dropped, teacher filters frozen; the student and f_s are trained with
        CE(z_s, y) + lam * sum_k mean[(f_s(S_k) - f_t(T_k))^2],  lam = 10.

    Choices for conv features (the paper distils transformer layers with linear filters): the filters
    and heads are RID's (:mod:`~infodistill.methods.adapters`), both filters mapping to C_s channels, so
    TED and RID differ only in the objective; a spatial mismatch is bridged by average-pooling both
    maps to the smaller one; in stage 2 the frozen teacher filter runs in eval mode (BatchNorm on
    running statistics, like the frozen teacher).
    """

    name = "ted"
    phases = ("filters", "distill")
    uses_teacher_features = True

    def __init__(
        self,
        setup: MethodSetup,
        *,
        lam: float = 10.0,
        filter_epochs: int | None = None,
        filter_fraction: float = 0.25,
        head_pool: int | None = None,
        adapter_init: str = "pytorch",
    ):
        super().__init__(setup)
        self._set_stages(filter_epochs, filter_fraction, "filter")
        self.lam = float(lam)
        pairs, num_classes, init = self.pairs, self.num_classes, check_init(adapter_init)
        self.teacher_filters = nn.ModuleList(teacher_filter(p.c_t, p.c_s, init) for p in pairs)
        self.teacher_heads = nn.ModuleList(
            class_head(p.c_s, p.size, num_classes, head_pool, init) for p in pairs
        )
        self.student_filters = nn.ModuleList(student_filter(p.c_s, init) for p in pairs)
        self.student_heads = nn.ModuleList(
            class_head(p.c_s, p.size, num_classes, head_pool, init) for p in pairs
        )

    def set_phase(self, step: int, total_steps: int, steps_per_epoch: int = 1) -> None:
        super().set_phase(step, total_steps, steps_per_epoch)
        self.train(self.training)  # the frozen teacher filters in eval mode from stage 2 on

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.phase == "distill":
            self.teacher_filters.eval()
        return self

    def trainable_student(self) -> bool:
        return self.phase == "distill"

    def phase_parameters(self, phase: str | None = None) -> list[nn.Parameter]:
        if self._check_phase_name(phase) == "filters":
            return list(self.parameters())
        return list(self.student_filters.parameters())

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        self._require_phase()
        if self.phase == "filters":
            ce_t, ce_s = 0.0, 0.0
            for k, pair in enumerate(self.pairs):
                s, t = self._maps(batch, pair)
                ft = self.teacher_filters[k](t)
                # detached: stage 1 trains the filters on the current student, not the student
                fs = self.student_filters[k](s.detach())
                ce_t = ce_t + cross_entropy(self.teacher_heads[k](ft), batch.labels)
                ce_s = ce_s + cross_entropy(self.student_heads[k](fs), batch.labels)
            return {"teacher_filter_ce": ce_t, "student_filter_ce": ce_s}
        total = 0.0
        for k, pair in enumerate(self.pairs):
            if not self.pair_active(k):
                continue
            s, t = self._maps(batch, pair)
            with torch.no_grad():
                ft = upcast(self.teacher_filters[k](t))
            total = total + (upcast(self.student_filters[k](s)) - ft).pow(2).mean()
        ce = cross_entropy(batch.student_logits, batch.labels)
        return {"ce": ce, "ted": self.lam * self._no_term(total, batch)}
