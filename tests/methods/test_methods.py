"""Distillation methods against hand computations on tiny tensors, gradient isolation, parameter
registration, build-time validation, phase schedules and teacher-feature noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from infodistill.methods import (
    METHODS,
    VID,
    Batch,
    build_method,
    ensemble_logits,
    noisy_features,
    rid_schedule,
    soft_cross_entropy,
)

torch.set_num_threads(1)

B, C_IN, C_S, C_T, K = 6, 2, 3, 5, 4  # batch, input channels, student/teacher channels, classes
S_SHAPE, T_SHAPE = (C_S, 4, 4), (C_T, 2, 2)  # spatial mismatch: the student map is pooled 4x4 -> 2x2
FEATURE_KW = dict(
    num_classes=K, pairs=[("s1", "t1")], student_shapes={"s1": S_SHAPE}, teacher_shapes={"t1": T_SHAPE}
)


class TinyStudent(nn.Module):
    """conv (the hint / distilled layer) -> global pool -> linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(C_IN, C_S, 3, padding=1)
        self.fc = nn.Linear(C_S, K)

    def forward(self, x):
        s = self.conv(x)
        return self.fc(s.mean((2, 3))), s


def make_batch(student, seed=0, teacher_logits=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C_IN, 4, 4, generator=g)
    logits, s = student(x)
    return Batch(
        labels=torch.randint(0, K, (B,), generator=g),
        student_logits=logits,
        teacher_logits=torch.randn(B, K, generator=g) * 2 if teacher_logits else None,
        student_feats={"s1": s},
        teacher_feats={"t1": torch.randn(B, *T_SHAPE, generator=g)},
    )


