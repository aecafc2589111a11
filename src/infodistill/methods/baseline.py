"""Baseline: the student trained on the labels alone."""

from __future__ import annotations

from torch import Tensor

from .base import Batch, DistillMethod, cross_entropy


class Baseline(DistillMethod):
    """L = CE(z_s, y). No teacher; layer pairs, if given, are ignored."""

    name = "baseline"

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return {"ce": cross_entropy(batch.student_logits, batch.labels)}
