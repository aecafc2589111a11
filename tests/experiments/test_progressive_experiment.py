"""E3 reproduction machinery on a tiny sparse parity: the configs, the curriculum measures on
planted outputs, the steps count, the report, the claims (premises first) and resumption."""

import json

import numpy as np
import pytest
import torch

from infodistill.cli import main
from infodistill.experiments.progressive import (
    ProgressivePreset,
    distill_config,
    run_progressive,
    steps_to,
    transition_epoch,
)
from infodistill.experiments.progressive.curriculum import measure_checkpoint
from infodistill.experiments.progressive.report import check_claims

TINY = dict(
    name="tiny",
    n=6,
    k=2,
    train_size=256,
    test_size=128,
    teacher_hidden=32,
    student_hidden=8,
    batch_size=64,
    lr=0.2,
    teacher_epochs=4,
    student_epochs=2,
    transition_accuracy=0.51,
    probe_size=256,
    settings=("labels", "kd", "progressive", "progressive-all"),
    seeds=(0,),
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("e3")
    return out, run_progressive(ProgressivePreset(**TINY), out, progress=False)


def test_report_has_every_setting_the_curriculum_and_the_claims(tiny_run):
    out, report = tiny_run
    text = report.read_text()
    for s in TINY["settings"]:
        assert f"| {s} |" in text
    for png in ("curriculum.png", "students.png"):
        assert (out / png).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["teacher_accuracy"]) == TINY["teacher_epochs"]
    curriculum = json.loads((out / "curriculum.json").read_text())
    assert sorted(map(int, curriculum)) == list(range(1, TINY["teacher_epochs"] + 1))
    # a 4-epoch teacher of width 32 does not learn the parity: every claim waits on its premise
    # (or, with one seed, is undecided)
    assert all(c["held"] in ("premise", None) for c in summary["claims"])
    # the table's steps are those of the runs' logs
    log = [json.loads(x) for x in (out / "labels-s0" / "log.jsonl").read_text().splitlines()]
    accs = [r["test"]["accuracy"] for r in log]
    assert summary["steps"]["labels"]["0"] == steps_to(accs, 0.9, 4)


def test_the_progressive_student_follows_the_teachers_checkpoints(tmp_path):
    p = ProgressivePreset(**TINY)
    cfg = distill_config(p, "progressive", 3, tmp_path, transition=2)
    assert [c.rsplit("/", 1)[-1] for c in cfg.teacher.checkpoints] == ["epoch-0002", "epoch-0004"]
    assert cfg.method.params == {"tau": 1.0, "alpha": 0.0, "milestones": [2]}
    every = distill_config(p, "progressive-all", 3, tmp_path, transition=None)
    assert len(every.teacher.checkpoints) == 4 and every.method.params["milestones"] == [1, 2, 3]
    kd = distill_config(p, "kd", 3, tmp_path, transition=None)
    assert kd.teacher.checkpoints[0].endswith("epoch-0004") and kd.method.params["alpha"] == 0.0
    # the paper's optimiser: plain SGD at a constant rate
    assert (kd.optim.momentum, kd.optim.weight_decay, kd.optim.schedule) == (0.0, 0.0, "constant")
    with pytest.raises(ValueError, match="transition epoch"):
        distill_config(p, "progressive", 0, tmp_path, transition=4)


def test_steps_and_transition_by_hand():
    accs = [0.5, 0.62, 0.85, 0.93, 1.0]
    assert steps_to(accs, 0.9, 100) == 400  # the 4th epoch's evaluation
    assert steps_to(accs[:3], 0.9, 100) is None
    assert transition_epoch(accs, 0.6) == 2
    # the last checkpoint is the final teacher, not an intermediate one
    assert transition_epoch([0.5, 0.5, 0.99], 0.6) is None