def pool2(x):
    """4x4 -> 2x2 average pooling by hand (2x2 blocks)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean((3, 5))


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_ce(logits, labels):
    return float(-np_log_softmax(np.asarray(logits, np.float64))[np.arange(len(labels)), labels].mean())


def np_softplus(a):
    return np.log1p(np.exp(np.asarray(a, np.float64)))


def t2n(x):
    return x.detach().double().numpy()


def total(terms):
    return sum(terms.values())


# --- registry -------------------------------------------------------------------------------------


def test_registry_names_and_errors():
    assert set(METHODS) == {"baseline", "kd", "fitnets", "vid", "rid", "ted", "progressive", "scaffold"}
    with pytest.raises(ValueError, match="known methods.*baseline.*vid"):
        build_method("nope", num_classes=K)
    with pytest.raises(ValueError, match="unknown argument.*'temperature'"):
        build_method("kd", num_classes=K, temperature=4)
    with pytest.raises(ValueError, match="missing.*num_checkpoints"):
        build_method("progressive", num_classes=K)
    assert isinstance(build_method("vid", **FEATURE_KW, lam=2.0), VID)
    assert not build_method("baseline", num_classes=K).requires_teacher()
    assert build_method("kd", num_classes=K).requires_teacher()


def test_baseline_is_ce():
    b = make_batch(TinyStudent())
    out = build_method("baseline", num_classes=K)(b)
    assert list(out) == ["ce"]
    assert out["ce"].item() == pytest.approx(np_ce(t2n(b.student_logits), b.labels.numpy()), rel=1e-6)


# --- KD -------------------------------------------------------------------------------------------


def test_kd_matches_numpy_including_tau_squared():
    b = make_batch(TinyStudent())
    tau, alpha = 4.0, 0.3
    out = build_method("kd", num_classes=K, tau=tau, alpha=alpha)(b)
    zs, zt, y = t2n(b.student_logits), t2n(b.teacher_logits), b.labels.numpy()
    p_t = np.exp(np_log_softmax(zt / tau))
    soft = float(-(p_t * np_log_softmax(zs / tau)).sum(-1).mean())
    assert out["ce"].item() == pytest.approx(alpha * np_ce(zs, y), rel=1e-5)
    assert out["kd"].item() == pytest.approx((1 - alpha) * tau**2 * soft, rel=1e-5)


def test_soft_ce_gradient_equals_kl_gradient_at_tau_1():
    g = torch.Generator().manual_seed(1)
    zs = torch.randn(5, 7, generator=g, dtype=torch.float64)
    zt = torch.randn(5, 7, generator=g, dtype=torch.float64) * 3
    a, b = zs.clone().requires_grad_(), zs.clone().requires_grad_()
    soft_cross_entropy(a, zt, tau=1.0).backward()
    p_t = F.softmax(zt, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(b, -1))).sum(-1).mean()
    kl.backward()
    torch.testing.assert_close(a.grad, b.grad)
    # and it is the familiar (p_s - p_t) / B
    torch.testing.assert_close(a.grad, (F.softmax(zs, -1) - p_t) / 5)


def test_ensemble_logits_is_log_mean_softmax():
    g = torch.Generator().manual_seed(2)
    members = [torch.randn(3, 4, generator=g, dtype=torch.float64) * 5 for _ in range(3)]
    expected = np.log(np.mean([np.exp(np_log_softmax(t2n(z))) for z in members], axis=0))
    np.testing.assert_allclose(t2n(ensemble_logits(members)), expected, rtol=1e-12)
    torch.testing.assert_close(ensemble_logits(torch.stack(members)), ensemble_logits(members))
    torch.testing.assert_close(ensemble_logits(members[:1]), F.log_softmax(members[0], -1))
    huge = [torch.tensor([[1e4, 0.0, -1e4]]), torch.tensor([[-1e4, 1e4, 0.0]])]
    out = ensemble_logits(huge)
    assert torch.isfinite(out[0, :2]).all() and out[0, 0].item() == pytest.approx(-math.log(2))
    with pytest.raises(ValueError):
        ensemble_logits([])


# --- VID ------------------------------------------------------------------------------------------


def test_vid_variance_initialised_to_5_and_registered():
    vid = build_method("vid", **FEATURE_KW)
    (var,) = vid.variances()
    assert var.shape == (C_T,)
    np.testing.assert_allclose(t2n(var), 5.0, rtol=1e-6)
    params = dict(vid.named_parameters())
    assert "alphas.0" in params and "alphas.0" in vid.state_dict()


def test_vid_loss_is_gaussian_nll_by_hand():
    student = TinyStudent()
    b = make_batch(student)
    vid = build_method("vid", **FEATURE_KW, lam=3.0)
    with torch.no_grad():
        vid.alphas[0].copy_(torch.tensor([-1.0, 0.0, 0.5, 2.0, 4.0]))
    out = vid(b)
    mu = t2n(vid.regressors[0](pool2(b.student_feats["s1"])))
    var = np_softplus([-1.0, 0.0, 0.5, 2.0, 4.0]) + 1e-5
    t = t2n(b.teacher_feats["t1"])
    v = var[None, :, None, None]
    nll = 0.5 * (np.log(v) + (t - mu) ** 2 / v)
    assert out["vid"].item() == pytest.approx(3.0 * nll.mean(), rel=1e-5)
    assert out["ce"].item() == pytest.approx(np_ce(t2n(b.student_logits), b.labels.numpy()), rel=1e-5)
    # the regressor is 1x1 conv -> ReLU -> 1x1 conv
    convs = [m for m in vid.regressors[0].modules() if isinstance(m, nn.Conv2d)]
    # hidden width C_s by default (3 here), C_t -> ... on request
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(3, 3, (1, 1)), (3, 5, (1, 1))]


def test_vid_variances_reach_the_optimizer():
    student, vid = TinyStudent(), build_method("vid", **FEATURE_KW, lam=1.0)
    opt = torch.optim.SGD([*student.parameters(), *vid.parameters()], lr=0.1)
    before = vid.alphas[0].detach().clone()
    total(vid(make_batch(student))).backward()
    opt.step()
    assert not torch.equal(before, vid.alphas[0].detach())


def test_kd_rid_regressor_architecture_and_parameter_count():
    vid = build_method("vid", **FEATURE_KW, regressor="kd-rid", alpha_init=5.0, eps=1e-3)
    convs = [m for m in vid.regressors[0].modules() if isinstance(m, nn.Conv2d)]
    # C_s = 3 -> 2C_t = 10 -> 10 -> C_t = 5, 1x1 kernels, no biases
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.bias) for c in convs] == [
        (3, 10, (1, 1), None),
        (10, 10, (1, 1), None),
        (10, 5, (1, 1), None),
    ]
    kinds = [type(m).__name__ for m in vid.regressors[0]]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]
    # hand count: convs 3*10 + 10*10 + 10*5 = 180, two BNs 2*(10+10) = 40, alphas 5
    assert sum(p.numel() for p in vid.parameters()) == 180 + 40 + 5


def test_kd_rid_variance_starts_at_softplus_5_plus_1e3():
    vid = build_method("vid", **FEATURE_KW, regressor="kd-rid", alpha_init=5.0, eps=1e-3)
    (var,) = vid.variances()
    # softplus(5) = log(1 + e^5) = 5.0067153..., so sigma^2 = 5.0077153..., not 5
    np.testing.assert_allclose(t2n(var), math.log(1 + math.exp(5.0)) + 1e-3, rtol=1e-6)
    assert abs(float(var[0].detach()) - 5.0077) < 1e-4


def test_kd_rid_vid_loss_by_hand():
    """The regressor's forward (BN in training mode: batch statistics, biased variance) and the
    Gaussian NLL written out in numpy."""
    student = TinyStudent()
    b = make_batch(student)
    vid = build_method("vid", **FEATURE_KW, lam=100.0, regressor="kd-rid", alpha_init=5.0, eps=1e-3)
    out = vid(b)
    w = [t2n(c.weight)[:, :, 0, 0] for c in vid.regressors[0] if isinstance(c, nn.Conv2d)]

    def conv(x, weight):
        return np.einsum("oc,bchw->bohw", weight, x)

    def bn(x):
        m, v = x.mean((0, 2, 3), keepdims=True), x.var((0, 2, 3), keepdims=True)
        return (x - m) / np.sqrt(v + 1e-5)

    s = t2n(pool2(b.student_feats["s1"]))
    mu = conv(np.maximum(bn(conv(np.maximum(bn(conv(s, w[0])), 0), w[1])), 0), w[2])
    var = (np.log1p(np.exp(5.0)) + 1e-3) * np.ones(C_T)
    t, v = t2n(b.teacher_feats["t1"]), var[None, :, None, None]
    nll = 0.5 * (np.log(v) + (t - mu) ** 2 / v)
    assert out["vid"].item() == pytest.approx(100.0 * nll.mean(), rel=1e-5)


def test_vid_rejects_an_unknown_regressor():
    with pytest.raises(ValueError, match="regressor must be one of"):
        build_method("vid", **FEATURE_KW, regressor="mlp")


# --- RID ------------------------------------------------------------------------------------------


def rid_for(epoch, total_epochs=40, **kw):
    torch.manual_seed(3)
    rid = build_method("rid", **FEATURE_KW, **kw)
    with torch.no_grad():
        rid.alphas[0].copy_(torch.tensor([4.0, 5.0, 6.0]))
    rid.set_phase(epoch, total_epochs)
    return rid


def test_rid_phase1_loss_by_hand():
    student = TinyStudent()
    b = make_batch(student)
    rid = rid_for(4)  # round 1, phase 1: the matching term is on
    assert (rid.round, rid.phase, rid.trainable_student()) == (1, "filter", False)
    out = rid(b)
    ft = rid.teacher_filters[0](b.teacher_feats["t1"])
    fs = rid.student_filters[0](pool2(b.student_feats["s1"]))
    logits = t2n(rid.heads[0](ft))
    var = (np_softplus([4.0, 5.0, 6.0]) + 1e-3)[None, :, None, None]
    assert out["filter_ce"].item() == pytest.approx(np_ce(logits, b.labels.numpy()), rel=1e-5)
    assert out["filter_match"].item() == pytest.approx(((t2n(fs) - t2n(ft)) ** 2 / var).mean(), rel=1e-5)
    # head: ReLU -> flatten -> linear on the C_s x 2 x 2 map
    assert rid.heads[0][-1].in_features == C_S * 2 * 2
    assert set(rid_for(0)(b)) == {"filter_ce"}  # first round: no matching term


@pytest.mark.parametrize("term", ["square", "log"])
def test_rid_phase2_loss_by_hand(term):
    """The reference code's (sigma^2)^2 by default; the Gaussian log sigma^2 as the variant."""
    student = TinyStudent()
    b = make_batch(student)
    rid = rid_for(5, **({} if term == "square" else {"variance_term": "log"}))
    assert (rid.round, rid.phase, rid.trainable_student()) == (1, "student", True)
    out = rid(b)
    ft = t2n(rid.teacher_filters[0](b.teacher_feats["t1"]))
    fs = t2n(rid.student_filters[0](pool2(b.student_feats["s1"])))
    var = (np_softplus([4.0, 5.0, 6.0]) + 1e-3)[None, :, None, None]
    penalty = var**2 if term == "square" else np.log(var)
    expected = 10.0 * (penalty + (fs - ft) ** 2 / var).mean()
    assert out["rid"].item() == pytest.approx(expected, rel=1e-5)
    assert out["ce"].item() == pytest.approx(np_ce(t2n(b.student_logits), b.labels.numpy()), rel=1e-5)


