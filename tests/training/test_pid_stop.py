"""The stop rule (``pid.stop``): the PID tracker switches off a pair's distillation term once the
upper end of its Uni(Y:T\\S) interval reaches the pair's permutation floor, and the log says when.

Planted by construction: y = 2*b1 + b2 is written in the input's first two columns; the teacher's
layer is y's cluster centre plus a little input noise (it holds y). The student has two layers:
``copy``, the exact centre of y's cluster (y is a function of it, so Uni(Y:T\\S) = 0 from the
first epoch: it must stop at the first PID epoch), and ``blind``, a linear map of the input's
noise columns only (it can never learn y, so about 2 bits stay left: it must never stop; paired
with ``stage2``, the same features as ``stage1``).
"""

from __future__ import annotations

import json
import re

import pytest
import torch

import planted
from infodistill.methods import build_method
from infodistill.pid import estimate
from infodistill.pid.floor import at_floor, centred_ci, floor
from infodistill.training.config import ConfigError, DistillConfig, PIDConfig, load_config
from infodistill.training.pid_tracker import PIDTracker
from infodistill.training.rundir import load_checkpoint, read_log
from infodistill.training.runs import distill
from interrupts import Interrupt, interrupt_at

USER = planted.SOURCE

# the student's copy layer takes 4 distinct values: k-means finds fewer than k = 10 clusters
pytestmark = pytest.mark.filterwarnings("ignore:Number of distinct clusters")

PAIRS = "[[copy, stage1], [blind, stage2]]"


@pytest.fixture
def user(tmp_path, monkeypatch):
    (tmp_path / "planted.py").write_text(USER)
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    return tmp_path


def _config(out, *extra):
    return load_config(
        DistillConfig,
        None,
        [
            "data.factory=planted.py:data",
            "data.batch_size=100",
            "student.factory=planted.py:student",
            "teacher.kind=untrained",
            "teacher.model.factory=planted.py:teacher",
            "method.name=vid",
            f"method.pairs={PAIRS}",
            f"pid.pairs={PAIRS}",
            "pid.n_boot=20",
            "pid.n_perm=10",
            "pid.stop=true",
            "optim.epochs=3",
            "optim.lr=0.05",
            f"run.out_dir={out}",
            *extra,
        ],
    )


def _planted_modules(user):
    import importlib.util

    spec = importlib.util.spec_from_file_location("planted_stop", user / "planted.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_tracker_stops_the_pair_at_its_floor_and_the_method_skips_it(user):
    mod = _planted_modules(user)
    train, test = mod.data()
    student, teacher = mod.student(), mod.teacher()
    shapes = {"copy": (8, 1, 1), "blind": (8, 1, 1)}
    method = build_method(
        "vid",
        num_classes=4,
        pairs=[["copy", "stage1"], ["blind", "stage2"]],
        student_shapes=shapes,
        teacher_shapes={"stage1": (8, 1, 1), "stage2": (8, 1, 1)},
    )
    cfg = PIDConfig(pairs=[["copy", "stage1"], ["blind", "stage2"]], n_boot=20, n_perm=10, stop=True)
    test_pairs = _pairs(test)
    tracker = PIDTracker(cfg, student, teacher, test_pairs, epochs=1, seed=0, batch_size=100, method=method)
    record = tracker(0)
    assert record["pid_stop"] == {"stopped": ["copy|stage1"], "off": ["copy|stage1"]}
    assert record["pid"]["copy|stage1"]["on"] is False and record["pid"]["blind|stage2"]["on"] is True
    # the rule by hand, on the same features
    x, y = test.tensors
    with torch.no_grad():
        t = mod.CENTRES[mod.label(x)] + x[:, 0, 2:] @ mod.MIX
        s_blind = student.blind(x[:, 0, 2:]).flatten(1)
    ref = estimate(y.numpy(), t.numpy(), s_blind.numpy(), n_boot=20, n_perm=10)
    assert not at_floor(ref) and centred_ci(ref)["unique_t"][1] > floor(ref)
    assert record["pid"]["blind|stage2"]["unique_t"] == pytest.approx(ref.pid.unique_t, abs=1e-6)
    assert record["pid"]["blind|stage2"]["floor_unique_t"] == pytest.approx(floor(ref), abs=1e-6)
    # the stopped pair adds nothing to the loss: the VID term equals the blind pair's alone
    from infodistill.methods import Batch

    sf = {"copy": mod.CENTRES[mod.label(x)].view(-1, 8, 1, 1), "blind": student.blind(x[:, 0, 2:])}
    batch = Batch(
        student_logits=student(x),
        labels=y,
        student_feats=sf,
        teacher_feats={"stage1": t.view(-1, 8, 1, 1), "stage2": t.view(-1, 8, 1, 1)},
    )
    got = method(batch)["vid"]
    var = method.variances()[1]
    alone = method.lam * method.nll(method.regressors[1](sf["blind"]), var, t.view(-1, 8, 1, 1))
    assert got.item() == pytest.approx(alone.item(), rel=1e-6)
    assert method.state_dict()["pairs_on"].tolist() == [False, True]


def _pairs(ds):
    from infodistill.data.loader import TensorPairs

    return TensorPairs(*ds.tensors)


def _stops(log):
    return [(r["epoch"], r["pid_stop"]) for r in log if "pid_stop" in r]


def test_a_run_logs_when_each_pair_stopped_and_a_resumed_run_keeps_it(user, monkeypatch):
    distill(_config(user / "whole"), progress=False)
    whole = read_log(user / "whole" / "log.jsonl")
    assert _stops(whole) == [
        (1, {"stopped": ["copy|stage1"], "off": ["copy|stage1"]}),
        (2, {"stopped": [], "off": ["copy|stage1"]}),
        (3, {"stopped": [], "off": ["copy|stage1"]}),
    ]
    assert all(r["pid"]["blind|stage2"]["on"] for r in whole)
    assert load_checkpoint(str(user / "whole"))["extra"]["pairs_on"].tolist() == [False, True]
    # killed inside epoch 2 (3 steps an epoch), resumed from epoch 1's checkpoint: the mask is kept
    restore = interrupt_at(monkeypatch, "train-step", 5)
    with pytest.raises(Interrupt):
        distill(_config(user / "cut"), progress=False)
    restore()
    distill(_config(user / "cut"), progress=False, resume=True)
    cut = read_log(user / "cut" / "log.jsonl")
    assert _stops(cut) == _stops(whole)
    for a, b in zip(whole, cut, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["pid"] == b["pid"]
    json.dumps(cut)


def test_config_errors_name_the_fix(user):
    bad = {
        "n_boot": (["pid.n_boot=0"], "pid.stop reads Uni(Y:T\\S)'s interval: set pid.n_boot"),
        "n_perm": (["pid.n_perm=1"], "pid.stop reads the permutation floor: set pid.n_perm >= 2"),
        "pair": (["pid.pairs=[[copy, stage1], [blind, stage1]]"], "not in method.pairs"),
    }
    for case, (extra, message) in bad.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            _config(user / case, *extra)


def test_the_stop_rule_is_refused_under_torchrun_when_the_run_is_built(user, monkeypatch):
    """The run is built before Fit.run joins the process group: the launcher's WORLD_SIZE alone
    says that the run has several processes, and the stop rule (decided on rank 0) is refused."""
    from infodistill.training.runs import build_distillation

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="pid.stop decides on the main process only"):
        build_distillation(_config(user / "run"), progress=False)
    assert not (user / "run" / "config.json").exists()  # nothing was written
