"""The distillation step (``Distiller``): losses against a hand computation, the teacher-output
cache, a checkpoint trajectory, and the phases that freeze the student."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from infodistill.methods import build_method
from infodistill.models import build_model, is_frozen, probe_shapes
from infodistill.training import Distiller

K = 10


def _models(seed=0):
    teacher = build_model("cnn-small", num_classes=K, in_channels=1, width=8, seed=seed)
    student = build_model("cnn-small", num_classes=K, in_channels=1, width=4, seed=seed + 1)
    return teacher, student


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, K, (n,), generator=g)


def _feature_method(name, teacher, student, **kw):
    layer = "stage2"
    return build_method(
        name,
        num_classes=K,
        pairs=[(layer, layer)],
        student_shapes=probe_shapes(student, [layer], (1, 28, 28)),
        teacher_shapes=probe_shapes(teacher, [layer], (1, 28, 28)),
        **kw,
    )


def test_kd_step_is_the_hinton_loss_by_hand():
    teacher, student = _models()
    d = Distiller(student, teacher, build_method("kd", num_classes=K, tau=2.0, alpha=0.3))
    assert is_frozen(teacher)  # frozen by the framework, not by the method
    x, y = _batch()
    d.on_epoch(0, 1)
    out = d.step(x, y, epoch=0)
    with torch.no_grad():
        zt, zs = teacher(x), student(x)
        kd = -(F.softmax(zt / 2.0, -1) * F.log_softmax(zs / 2.0, -1)).sum(-1).mean() * 4.0 * 0.7
        ce = 0.3 * F.cross_entropy(zs, y)
    assert out.losses["kd"].item() == pytest.approx(kd.item(), rel=1e-5)
    assert out.losses["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    torch.testing.assert_close(out.teacher_logits, zt)


def test_cached_teacher_outputs_give_the_online_step():
    teacher, student = _models()
    x, y = _batch(20)
    online = Distiller(student, teacher, _feature_method("vid", teacher, student))
    cached = Distiller(student, teacher, online.method)
    assert cached.cache_teacher_outputs(x, batch_size=7)
    idx = torch.tensor([3, 11, 0, 19])
    a = online.step(x[idx], y[idx], 0, idx)
    b = cached.step(x[idx], y[idx], 0, idx)
    for k in a.losses:
        torch.testing.assert_close(a.losses[k], b.losses[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="indices"):
        cached.step(x[idx], y[idx], 0)


def test_a_changing_teacher_is_not_cached():
    teacher, student = _models()
    noise = {"sigma": 1.0, "fraction": 1.0, "mode": "add"}
    noisy = Distiller(student, teacher, build_method("kd", num_classes=K), noise=noise)
    assert not noisy.cache_teacher_outputs(_batch()[0], 4) and noisy.cache is None


def test_progressive_loads_the_checkpoint_the_method_picks():
    teacher, student = _models()
    trajectory = [build_model("cnn-small", num_classes=K, in_channels=1, width=8, seed=s) for s in (5, 6, 7)]
    method = build_method("progressive", num_classes=K, num_checkpoints=3)
    with pytest.raises(ValueError, match="needs the teacher's checkpoints"):
        Distiller(student, teacher, method)
    with pytest.raises(ValueError, match="takes no teacher checkpoints"):
        Distiller(student, teacher, build_method("kd", num_classes=K), checkpoints=trajectory)
    d = Distiller(student, teacher, method, checkpoints=trajectory)
    assert not d.teacher_fixed
    x, _ = _batch()
    for epoch, k in [(0, 0), (3, 1), (5, 2)]:  # 6 epochs split evenly over 3 checkpoints
        d.on_epoch(epoch, 6)
        with torch.no_grad():
            torch.testing.assert_close(d.teacher_logits(x), trajectory[k](x).float())


def test_a_filter_phase_freezes_the_student_and_leaves_its_batchnorm_alone():
    teacher, student = _models()
    method = _feature_method("ted", teacher, student, filter_epochs=1)
    d = Distiller(student, teacher, method)
    x, y = _batch()
    d.on_epoch(0, 4)  # TED's filter stage: only the method's filters and heads train
    assert d.frozen() == set(student.parameters())
    stats = {k: v.clone() for k, v in student.state_dict().items() if "running" in k}
    student.train()
    out = d.step(x, y, epoch=0)
    assert set(out.losses) == {"teacher_filter_ce", "student_filter_ce"}
    assert student.training
    for k, v in stats.items():
        assert torch.equal(student.state_dict()[k], v), k
    d.on_epoch(1, 4)
    assert d.frozen() == set()


def test_an_ensemble_teacher_gives_the_averaged_prediction():
    teacher, student = _models()
    other = build_model("cnn-small", num_classes=K, in_channels=1, width=8, seed=9)
    d = Distiller(student, [teacher, other], build_method("kd", num_classes=K))
    x, _ = _batch()
    with torch.no_grad():
        p = (F.softmax(teacher(x), -1) + F.softmax(other(x), -1)) / 2
    torch.testing.assert_close(F.softmax(d.teacher_logits(x), -1), p, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least one model"):
        Distiller(student, [], build_method("kd", num_classes=K))
    assert isinstance(d.teacher.members[1], nn.Module)
