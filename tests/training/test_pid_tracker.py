"""The PID tracker's teacher symbols: computed once per teacher and reused across runs by content."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import torch

import infodistill.pid as pid
from infodistill.data.loader import TensorPairs
from infodistill.models import build_model
from infodistill.training import pid_tracker
from infodistill.training.config import PIDConfig
from infodistill.training.pid_tracker import PIDTracker


def _tracker(student, teacher, test, seed=0):
    cfg = PIDConfig(pairs=[["stage3", "stage3"]], k=4, pca=3, n_samples=64)
    return PIDTracker(cfg, student, teacher, test, epochs=1, seed=seed, batch_size=32)


def test_a_teacher_shared_by_runs_is_discretised_once_and_a_changed_one_again(monkeypatch):
    torch.manual_seed(0)
    student = build_model("cnn-small", in_channels=1, num_classes=3, width=4).eval()
    teacher = build_model("cnn-small", in_channels=1, num_classes=3, width=8).eval()
    x = torch.randn(64, 1, 12, 12)
    test = TensorPairs(x, torch.arange(64) % 3)
    calls = []
    monkeypatch.setattr(pid_tracker, "_TEACHER_SYMBOLS", OrderedDict())  # nothing kept from other tests
    real = pid.discretize
    monkeypatch.setattr(pid_tracker, "discretize", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = _tracker(student, teacher, test)(0)
    # another run: a copy of the same teacher (another object), same examples and settings
    second = _tracker(copy.deepcopy(student), copy.deepcopy(teacher), test)(0)
    assert len(calls) == 1
    assert first == second
    # an independent computation: the same teacher's symbols discretised anew give the same terms
    fresh = real(_features(teacher, x), k=4, pca=3, seed=0)
    again = _tracker(student, teacher, test)._teacher_symbols("stage3")
    np.testing.assert_array_equal(fresh.symbols, again.symbols)
    # a teacher with other weights, or another seed, is discretised again
    other = copy.deepcopy(teacher)
    with torch.no_grad():
        next(other.parameters()).add_(0.5)
    _tracker(student, other, test)(0)
    _tracker(student, teacher, test, seed=1)(0)
    assert len(calls) == 3  # the first run, the other teacher, the other seed


def _features(teacher, x):
    from infodistill.models import collect_features

    return collect_features(teacher, ["stage3"], x, 32)[1]["stage3"].numpy()


def test_the_tracker_measures_with_one_blas_thread(monkeypatch):
    from threadpoolctl import threadpool_info

    torch.manual_seed(0)
    student = build_model("cnn-small", in_channels=1, num_classes=3, width=4).eval()
    teacher = build_model("cnn-small", in_channels=1, num_classes=3, width=8).eval()
    test = TensorPairs(torch.randn(64, 1, 12, 12), torch.arange(64) % 3)
    seen = []
    real = pid.estimate

    def spy(*a, **k):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return real(*a, **k)

    monkeypatch.setattr(pid_tracker, "estimate", spy)
    assert "pid" in _tracker(student, teacher, test)(0)
    assert seen == [{1}]
