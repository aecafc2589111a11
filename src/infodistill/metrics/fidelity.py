"""Fidelity and generalisation metrics of a student against its teacher [FID, Stanton et al. 2021].

Every metric is computed over a whole evaluation set. ``FidelityAccumulator`` streams batches and
keeps sums (never an average of per-batch averages), so the result is the same for any batching:

* top-1 agreement  = (1/N) Σ_i 1[argmax p_t(x_i) = argmax p_s(x_i)]
* predictive KL    = (1/N) Σ_i KL(p_t(·|x_i) ‖ p_s(·|x_i)), at temperature 1, in nats
* accuracy         = (1/N) Σ_i 1[argmax p_s(x_i) = y_i]
* NLL              = (1/N) Σ_i −log p_s(y_i | x_i), in nats
* ECE              = Σ_b (n_b / N) |acc_b − conf_b| over 10 equal-width confidence bins
  (Guo et al. 2017), confidence = max_j p_s(j | x_i)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

N_BINS = 10


@dataclass
class FidelityAccumulator:
    """Sums of per-example quantities; ``update`` per batch, ``result`` at the end."""

    n_bins: int = N_BINS
    n: int = 0
    correct: float = 0.0
    nll: float = 0.0
    agree: float = 0.0
    kl: float = 0.0
    n_teacher: int = 0
    bin_count: torch.Tensor = field(default=None)  # type: ignore[assignment]
    bin_correct: torch.Tensor = field(default=None)  # type: ignore[assignment]
    bin_conf: torch.Tensor = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        zeros = torch.zeros(self.n_bins, dtype=torch.float64)
        self.bin_count, self.bin_correct, self.bin_conf = zeros.clone(), zeros.clone(), zeros.clone()

    @torch.no_grad()
    def update(self, student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits=None) -> None:
        logp_s = F.log_softmax(student_logits.double(), dim=1)
        pred = logp_s.argmax(dim=1)
        hit = (pred == labels).double()
        self.n += labels.numel()
        self.correct += float(hit.sum())
        self.nll -= float(logp_s.gather(1, labels[:, None]).sum())
        conf = logp_s.max(dim=1).values.exp()
        # Bin b holds confidences in [b/n, (b+1)/n); a confidence of exactly 1 goes to the last bin.
        b = torch.clamp((conf * self.n_bins).long(), max=self.n_bins - 1)
        self.bin_count += torch.bincount(b, minlength=self.n_bins).double()
        self.bin_correct += torch.bincount(b, weights=hit, minlength=self.n_bins)
        self.bin_conf += torch.bincount(b, weights=conf, minlength=self.n_bins)
        if teacher_logits is not None:
            logp_t = F.log_softmax(teacher_logits.double(), dim=1)
            self.n_teacher += labels.numel()
            self.agree += float((logp_t.argmax(dim=1) == pred).double().sum())
            self.kl += float((logp_t.exp() * (logp_t - logp_s)).sum())

    def merge(self, other: FidelityAccumulator) -> FidelityAccumulator:
        """Add another accumulator's sums (e.g. from another process) into this one."""
        for name in ("n", "correct", "nll", "agree", "kl", "n_teacher"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.bin_count += other.bin_count
        self.bin_correct += other.bin_correct
        self.bin_conf += other.bin_conf
        return self

    def result(self) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("no examples were accumulated: the evaluation set is empty")
        out = {
            "accuracy": self.correct / self.n,
            "nll": self.nll / self.n,
            "ece": float((self.bin_correct - self.bin_conf).abs().sum()) / self.n,
            "n": self.n,
        }
        if self.n_teacher:
            out["agreement"] = self.agree / self.n_teacher
            out["kl_teacher_student"] = self.kl / self.n_teacher
        return out


def fidelity_metrics(student_logits, labels, teacher_logits=None, n_bins: int = N_BINS) -> dict[str, float]:
    """All metrics above for full-set logits (N, C) in one call."""
    acc = FidelityAccumulator(n_bins=n_bins)
    acc.update(torch.as_tensor(student_logits), torch.as_tensor(labels), teacher_logits)
    return acc.result()


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) between two feature matrices with examples as rows.

    CKA = ‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F), Xᶜ, Yᶜ column-centred; feature maps are flattened.
    """
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double()
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"linear_cka needs the same examples on both sides, got {x.shape[0]} and {y.shape[0]} rows"
        )
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    num = (y.T @ x).pow(2).sum()
    den = (x.T @ x).norm() * (y.T @ y).norm()
    return float(num / den) if den > 0 else 0.0