def test_curriculum_measures_on_planted_outputs():
    rng = np.random.default_rng(0)
    x = rng.choice([-1.0, 1.0], size=(20000, 6))
    y = (x[:, :2].prod(1) < 0).astype(np.int64)
    # an output that follows x_0 alone (two bins, deterministic): I(o; x_0) = H(x_0), the sample's
    # binary entropy, and nothing about y
    planted = measure_checkpoint(np.where(x[:, 0] < 0, 0.9, 0.1), x, y, k=2, bins=8, n_pid=1)
    assert planted["mi"][0] == pytest.approx(_h2(np.mean(x[:, 0] < 0)), abs=1e-9)
    assert max(planted["mi"][1:]) < 1e-3 and planted["mi_label"] < 1e-3
    # x_0 nearly independent of y: almost all of it is x_0's unique information in the PID of
    # I(o; (x_0, y))
    assert planted["pid"]["0"]["unique_x"] == pytest.approx(planted["mi"][0], abs=1e-3)
    # centred correlation |E[x_0 (p - E p)]| = 0.4 (p = 0.5 - 0.4 x_0)
    assert planted["corr"][0] == pytest.approx(0.4, abs=0.01)
    # the final teacher: p = the label; one bit about y, nothing about any single coordinate,
    # and the bit about y given (x_0, y) is y's alone
    final = measure_checkpoint(np.where(y == 1, 0.99, 0.01), x, y, k=2, bins=8, n_pid=1)
    assert final["mi_label"] == pytest.approx(_h2(np.mean(y)), abs=1e-9) and final["support_mi"] < 1e-3
    assert final["pid"]["0"]["unique_y"] == pytest.approx(final["mi_label"], abs=1e-3)
    assert final["accuracy"] == 1.0


def _h2(q: float) -> float:
    """Binary entropy in bits."""
    return float(-(q * np.log2(q) + (1 - q) * np.log2(1 - q)))


def _curriculum(peak: float, final: float, off: float = 0.001) -> dict:
    row = lambda s: {"accuracy": 0.7, "support_mi": s, "off_mi_max": off, "mi": [s, s, off, off],  # noqa: E731
                     "support_corr": s, "off_corr_max": off, "corr": [s, s, off, off]}  # fmt: skip
    return {1: row(0.0), 2: row(peak), 3: row(final)}


def test_claims_are_computed_from_the_numbers():
    # 1 000 steps an epoch, 4 epochs: a run that never reaches the target counts as 5 000 steps
    p = ProgressivePreset(**{**TINY, "teacher_epochs": 3, "train_size": 64000, "student_epochs": 4})
    fast = {"progressive": {0: 1000, 1: 1200, 2: 900}, "kd": {0: 3000, 1: 3500, 2: 2800}}
    fast["labels"] = {0: 3100, 1: None, 2: 2900}  # a label-only run that never got there: 5 000
    held = [h for _, h, _ in check_claims(p, 1.0, 2, fast, _curriculum(0.05, 0.01))]
    # vs KD, vs labels, every checkpoint (not run), the curriculum by MI and by correlation
    assert held == [True, True, None, True, True]
    # the final teacher still shows half the peak: not the curriculum the paper describes
    faded = check_claims(p, 1.0, 2, fast, _curriculum(0.05, 0.03))
    assert [h for _, h, _ in faded[3:]] == [False, False]
    # the paired differences straddle 0: did not hold
    mixed = {"progressive": {0: 1000, 1: 4000, 2: 2000}, "kd": {0: 3000, 1: 2000, 2: 2100}}
    assert check_claims(p, 1.0, 2, mixed, _curriculum(0.05, 0.01))[0][1] is False
    # a progressive run that never reaches the target cannot be faster
    missed = {"progressive": {0: None, 1: 100, 2: 100}, "kd": {0: 3000, 1: 3000, 2: 3100}}
    assert check_claims(p, 1.0, 2, missed, _curriculum(0.05, 0.01))[0][1] is False
    # a teacher that did not learn the task: no claim is judged
    weak = check_claims(p, 0.8, 2, fast, _curriculum(0.05, 0.01))
    assert {h for c, h, _ in weak if "every checkpoint" not in c} == {"premise"}
    assert "premise not met" in weak[0][2]
    # no intermediate checkpoint: the progressive claims wait on that premise
    assert check_claims(p, 1.0, None, fast, _curriculum(0.05, 0.01))[0][1] == "premise"


def test_rerun_retrains_nothing(tiny_run):
    out, _ = tiny_run
    before = {q: q.stat().st_mtime_ns for q in out.glob("*/log.jsonl")}
    run_progressive(ProgressivePreset(**TINY), out, progress=False)
    assert before == {q: q.stat().st_mtime_ns for q in out.glob("*/log.jsonl")}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--data", "mnist1d"], "drop --data"),
        (["--set", "settings=[fancy]"], "unknown E3 setting"),
        (["--set", "target_accuracy=0.4"], "target_accuracy must lie in"),
    ],
)
def test_reproduce_progressive_cli_errors(args, message, capsys, tmp_path):
    assert main(["reproduce", "progressive", "--out", str(tmp_path / "x"), "--quiet", *args]) == 2
    assert message in capsys.readouterr().err
