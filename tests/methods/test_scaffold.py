"""The scaffold method [SCAF] against a loss worked out by hand on a two-example batch, its
schedules in closed form, and which parameters each term trains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from infodistill.methods import Batch, build_method
from infodistill.methods.scaffold import cosine_cycle


def _constant_guide(method, g: float) -> None:
    """Make the guide output g on every input: last layer's weights 0, its bias logit(g)."""
    last = method.guide[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(math.log(g / (1 - g)))


def _hand_batch():
    # teacher: example 1 prefers class 0, example 2 class 1; labels 0 and 2
    zt = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    # student: softmax (1/4, 1/2, 1/4) and (1/2, 1/4, 1/4); both examples wrong
    zs = torch.tensor([[0.0, math.log(2), 0.0], [math.log(2), 0.0, 0.0]], dtype=torch.float64)
    return zs, zt, torch.tensor([0, 2])


def test_scaffold_loss_by_hand():
    m = build_method(
        "scaffold", num_classes=3, tau_t=1.0, tau_s=1.0, top_k=1, w_ce=0.1, w_scaffold=1.0,
        lam=5.0, lam_min=2.0, budget_max=0.6, budget_min=0.4, max_ce=5.0,
    ).double()  # fmt: skip
    _constant_guide(m, 0.5)
    m.set_phase(0, 10)  # the schedules' starts: lambda = lam_min = 2, budget = budget_max = 0.6
    zs, zt, y = _hand_batch()
    out = m(Batch(labels=y, student_logits=zs, teacher_logits=zt))
    e = math.e
    # Example 1: plausible classes M = {0} (teacher's top 1 = label); teacher's masked logits
    # (2, min 0, min 0) -> t~ = (e^2 / (e^2 + 2), 0, 0); scaffolded s~_0 = 1/4 + 1/2 = 3/4.
    loss1 = -(e**2 / (e**2 + 2)) * math.log(3 / 4)
    # Example 2: M = {1 (teacher's top 1), 2 (label)}; logits unchanged (class 0 already the
    # minimum) -> t~ = (0, e/(e+2), 1/(e+2)); s~_1 = s~_2 = 1/4 + 1/2 = 3/4.
    loss2 = -((e + 1) / (e + 2)) * math.log(3 / 4)
    assert out["scaffold"].item() == pytest.approx((loss1 + loss2) / 2, rel=1e-12)
    # CE on the labels: -log(1/4) for both examples, weight 0.1
    assert out["ce"].item() == pytest.approx(0.1 * math.log(4), rel=1e-12)
    # guide: both examples wrong (n_err = 2); CE against the teacher's class: -log(1/4) each, so the
    # censored loss is (0.5 ln 4 + 0.5 ln 4) / 2 = ln 2 > budget 0.6; sparsity mean log(1 + 1 * 0.5)
    assert out["guide"].item() == pytest.approx(2 * (math.log(2) - 0.6) + math.log(1.5), rel=1e-12)


def test_within_budget_only_the_sparsity_term_is_left():
    m = build_method("scaffold", num_classes=3, top_k=1, w_scaffold=1.0, budget_max=0.9).double()
    _constant_guide(m, 0.5)
    m.set_phase(0, 10)
    zs, zt, y = _hand_batch()
    out = m(Batch(labels=y, student_logits=zs, teacher_logits=zt))
    # censored ln 2 = 0.693 < 0.9: the hinge is 0
    assert out["guide"].item() == pytest.approx(math.log(1.5), rel=1e-12)


def test_scaffold_with_temperatures_matches_numpy():
    rng = np.random.default_rng(0)
    B, C, K, tt, ts = 6, 5, 2, 4.0, 3.5
    zs, zt = rng.normal(size=(B, C)) * 2, rng.normal(size=(B, C)) * 3
    y = rng.integers(0, C, size=B)
    m = build_method("scaffold", num_classes=C, tau_t=tt, tau_s=ts, top_k=K).double()
    _constant_guide(m, 0.2)
    m.set_phase(0, 4)
    out = m(Batch(torch.from_numpy(y), torch.from_numpy(zs), torch.from_numpy(zt)))
    mask = np.zeros((B, C))
    for i in range(B):
        mask[i, np.argsort(-zt[i])[:K]] = 1
        mask[i, y[i]] = 1
    low = np.where(mask > 0, zt, zt.min(1, keepdims=True)) / tt
    t = mask * np.exp(low) / np.exp(low).sum(1, keepdims=True)
    s = np.exp(zs / ts) / np.exp(zs / ts).sum(1, keepdims=True)
    soft = -(t * np.log(s + 0.2 * mask)).sum(1).mean()
    assert out["scaffold"].item() == pytest.approx(0.9 * ts * tt * soft, rel=1e-10)


def test_the_guide_term_trains_the_guide_not_the_student():
    m = build_method("scaffold", num_classes=3, top_k=1, budget_max=0.0, budget_min=0.0)
    zs, zt, y = _hand_batch()
    zs = zs.float().requires_grad_()
    m.set_phase(0, 10)
    m(Batch(labels=y, student_logits=zs, teacher_logits=zt.float()))["guide"].backward()
    assert zs.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.guide[-1].parameters())


def test_cosine_cycle_in_closed_form():
    # one cycle over 10 steps: halfway the half cosine is at its middle, (1 + 5) / 2
    assert cosine_cycle(5, 10, 1.0, 1.0, 5.0) == pytest.approx(3.0)
    assert cosine_cycle(0, 10, 1.0, 1.0, 5.0) == 1.0
    # two cycles: step 5 of 10 starts the second one again
    assert cosine_cycle(5, 10, 2.0, 1.0, 5.0) == pytest.approx(1.0)
    # a quarter of a cycle: 1 + 4 * (1 - cos(pi / 4)) / 2
    assert cosine_cycle(1, 4, 1.0, 1.0, 5.0) == pytest.approx(1 + 2 * (1 - math.sqrt(0.5)))
    m = build_method("scaffold", num_classes=3, lam=5.0, lam_min=1.0, lam_cycles=1.0, budget_cycles=1.0)
    m.set_phase(5, 10)
    assert (m.lam, m.budget) == (pytest.approx(3.0), pytest.approx(0.5))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"lam_min": 6.0}, "lam_min"),
        ({"budget_min": 0.7}, "budget_min"),
        ({"top_k": 0}, "top_k"),
        ({"tau_t": 0.0}, "tau_t"),
    ],
)
def test_bad_hyperparameters_are_named(kwargs, words):
    with pytest.raises(ValueError, match=words):
        build_method("scaffold", num_classes=3, **kwargs)
