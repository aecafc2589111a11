"""Variational Information Distillation (Ahn, Hu, Damianou, Lawrence, Dai, CVPR 2019)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .adapters import check_init, conv1x1, initialised
from .base import Batch, DistillMethod, MethodSetup, OptimGroup, cross_entropy, upcast

REGRESSORS = ("conv-relu-conv", "kd-rid")


class VID(DistillMethod):
    """VID: maximise a variational lower bound of I(T; S) with a Gaussian q(t | s).

    Per layer pair k, q(t | s) = N(t; mu_k(s), diag(sigma^2_k)) with an input-independent,
    per-channel variance sigma^2_{k,c} = softplus(alpha_{k,c}) + eps. The loss is the negative log
    likelihood without its constant (1/2) log 2pi:

        L = CE(z_s, y) + lam * sum_k mean_{b,c,h,w} (1/2)[log sigma^2_kc + (t - mu_k(s))^2 / sigma^2_kc]

    Regressor mu_k (``regressor``):
    - "conv-relu-conv" (default, the RepDistiller-style slim adapter): 1x1 conv (C_s->H) -> ReLU ->
      1x1 conv (H->C_t) with ``regressor_layers=2`` (hidden width H = ``hidden``, default C_s: the
      paper leaves it open, and C_s keeps the adapter cheap next to a small student), or a single
      1x1 conv with ``regressor_layers=1``;
    - "kd-rid" ([PID-KD]'s code, its E1 setting): 1x1 conv C_s->2C_t, BN, ReLU, 1x1 conv 2C_t->2C_t,
      BN, ReLU, 1x1 conv 2C_t->C_t, all without biases.
    The variance starts at sigma^2 = ``init_var`` (5, as in [VID]), i.e. alpha = log(exp(init_var - eps) - 1),
    or, with ``alpha_init`` given, at alpha = alpha_init (kd-rid: alpha = 5, eps = 1e-3, so
    sigma^2 = softplus(5) + 1e-3 = 5.0077). The alphas are registered parameters, so they reach the
    optimizer and the checkpoint (a known bug of another implementation leaves them out).

    Optimisation as in the reference code: regressors and variances share the student's learning
    rate and schedule and are clipped in one norm with the student's gradients (:meth:`optim_groups`);
    ``adapter_init="reference"`` starts the regressor from kd-rid's Kaiming-uniform fan_out weights
    (``adapters.reference_init``; default "pytorch", PyTorch's own).

    Deviations/choices: a spatial mismatch is bridged by average-pooling both maps to the smaller one
    before mu; lam defaults to 1 (the class default; E1 runs the paper's lam = 100).
    """

    name = "vid"
    uses_teacher_features = True

    def __init__(
        self,
        setup: MethodSetup,
        *,
        lam: float = 1.0,
        init_var: float = 5.0,
        alpha_init: float | None = None,
        eps: float = 1e-5,
        regressor: str = "conv-relu-conv",
        regressor_layers: int = 2,
        hidden: int | None = None,
        adapter_init: str = "pytorch",
    ):
        super().__init__(setup)
        if regressor not in REGRESSORS:
            raise ValueError(f"regressor must be one of {REGRESSORS}, got {regressor!r}")
        if regressor_layers not in (1, 2):
            raise ValueError(f"regressor_layers must be 1 or 2, got {regressor_layers}")
        if not eps > 0 or (alpha_init is None and not init_var > eps):
            raise ValueError(f"need init_var > eps > 0, got init_var={init_var}, eps={eps}")
        self.lam, self.eps = float(lam), float(eps)
        init = check_init(adapter_init)
        self.regressors = nn.ModuleList(
            initialised(self._regressor(p.c_s, p.c_t, regressor, regressor_layers, hidden or p.c_s), init)
            for p in self.pairs
        )
        alpha0 = math.log(math.expm1(init_var - eps)) if alpha_init is None else float(alpha_init)
        self.alphas = nn.ParameterList(nn.Parameter(torch.full((p.c_t,), alpha0)) for p in self.pairs)

    @staticmethod
    def _regressor(c_s: int, c_t: int, kind: str, layers: int, hidden: int) -> nn.Module:
        if kind == "kd-rid":
            h = 2 * c_t
            return nn.Sequential(
                conv1x1(c_s, h, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
                conv1x1(h, h, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
                conv1x1(h, c_t, bias=False),
            )  # fmt: skip
        if layers == 1:
            return conv1x1(c_s, c_t)
        return nn.Sequential(conv1x1(c_s, hidden), nn.ReLU(), conv1x1(hidden, c_t))

    def optim_groups(self) -> list[OptimGroup]:
        """Regressors and variances in one group with the student, clipped in one norm with it:
        the reference code trains all three with one optimiser."""
        return [OptimGroup("regressors", tuple(self.parameters()), clip_with_student=True)]

    def variances(self) -> list[Tensor]:
        """sigma^2_k per pair, shape (C_t,)."""
        return [F.softplus(a) + self.eps for a in self.alphas]

    def nll(self, mu: Tensor, var: Tensor, t: Tensor) -> Tensor:
        """mean over batch, channels, positions of (1/2)[log var + (t - mu)^2 / var]; var is (C,)."""
        # Every channel has the same number of entries, so the mean of log var over (b, c, h, w)
        # is its mean over channels; 1/var is broadcast once instead of dividing the whole map.
        sq = (upcast(t) - upcast(mu)).pow(2) * var.reciprocal().view(1, -1, 1, 1)
        return 0.5 * (var.log().mean() + sq.mean())

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        total = 0.0
        for k, (pair, regressor, var) in enumerate(
            zip(self.pairs, self.regressors, self.variances(), strict=True)
        ):
            if not self.pair_active(k):
                continue
            s, t = self._maps(batch, pair)
            total = total + self.nll(regressor(s), var, t)
        ce = cross_entropy(batch.student_logits, batch.labels)
        return {"ce": ce, "vid": self.lam * self._no_term(total, batch)}