def np_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("gate", ["chance", "student"])
def test_rid_gated_phase2_loss_by_hand(gate):
    student = TinyStudent()
    b = make_batch(student)
    rid = rid_for(5, gate=gate)
    ft = t2n(rid.teacher_filters[0](b.teacher_feats["t1"]))
    fs = t2n(rid.student_filters[0](pool2(b.student_feats["s1"])))
    var = (np_softplus([4.0, 5.0, 6.0]) + 1e-3)[None, :, None, None]
    per_example = (var**2 + (fs - ft) ** 2 / var).reshape(len(fs), -1).mean(1)
    y = b.labels.numpy()
    rows = np.arange(len(y))
    p_t = np_softmax(t2n(rid.heads[0](rid.teacher_filters[0](b.teacher_feats["t1"]))))[rows, y]
    if gate == "chance":
        c = rid.num_classes
        w = np.clip((p_t - 1 / c) / (1 - 1 / c), 0, 1)
    else:
        w = np.clip(p_t - np_softmax(t2n(b.student_logits))[rows, y], 0, 1)
    assert rid(b)["rid"].item() == pytest.approx(10.0 * (w * per_example).mean(), rel=1e-5)


def test_rid_student_trains_in_phase1_when_asked():
    student = TinyStudent()
    b = make_batch(student)
    rid = rid_for(4, student_in_phase1=True)
    assert (rid.phase, rid.trainable_student()) == ("filter", True)
    out = rid(b)
    assert out["ce"].item() == pytest.approx(np_ce(t2n(b.student_logits), b.labels.numpy()), rel=1e-5)
    total(out).backward()
    assert all(g is not None for g in grads(student).values())
    assert all(g is None for n, g in grads(rid).items() if n.startswith(("student_filters", "alphas")))


