"""The shared training loop: schedules, full-set metrics, determinism, resume, NaN handling."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from infodistill.data.loader import TensorPairs
from infodistill.training.config import DataConfig, OptimConfig, RunConfig
from infodistill.training.rundir import TrainingError, load_checkpoint, read_log
from infodistill.training.task import StepOutput, Supervised, Task
from infodistill.training.trainer import Fit, lr_factor


def tiny_data(seed=0, n=96):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


class HookedSupervised(Supervised):
    """Training on the labels with a callback at every epoch start (to crash a run on purpose)."""

    def __init__(self, model, hook=None):
        super().__init__(model)
        self.hook = hook

    def on_epoch(self, epoch, total_epochs):
        if self.hook is not None:
            self.hook(epoch)


def make_fit(tmp_path, epochs=3, on_epoch=None, lr=0.1, seed=0, init_seed=0):
    torch.manual_seed(init_seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    x, y = tiny_data()
    xt, yt = tiny_data(1, 64)
    return Fit(
        task=HookedSupervised(model, on_epoch),
        train=TensorPairs(x, y),
        test=TensorPairs(xt, yt),
        data=DataConfig(batch_size=16, eval_batch_size=32),
        optim=OptimConfig(lr=lr, epochs=epochs, schedule="cosine", grad_clip=5.0),
        run_cfg=RunConfig(seed=seed, out_dir=str(tmp_path)),
        progress=False,
    ), model


def test_schedules():
    cos = OptimConfig(epochs=4, schedule="cosine")
    assert [lr_factor(cos, e) for e in range(4)] == pytest.approx(
        [1, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]
    )
    step = OptimConfig(epochs=6, schedule="step", milestones=[2, 4], gamma=0.1)
    assert [lr_factor(step, e) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_training_learns_and_logs(tmp_path):
    fit, _ = make_fit(tmp_path, epochs=4)
    final = fit.run()
    log = read_log(tmp_path / "log.jsonl")
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert final["test"]["accuracy"] > 0.8
    assert final["best"]["accuracy"] >= final["test"]["accuracy"]
    assert set(final["test"]) >= {"accuracy", "nll", "ece", "n"} and final["test"]["n"] == 64
    assert json.loads((tmp_path / "config.json").read_text()) == {}


def test_same_seed_same_weights(tmp_path):
    fit_a, a = make_fit(tmp_path / "a")
    fit_b, b = make_fit(tmp_path / "b")
    fit_a.run()
    fit_b.run()
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_resume_gives_the_same_final_weights(tmp_path):
    whole, ref = make_fit(tmp_path / "whole", epochs=3)
    whole.run()

    def crash(epoch):
        if epoch == 2:
            raise KeyboardInterrupt  # killed after epoch 2's checkpoint

    first, _ = make_fit(tmp_path / "cut", epochs=3, on_epoch=crash)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    # A crash between the log line and the checkpoint: a stale line for epoch 3 is redone.
    with open(tmp_path / "cut" / "log.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 3, "stale": True}) + "\n")
    again, resumed = make_fit(tmp_path / "cut", epochs=3, init_seed=123)  # init is overwritten
    again.run()
    for (k, va), vb in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    log = read_log(tmp_path / "cut" / "log.jsonl")
    assert [r["epoch"] for r in log] == [1, 2, 3] and not any(r.get("stale") for r in log)
    whole_log = read_log(tmp_path / "whole" / "log.jsonl")
    for a, b in zip(log, whole_log, strict=True):
        assert a["test"] == b["test"] and a["train_loss"] == b["train_loss"]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    fit, model = make_fit(tmp_path, epochs=3)
    base = fit.task.step

    def poisoned(x, y, epoch, idx):
        out = base(x, y, epoch, idx)
        if epoch == 1:
            out.losses["ce"] = out.losses["ce"] * float("nan")
        return out

    fit.task.step = poisoned
    with pytest.raises(TrainingError, match="non-finite loss at epoch 2.*last good checkpoint"):
        fit.run()
    assert json.loads((tmp_path / "latest.json").read_text()) == {"latest": "epoch-0001"}
    # Intact: byte for byte the checkpoint of a clean run stopped after epoch 1 (same learning rate
    # in epoch 1: the cosine factor of epoch 0 is 1 whatever the number of epochs).
    clean, _ = make_fit(tmp_path / "clean", epochs=1)
    clean.run()
    for name in ("tensors.safetensors", "state.json"):
        ours = (tmp_path / "epoch-0001" / name).read_bytes()
        assert ours == (tmp_path / "clean" / "epoch-0001" / name).read_bytes(), name
    assert [r["epoch"] for r in read_log(tmp_path / "log.jsonl")] == [1]


def test_non_finite_weights_after_a_finite_loss_stop_before_the_checkpoint(tmp_path):
    fit, model = make_fit(tmp_path, epochs=3)
    base = fit.task.step
    calls = []

    def overflowing(x, y, epoch, idx):
        out = base(x, y, epoch, idx)
        calls.append(epoch)
        if calls.count(1) == 6:  # the last of epoch 2's 6 batches: its loss is finite, its update not
            model[3].weight.data.fill_(float("inf"))
        return out

    fit.task.step = overflowing
    with pytest.raises(TrainingError, match=r"non-finite weights after epoch 2 \(0\.weight.*last good"):
        fit.run()
    assert json.loads((tmp_path / "latest.json").read_text()) == {"latest": "epoch-0001"}
    assert [r["epoch"] for r in read_log(tmp_path / "log.jsonl")] == [1]


def test_grad_clip_is_per_module_so_a_method_head_never_shrinks_the_student_step(tmp_path):
    """One SGD step (no momentum, no decay, whole set in one batch), checked by hand: the student's
    gradient is clipped on its own norm and the method's on its own, so a huge auxiliary gradient
    leaves the student's step exactly the unclipped cross-entropy step (a global norm would have
    scaled it by 5 / ||g_extra||)."""
    torch.manual_seed(0)
    student = nn.Linear(6, 2)
    extra = nn.Linear(3, 1, bias=False)  # stands in for a filter head
    x, y = tiny_data(n=32)
    s0 = [p.detach().clone() for p in student.parameters()]
    w0 = extra.weight.detach().clone()

    class WithHead(Task):
        def __init__(self):
            self.student, self.extra = student, extra

        def step(self, xb, yb, epoch, idx=None):
            logits = student(xb)
            # d/dw of 1e4 * sum(w) is 1e4 everywhere: norm 1e4 * sqrt(3), far above the clip.
            return StepOutput({"ce": F.cross_entropy(logits, yb), "aux": 1e4 * extra.weight.sum()}, logits)

    lr, clip = 0.1, 5.0
    fit = Fit(
        task=WithHead(),
        train=TensorPairs(x, y),
        test=TensorPairs(x, y),
        data=DataConfig(batch_size=32, eval_batch_size=32),
        optim=OptimConfig(
            lr=lr, epochs=1, schedule="constant", momentum=0.0, weight_decay=0.0, grad_clip=clip
        ),
        run_cfg=RunConfig(seed=0, out_dir=str(tmp_path)),
        progress=False,
    )
    fit.run()
    # Independent computation of the student's cross-entropy gradient on the whole set.
    ref = nn.Linear(6, 2)
    with torch.no_grad():
        ref.weight.copy_(s0[0])
        ref.bias.copy_(s0[1])
    F.cross_entropy(ref(x), y).backward()
    g = [ref.weight.grad, ref.bias.grad]
    norm = float(torch.sqrt(sum((gi**2).sum() for gi in g)))
    assert norm < clip  # the student's own gradient is not clipped here
    for p, p0, gi in zip(student.parameters(), s0, g, strict=True):
        torch.testing.assert_close(p.detach(), p0 - lr * gi, rtol=0, atol=1e-6)
    # The method's step is its gradient scaled to norm `clip`: each entry moves by lr * clip / sqrt(3).
    torch.testing.assert_close(extra.weight.detach(), w0 - lr * clip / math.sqrt(3.0), rtol=0, atol=1e-6)


def test_optimiser_groups_set_learning_rates_schedules_and_clipping_norms(tmp_path):
    """One SGD step checked by hand with three groups: the student; a module clipped in one norm with
    it (so its huge gradient shrinks the student's step by clip / joint norm); a module clipped on its
    own at 3x the learning rate. Then the learning rates after a cosine epoch: the constant group
    keeps its rate, the others follow the schedule."""
    from infodistill.methods import OptimGroup

    torch.manual_seed(0)
    student = nn.Linear(6, 2)
    joint = nn.Linear(3, 1, bias=False)
    own = nn.Linear(4, 1, bias=False)
    x, y = tiny_data(n=32)
    s0 = [p.detach().clone() for p in student.parameters()]
    j0, o0 = joint.weight.detach().clone(), own.weight.detach().clone()
    extra = nn.ModuleList([joint, own])

    class Groups(Task):
        def __init__(self):
            self.student, self.extra = student, extra

        def optim_groups(self):
            return [
                OptimGroup("student", tuple(student.parameters())),
                OptimGroup("joint", tuple(joint.parameters()), clip_with_student=True),
                OptimGroup("own", tuple(own.parameters()), lr_scale=3.0, constant_lr=True),
            ]

        def step(self, xb, yb, epoch, idx=None):
            logits = student(xb)
            aux = 1e4 * joint.weight.sum() + 1e4 * own.weight.sum()
            return StepOutput({"ce": F.cross_entropy(logits, yb), "aux": aux}, logits)

    lr, clip = 0.1, 5.0

    def fit_for(optim: OptimConfig, out) -> Fit:
        data = DataConfig(batch_size=32, eval_batch_size=32)
        run = RunConfig(seed=0, out_dir=str(out))
        return Fit(Groups(), TensorPairs(x, y), TensorPairs(x, y), data, optim, run, progress=False)

    # one step first (the whole set in one batch, no momentum, no decay): the hand computation
    one = OptimConfig(lr=lr, epochs=1, schedule="cosine", momentum=0.0, weight_decay=0.0, grad_clip=clip)
    fit = fit_for(one, tmp_path)
    assert [len(s) for s in fit.clip_sets()] == [3, 1]
    fit.run()
    ref = nn.Linear(6, 2)
    with torch.no_grad():
        ref.weight.copy_(s0[0])
        ref.bias.copy_(s0[1])
    F.cross_entropy(ref(x), y).backward()
    g = [ref.weight.grad, ref.bias.grad, torch.full((1, 3), 1e4)]
    scale = clip / float(torch.sqrt(sum((gi**2).sum() for gi in g)))
    for p, p0, gi in zip([*student.parameters(), joint.weight], [*s0, j0], g, strict=True):
        torch.testing.assert_close(p.detach(), p0 - lr * scale * gi, rtol=1e-5, atol=1e-7)
    # own norm: each of its 4 entries moves by 3 lr * clip / sqrt(4)
    torch.testing.assert_close(own.weight.detach(), o0 - 3 * lr * clip / 2.0, rtol=0, atol=1e-6)
    # the learning rates of a 2-epoch cosine run in its second epoch, from its checkpoint
    fit2 = fit_for(OptimConfig(lr=lr, epochs=2, schedule="cosine", grad_clip=clip), tmp_path / "two")
    fit2.run()
    groups = load_checkpoint(tmp_path / "two" / "epoch-0002")["optim"]["param_groups"]
    half = lr * 0.5 * (1 + math.cos(math.pi / 2))
    assert [(g["name"], g["lr"]) for g in groups] == [("student", half), ("joint", half), ("own", 3 * lr)]