def test_rid_fixed_variance_is_not_trained():
    student = TinyStudent()
    rid = rid_for(5, learn_variance=False)
    assert not any(p is a for p in rid.phase_parameters("student") for a in rid.alphas)
    before = [v.detach().clone() for v in rid.variances()]
    total(rid(make_batch(student))).backward()
    assert rid.alphas[0].grad is None
    assert torch.equal(before[0], rid.variances()[0].detach())


def grads(module):
    return {n: p.grad for n, p in module.named_parameters()}


@pytest.mark.parametrize("epoch", [4, 5])
def test_rid_gradient_isolation(epoch):
    student = TinyStudent()
    rid = rid_for(epoch)
    total(rid(make_batch(student))).backward()
    phase1 = epoch == 4
    for name, g in grads(rid).items():
        trained = name.startswith(("teacher_filters", "heads")) == phase1
        assert (g is not None and g.abs().sum() > 0) if trained else g is None, name
    assert all((g is None) == phase1 for g in grads(student).values())
    # phase_parameters partitions the method's parameters
    p1, p2 = rid.phase_parameters("filter"), rid.phase_parameters("student")
    assert {id(p) for p in p1} | {id(p) for p in p2} == {id(p) for p in rid.parameters()}
    assert not {id(p) for p in p1} & {id(p) for p in p2}
    active = {id(p) for p in rid.phase_parameters()}
    assert active == {id(p) for p in (p1 if phase1 else p2)}


def test_rid_inactive_filter_runs_in_eval_mode():
    rid = rid_for(4).train()
    assert rid.teacher_filters[0][1].training and not rid.student_filters[0][1].training
    before = rid.student_filters[0][1].running_mean.clone()
    rid(make_batch(TinyStudent()))
    torch.testing.assert_close(rid.student_filters[0][1].running_mean, before)
    rid.set_phase(5, 40)
    assert rid.student_filters[0][1].training and not rid.teacher_filters[0][1].training
    assert not any(m.training for m in rid.eval().modules())


def test_rid_schedule_boundaries():
    got = [rid_schedule(e, 40) for e in range(40)]
    assert got == [(e // 4, "filter" if e % 4 == 0 else "student") for e in range(40)]
    # 25 epochs, 10 rounds of 2 or 3 epochs, each starting with one phase-1 epoch
    rounds = [0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5, 6, 6, 7, 7, 7, 8, 8, 9, 9, 9]
    starts = [0, 2, 5, 7, 10, 12, 15, 17, 20, 22]
    assert [rid_schedule(e, 25)[0] for e in range(25)] == rounds
    assert [e for e in range(25) if rid_schedule(e, 25)[1] == "filter"] == starts
    # longer rounds: a quarter of 8 epochs is 2
    assert [rid_schedule(e, 16, rounds=2)[1] for e in range(8)] == ["filter"] * 2 + ["student"] * 6
    # short runs: rounds shrink so that each has both phases; one epoch is phase 2 only
    assert [rid_schedule(e, 6) for e in range(6)] == [(r, p) for r in range(3) for p in ("filter", "student")]
    assert [rid_schedule(e, 3) for e in range(3)] == [(0, "filter"), (0, "student"), (0, "student")]
    assert rid_schedule(0, 1) == (0, "student")
    with pytest.raises(ValueError):
        rid_schedule(40, 40)


@pytest.mark.parametrize("total", [50, 51, 97, 240, 1000, 4321, 100_000])
def test_rid_schedule_in_steps_keeps_ten_rounds_and_the_students_three_quarters(total):
    """Counted in optimiser steps, every budget from ~50 steps to 100 k has the reference's 10
    rounds, each starting with its filter phase and giving the student 3/4 of it within one step
    (the reference: phase 1 while epoch % R < R / 4)."""
    phases = [rid_schedule(i, total) for i in range(total)]
    rounds = sorted({r for r, _ in phases})
    assert rounds == list(range(10))
    for r in rounds:
        steps = [p for q, p in phases if q == r]
        length, student = len(steps), steps.count("student")
        assert abs(student - 0.75 * length) < 1, (r, length, student)
        n1 = length - student
        assert steps == ["filter"] * n1 + ["student"] * student  # filter first, then the student
        # the reference's rule within the round: step i is phase 1 while i < L / 4
        assert steps == ["filter" if i < length / 4 else "student" for i in range(length)]
    share = sum(p == "student" for _, p in phases) / total
    assert 0.75 - 10 / total <= share <= 0.75 + 10 / total


def test_rid_schedule_of_the_reference_budget():
    """300 epochs, 10 rounds of 30: phase 1 while epoch % 30 < 7.5, i.e. 8 filter epochs and 22
    student epochs a round (73 %), as the reference code ran it."""
    got = [rid_schedule(e, 300) for e in range(300)]
    assert got == [(e // 30, "filter" if e % 30 < 7.5 else "student") for e in range(300)]
    assert sum(p == "student" for _, p in got) == 220


def test_two_stage_boundaries_are_counted_in_steps():
    fit = build_method("fitnets", **FEATURE_KW)  # hint_fraction 0.25
    ted = build_method("ted", **FEATURE_KW, filter_epochs=1)
    # 3 epochs of 7 steps: a quarter of 21 steps is round(5.25) = 5; filter_epochs=1 is 7 steps
    assert [fit.stage(i, 21, 7) for i in range(21)] == ["hint"] * 5 + ["kd"] * 16
    assert [ted.stage(i, 21, 7) for i in range(21)] == ["filters"] * 7 + ["distill"] * 14
    # counted in epochs (a step is an epoch), the quarter of 3 epochs was 1 epoch = 7 steps
    assert [fit.stage(e, 3) for e in range(3)] == ["hint", "kd", "kd"]


# --- FitNets, TED, progressive --------------------------------------------------------------------


def test_fitnets_stages_and_hint_loss():
    student = TinyStudent()
    b = make_batch(student)
    fit = build_method("fitnets", **FEATURE_KW, regressor_kernel=3, tau=2.0, alpha=0.5)
    assert [fit.stage(e, 8) for e in range(8)] == ["hint"] * 2 + ["kd"] * 6
    assert [build_method("fitnets", **FEATURE_KW, hint_epochs=3).stage(e, 5) for e in range(5)] == [
        "hint"
    ] * 3 + ["kd"] * 2
    assert fit.stage(0, 1) == "kd"
    fit.set_phase(0, 8)
    out = fit(b)
    assert list(out) == ["hint"]
    r = t2n(fit.regressors[0](pool2(b.student_feats["s1"])))
    assert out["hint"].item() == pytest.approx(((r - t2n(b.teacher_feats["t1"])) ** 2).mean(), rel=1e-5)
    out["hint"].backward()
    assert student.fc.weight.grad is None and student.conv.weight.grad is not None  # up to the hint layer
    fit.set_phase(2, 8)
    kd = build_method("kd", num_classes=K, tau=2.0, alpha=0.5)(b)
    assert {k: v.item() for k, v in fit(b).items()} == {k: v.item() for k, v in kd.items()}
    assert fit.phase_parameters() == []
    one = build_method("fitnets", **FEATURE_KW, one_stage=True)
    assert set(one(b)) == {"ce", "hint"} and "one-stage" in one.label and "CE" in one.label


def test_ted_stages_losses_and_isolation():
    student = TinyStudent()
    ted = build_method("ted", **FEATURE_KW)
    assert [ted.stage(e, 10) for e in range(10)] == ["filters"] * 3 + ["distill"] * 7
    ted.set_phase(0, 10)
    b = make_batch(student)
    out = ted(b)
    ft = ted.teacher_filters[0](b.teacher_feats["t1"])
    fs = ted.student_filters[0](pool2(b.student_feats["s1"]))
    y = b.labels.numpy()
    assert out["teacher_filter_ce"].item() == pytest.approx(np_ce(t2n(ted.teacher_heads[0](ft)), y), rel=1e-5)
    assert out["student_filter_ce"].item() == pytest.approx(np_ce(t2n(ted.student_heads[0](fs)), y), rel=1e-5)
    total(out).backward()
    assert not ted.trainable_student() and all(g is None for g in grads(student).values())
    assert all(g is not None for g in grads(ted).values())
    ted.zero_grad(set_to_none=True)
    ted.set_phase(3, 10)
    ted.train()
    assert not ted.teacher_filters[0][1].training and ted.trainable_student()
    b = make_batch(student, seed=1)
    out = ted(b)
    ft = t2n(ted.teacher_filters[0](b.teacher_feats["t1"]))
    fs = t2n(ted.student_filters[0](pool2(b.student_feats["s1"])))
    assert out["ted"].item() == pytest.approx(10.0 * ((fs - ft) ** 2).mean(), rel=1e-5)
    total(out).backward()
    trained = {n for n, g in grads(ted).items() if g is not None}
    assert trained == {n for n, _ in ted.student_filters.named_parameters(prefix="student_filters")}
    assert student.conv.weight.grad is not None


def test_progressive_active_teacher():
    p = build_method("progressive", num_classes=K, num_checkpoints=3)
    assert [p.active_teacher(e, 9) for e in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [p.active_teacher(e, 10) for e in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [p.active_teacher(e, 2) for e in range(2)] == [0, 1]
    m = build_method("progressive", num_classes=K, num_checkpoints=3, milestones=[2, 5])
    assert [m.active_teacher(e, 10) for e in range(10)] == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    m.set_phase(6, 10)
    assert (m.active, m.phase) == (2, "checkpoint_2")
    b = make_batch(TinyStudent())
    kd = build_method("kd", num_classes=K)(b)
    assert {k: v.item() for k, v in m(b).items()} == {k: v.item() for k, v in kd.items()}
    with pytest.raises(ValueError, match="milestones"):
        build_method("progressive", num_classes=K, num_checkpoints=3, milestones=[5, 2])


@pytest.mark.parametrize("name", ["fitnets", "rid", "ted", "progressive"])
def test_multiphase_methods_refuse_to_run_before_set_phase(name):
    kw = {"num_checkpoints": 2} if name == "progressive" else {}
    method = build_method(name, **FEATURE_KW, **kw)
    with pytest.raises(RuntimeError, match="set_phase"):
        method(make_batch(TinyStudent()))


# --- every method: parameters, checkpoints, validation ---------------------------------------------


def build(name):
    kw = {"num_checkpoints": 2} if name == "progressive" else {}
    torch.manual_seed(0)
    return build_method(name, **FEATURE_KW, **kw)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_parameter_is_registered_trained_and_checkpointed(name):
    method, student = build(name), TinyStudent()
    touched = set()
    for epoch in range(8):  # covers every phase of every method's default schedule
        method.set_phase(epoch, 8)
        method.train()
        method.zero_grad(set_to_none=True)
        terms = method(make_batch(student, seed=epoch))
        assert all(torch.isfinite(v) for v in terms.values())
        total(terms).backward()
        touched |= {n for n, p in method.named_parameters() if p.grad is not None}
    names = {n for n, _ in method.named_parameters()}
    assert touched == names  # no parameter that never trains (and none outside parameters())
    assert names <= set(method.state_dict())
    clone = build(name)
    clone.load_state_dict(method.state_dict())
    clone.set_phase(7, 8)  # the phase is not state: a resumed run sets it again
    method.eval(), clone.eval()
    b = make_batch(student, seed=9)
    for key, value in method(b).items():
        torch.testing.assert_close(clone(b)[key], value)


@pytest.mark.parametrize("name", ["fitnets", "vid", "rid", "ted"])
def test_build_time_shape_validation_names_the_layer(name):
    kw = dict(FEATURE_KW, student_shapes={"fc": (64,)}, pairs=[("fc", "t1")])
    with pytest.raises(ValueError, match="student layer 'fc'.*conv map"):
        build_method(name, **kw)
    with pytest.raises(ValueError, match="teacher layer 'nope'"):
        build_method(name, **dict(FEATURE_KW, pairs=[("s1", "nope")]))
    with pytest.raises(ValueError, match="pair"):
        build_method(name, **dict(FEATURE_KW, pairs=[]))


def test_runtime_feature_shape_mismatch_and_1d_maps():
    vid = build_method("vid", **FEATURE_KW)
    b = make_batch(TinyStudent())
    b.teacher_feats["t1"] = torch.randn(B, C_T, 3, 3)
    with pytest.raises(ValueError, match="teacher layer 't1'.*built for"):
        vid(b)
    # (C, L) features of 1-D convs are maps (C, L, 1)
    vid1d = build_method(
        "vid", num_classes=K, pairs=[("a", "b")], student_shapes={"a": (3, 8)}, teacher_shapes={"b": (4, 6)}
    )
    out = vid1d(
        Batch(
            labels=torch.zeros(2, dtype=torch.long),
            student_logits=torch.zeros(2, K),
            student_feats={"a": torch.randn(2, 3, 8)},
            teacher_feats={"b": torch.randn(2, 4, 6)},
        )
    )
    assert torch.isfinite(out["vid"])


def test_bf16_autocast_gives_float32_losses():
    b = make_batch(TinyStudent())
    for name in ("vid", "rid", "ted", "fitnets"):
        method = build(name)
        method.set_phase(7, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            terms = method(b)
        assert all(v.dtype == torch.float32 for v in terms.values()), name


# --- noisy teacher features -------------------------------------------------------------------------


def test_noisy_features_statistics():
    x = torch.zeros(64, 16, 32, 32)
    gen = torch.Generator().manual_seed(0)
    out = noisy_features({"t": x}, sigma=2.0, fraction=0.3, mode="replace", generator=gen)["t"]
    changed = out != 0
    assert changed.float().mean().item() == pytest.approx(0.3, abs=0.005)
    assert out[changed].std().item() == pytest.approx(2.0, rel=0.01)
    assert out[changed].mean().item() == pytest.approx(0.0, abs=0.01)
    ones = torch.ones(64, 16, 32, 32)
    added = noisy_features(ones, sigma=0.5, fraction=1.0, mode="add", generator=gen) - 1
    assert (added != 0).all() and added.std().item() == pytest.approx(0.5, rel=0.01)
    by_channel = noisy_features(x, 1.0, 0.5, mode="replace", generator=gen, granularity="channel")
    per_map = (by_channel != 0).float().mean((2, 3))
    assert set(per_map.unique().tolist()) <= {0.0, 1.0}
    assert per_map.mean().item() == pytest.approx(0.5, abs=0.06)
    assert torch.equal(x, torch.zeros_like(x))  # input untouched
    with pytest.raises(ValueError):
        noisy_features(x, sigma=1.0, mode="swap")


def test_noisy_features_deterministic_with_seeded_generator():
    feats = {"a": torch.randn(4, 3, 5, 5), "b": torch.randn(4, 7)}

    def run(seed):
        return noisy_features(feats, 1.0, 0.5, "add", torch.Generator().manual_seed(seed))

    first, again, other = run(7), run(7), run(8)
    assert all(torch.equal(first[k], again[k]) for k in feats)
    assert not torch.equal(first["a"], other["a"])
    assert noisy_features(feats, 1.0, 0.0)["a"] is feats["a"]


SETUP_ARGUMENTS = {"num_classes", "pairs", "student_shapes", "teacher_shapes", "num_checkpoints"}


def test_methods_declare_only_their_own_hyperparameters():
    """What every method shares is resolved once by build_method (a MethodSetup); a constructor
    takes that and its own hyper-parameters only."""
    import inspect

    from infodistill.methods import METHODS, method_hparams

    for name, cls in METHODS.items():
        params = list(inspect.signature(cls.__init__).parameters)
        assert params[:2] == ["self", "setup"], name
        assert not SETUP_ARGUMENTS & set(method_hparams(name)), name


def test_build_method_ignores_pairs_for_a_method_without_feature_terms():
    kd = build_method("kd", **dict(FEATURE_KW, pairs=[("s1", "no-such-layer")]))
    assert kd.pairs == [] and kd.student_layers == [] and kd.teacher_layers == []


def test_capabilities_are_declared_by_the_method_class():
    from infodistill.methods import METHODS, MethodSetup, method_class

    assert [n for n, c in METHODS.items() if c.uses_teacher_checkpoints] == ["progressive"]
    assert method_class("progressive") is METHODS["progressive"]
    with pytest.raises(ValueError, match="unknown method"):
        method_class("nope")
    assert build_method("kd", num_classes=K).active_teacher(3, 5) == 0
    for bad in (1, True, 2.0, "10"):
        with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
            MethodSetup(bad)
    with pytest.raises(ValueError, match="LayerPair"):
        MethodSetup(K, pairs=[("a", "b")])


def test_fitnets_and_ted_share_the_two_stage_schedule():
    from infodistill.methods import TwoStageMethod

    fit = build_method("fitnets", **FEATURE_KW)
    ted = build_method("ted", **FEATURE_KW)
    assert isinstance(fit, TwoStageMethod) and isinstance(ted, TwoStageMethod)
    # first-stage epochs by hand: round(0.25 * total), at least 1 when both stages fit
    for total, n in {1: 0, 2: 1, 3: 1, 5: 1, 8: 2, 13: 3}.items():
        assert [fit.stage(e, total) for e in range(total)] == ["hint"] * n + ["kd"] * (total - n)
        assert [ted.stage(e, total) for e in range(total)] == ["filters"] * n + ["distill"] * (total - n)
    with pytest.raises(ValueError, match="hint_epochs must be >= 0"):
        build_method("fitnets", **FEATURE_KW, hint_epochs=-1)
    with pytest.raises(ValueError, match="filter_fraction must be in"):
        build_method("ted", **FEATURE_KW, filter_fraction=1.5)


# --- optimiser groups ------------------------------------------------------------------------------


def test_rid_optimiser_groups_are_the_reference_codes_two_optimisers():
    """f_s and sigma^2 train with the student (one clipping norm), f_t and the heads on their own at
    a constant rate; every parameter of the method is in exactly one group."""
    rid = build_method("rid", **FEATURE_KW, filter_lr_scale=3.0, variance_lr_scale=0.5)
    groups = {g.name: g for g in rid.optim_groups()}
    assert set(groups) == {"student_filters", "variances", "teacher_filters"}
    ids = [id(p) for g in groups.values() for p in g.params]
    assert sorted(ids) == sorted(id(p) for p in rid.parameters())
    assert {id(p) for p in groups["student_filters"].params} == {
        id(p) for p in rid.student_filters.parameters()
    }
    assert {id(p) for p in groups["variances"].params} == {id(p) for p in rid.alphas}
    tf = groups["teacher_filters"]
    assert {id(p) for p in tf.params} == {
        id(p) for p in [*rid.teacher_filters.parameters(), *rid.heads.parameters()]
    }
    assert (tf.lr_scale, tf.constant_lr, tf.clip_with_student) == (3.0, True, False)
    assert (groups["variances"].lr_scale, groups["variances"].clip_with_student) == (0.5, True)
    assert build_method("rid", **FEATURE_KW, filter_lr_schedule="run").optim_groups()[2].constant_lr is False
    for bad in ({"filter_lr_scale": 0.0}, {"variance_lr_scale": -1.0}):
        with pytest.raises(ValueError, match="must be > 0"):
            build_method("rid", **FEATURE_KW, **bad)


def test_vid_trains_its_regressors_with_the_student_and_other_methods_on_their_own():
    vid = build_method("vid", **FEATURE_KW)
    (g,) = vid.optim_groups()
    assert g.clip_with_student and len(g.params) == len(list(vid.parameters()))
    (t,) = build_method("fitnets", **FEATURE_KW).optim_groups()
    assert not t.clip_with_student and t.lr_scale == 1.0 and not t.constant_lr
    assert build_method("kd", num_classes=5).optim_groups() == []


def test_filters_have_no_biases_and_the_reference_init_is_kaiming_fan_out():
    torch.manual_seed(0)
    rid = build_method("rid", **FEATURE_KW, adapter_init="reference")
    convs = [m for m in rid.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.bias is None for m in convs)
    # Kaiming-uniform, fan_out, ReLU gain: U(-b, b) with b = sqrt(2) * sqrt(3 / fan_out)
    for m in [*convs, *(m for m in rid.modules() if isinstance(m, torch.nn.Linear))]:
        bound = math.sqrt(2.0) * math.sqrt(3.0 / m.weight.shape[0])
        top = float(m.weight.detach().abs().max())
        assert 0.5 * bound < top <= bound
        if m.bias is not None:
            assert float(m.bias.detach().abs().max()) == 0.0
    with pytest.raises(ValueError, match="adapter_init must be one of"):
        build_method("rid", **FEATURE_KW, adapter_init="xavier")
