"""End-to-end: train a teacher, then distil with every method on a tiny data set, in seconds."""

import json

import pytest
import torch

from infodistill.training.config import DistillConfig, TeacherTrainConfig, load_config
from infodistill.training.rundir import read_log
from infodistill.training.runs import build_distillation, distill, train_teacher
from runs_close import assert_tensors_close
from runs_close import read_log as untimed_log

COMMON = ["data.name=digits", "data.batch_size=64", "data.eval_batch_size=512", "optim.lr=0.05"]
CNN = ["width=8"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("teacher")
    cfg = load_config(
        TeacherTrainConfig,
        None,
        COMMON
        + [
            "model.name=cnn-small",
            "model.kwargs={width: 16, pool_size: 2}",
            "optim.epochs=4",
            "run.keep_every=2",
            f"run.out_dir={out}",
        ],
    )
    final = train_teacher(cfg, progress=False)
    assert final["test"]["accuracy"] > 0.8  # 8x8 digits are easy
    return out


def distill_cfg(tmp_path, teacher_dir, method, *extra):
    return load_config(
        DistillConfig,
        None,
        COMMON
        + [
            "student.name=cnn-small",
            "student.kwargs={width: 4, pool_size: 2}",
            "teacher.model.name=cnn-small",
            "teacher.model.kwargs={width: 16, pool_size: 2}",
            "teacher.kind=trained",
            f"teacher.checkpoints=['{teacher_dir}']",
            f"method.name={method}",
            "optim.epochs=2",
            f"run.out_dir={tmp_path / method}",
            *extra,
        ],
    )


FEATURE_PAIR = "method.pairs=[[stage3, stage3]]"


@pytest.mark.parametrize(
    "method, extra",
    [
        ("baseline", []),
        ("kd", ["method.params={tau: 4.0, alpha: 0.0}"]),
        ("fitnets", [FEATURE_PAIR]),
        ("vid", [FEATURE_PAIR]),
        ("rid", [FEATURE_PAIR, "optim.epochs=4", "method.params={rounds: 2}", "optim.grad_clip=100"]),
        ("ted", [FEATURE_PAIR]),
    ],
)
def test_every_method_runs_end_to_end(tmp_path, teacher_dir, method, extra):
    final = distill(distill_cfg(tmp_path, teacher_dir, method, *extra), progress=False)
    assert final["test"]["accuracy"] > 0.3
    for key in ("agreement", "kl_teacher_student", "ece", "nll"):
        assert key in final["test"] and key in final["distill_data"]
    assert all(torch.isfinite(torch.tensor(v)) for v in final["train_loss"].values())


def test_progressive_and_ensemble(tmp_path, teacher_dir):
    # The teacher run kept its epoch-2 checkpoint (run.keep_every=2): a trajectory, earliest first.
    assert (teacher_dir / "epoch-0002").is_dir() and not (teacher_dir / "epoch-0001").exists()
    trajectory = f"teacher.checkpoints=['{teacher_dir / 'epoch-0002'}', '{teacher_dir}']"
    final = distill(distill_cfg(tmp_path, teacher_dir, "progressive", trajectory), progress=False)
    assert "agreement" in final["test"]
    ckpts = f"teacher.checkpoints=['{teacher_dir}', '{teacher_dir}']"
    ens = distill_cfg(
        tmp_path, teacher_dir, "kd", "teacher.kind=ensemble", ckpts, "run.out_dir=" + str(tmp_path / "e")
    )
    assert distill(ens, progress=False)["test"]["agreement"] > 0.5


def test_untrained_and_noisy_teachers_with_pid_tracking(tmp_path, teacher_dir):
    cfg = distill_cfg(
        tmp_path,
        teacher_dir,
        "vid",
        FEATURE_PAIR,
        "teacher.kind=untrained",
        "teacher.checkpoints=[]",
        "pid.pairs=[[stage3, stage3]]",
        "pid.k=5",
        "pid.n_samples=300",
    )
    final = distill(cfg, progress=False)
    pid = final["pid"]["stage3|stage3"]
    # An untrained teacher knows little about Y: I(Y;T) is small next to the student's.
    assert pid["mi_t"] < pid["mi_s"]
    assert (tmp_path / "vid" / "teacher-untrained.safetensors").exists()
    noisy = distill_cfg(
        tmp_path,
        teacher_dir,
        "rid",
        FEATURE_PAIR,
        "teacher.kind=noisy",
        "teacher.noise_sigma=2.0",
        "run.out_dir=" + str(tmp_path / "noisy"),
    )
    assert "test" in distill(noisy, progress=False)


def test_method_parameters_are_trained_and_checkpointed(tmp_path, teacher_dir):
    cfg = distill_cfg(tmp_path, teacher_dir, "vid", FEATURE_PAIR, "optim.epochs=1")
    fit = build_distillation(cfg, progress=False)
    before = {k: v.clone() for k, v in fit.extra.state_dict().items()}
    fit.run()
    from safetensors.torch import load_file

    latest = json.loads((tmp_path / "vid" / "latest.json").read_text())["latest"]
    tensors = load_file(str(tmp_path / "vid" / latest / "tensors.safetensors"))
    var_keys = [k for k in before if "alpha" in k]
    assert var_keys, "VID's variance parameters are missing from the method's state"
    for k in var_keys:
        assert any(k in t for t in tensors), k  # in the checkpoint
        assert not torch.equal(before[k], fit.extra.state_dict()[k]), k  # and actually trained


def test_bad_layer_name_fails_at_build_time(tmp_path, teacher_dir):
    cfg = distill_cfg(tmp_path, teacher_dir, "vid", "method.pairs=[[stage9, stage3]]")
    with pytest.raises(ValueError, match="stage9"):
        build_distillation(cfg, progress=False)
    assert not (tmp_path / "vid" / "log.jsonl").exists()


def test_distillation_resume_is_exact(tmp_path, teacher_dir):
    ref = distill(
        distill_cfg(
            tmp_path,
            teacher_dir,
            "rid",
            FEATURE_PAIR,
            "optim.epochs=4",
            "method.params={rounds: 2}",
            "run.out_dir=" + str(tmp_path / "ref"),
        ),
        progress=False,
    )
    cut = distill_cfg(
        tmp_path,
        teacher_dir,
        "rid",
        FEATURE_PAIR,
        "optim.epochs=4",
        "method.params={rounds: 2}",
        "run.out_dir=" + str(tmp_path / "cut"),
    )
    fit = build_distillation(cut, progress=False)
    original = fit.task.on_epoch

    def crash(epoch, total_epochs):
        if epoch == 3:
            raise KeyboardInterrupt
        original(epoch, total_epochs)

    fit.task.on_epoch = crash
    with pytest.raises(KeyboardInterrupt):
        fit.run()
    resumed = distill(cut, progress=False)
    assert resumed["test"] == ref["test"]
    assert read_log(tmp_path / "cut" / "log.jsonl")[-1]["train_loss"] == ref["train_loss"]


def test_channels_last_and_bf16_run(tmp_path, teacher_dir):
    cfg = distill_cfg(
        tmp_path,
        teacher_dir,
        "rid",
        FEATURE_PAIR,
        "run.channels_last=true",
        "run.bf16=true",
        "optim.epochs=2",
        "method.params={rounds: 1}",
    )
    final = distill(cfg, progress=False)
    assert final["test"]["accuracy"] > 0.3
    assert all(torch.isfinite(torch.tensor(v)) for v in final["train_loss"].values())


def test_pid_of_a_noisy_teacher_measures_the_noisy_features(tmp_path, teacher_dir):
    pid = ["pid.pairs=[[stage3, stage3]]", "pid.k=5", "pid.n_samples=300", "optim.epochs=1"]
    clean = distill(distill_cfg(tmp_path, teacher_dir, "vid", FEATURE_PAIR, *pid), progress=False)
    replaced = ["teacher.kind=noisy", "teacher.noise_mode=replace", "teacher.noise_fraction=1.0"]
    out = f"run.out_dir={tmp_path / 'noise'}"
    noisy = distill(
        distill_cfg(tmp_path, teacher_dir, "vid", FEATURE_PAIR, *pid, *replaced, out), progress=False
    )
    # Features replaced by pure noise carry (almost) no label information; the clean ones do.
    assert noisy["pid"]["stage3|stage3"]["mi_t"] < 0.25 < clean["pid"]["stage3|stage3"]["mi_t"]


def test_rid_at_zero_weight_trains_the_student_as_the_baseline(tmp_path, teacher_dir):
    """Second path to the same weights: with lam = 0 and the student trained in the filter phases,
    RID's filters and heads must not touch the student's updates. The clip is small enough to engage
    on every step, so one norm shared by the student and RID's heads (what the trainer did before)
    changes the student's steps; this is what put `rid-nofreeze` half a point under the baseline."""
    clip = ["optim.grad_clip=0.05", "optim.epochs=3"]
    base_fit = build_distillation(distill_cfg(tmp_path, teacher_dir, "baseline", *clip), progress=False)
    base_fit.run()
    params = "method.params={lam: 0.0, student_in_phase1: true, rounds: 2}"
    fit = build_distillation(
        distill_cfg(tmp_path, teacher_dir, "rid", FEATURE_PAIR, params, *clip), progress=False
    )
    heads = {k: v.clone() for k, v in fit.extra.heads.state_dict().items()}
    fit.run()
    assert any(not torch.equal(v, fit.extra.heads.state_dict()[k]) for k, v in heads.items())  # heads trained
    # Another code path (RID's step) to the same updates: equal within float32 rounding
    # (runs_close); a shared clip norm scales every clipped step, far outside it.
    assert_tensors_close(fit.student.state_dict(), base_fit.student.state_dict())


def test_rid_phases_switch_per_step_and_the_log_counts_them(tmp_path, teacher_dir):
    """Two epochs hold the reference's 10 rounds when counted in steps: every epoch's log line
    says how many steps each phase had, the student trained in 3/4 of them (within one step per
    round), and the filter phase's terms are averaged over the filter steps only."""
    fit = build_distillation(distill_cfg(tmp_path, teacher_dir, "rid", FEATURE_PAIR), progress=False)
    per_epoch = -(-len(fit.train) // 64)
    fit.run()
    log = read_log(tmp_path / "rid" / "log.jsonl")
    steps = [r["phase_steps"] for r in log]
    assert all(sum(s.values()) == per_epoch and set(s) == {"filter", "student"} for s in steps)
    student = sum(s["student"] for s in steps)
    assert abs(student - 0.75 * 2 * per_epoch) <= 10
    # a term of one phase is a mean over that phase's steps: the filter CE of a new head on 10
    # classes starts near log(10) = 2.3 (2.14 over epoch 1), which a mean over all steps would
    # dilute by the filter share (~1/4)
    assert log[0]["train_loss"]["filter_ce"] > 1.0


def test_a_step_schedule_that_falls_on_epochs_is_the_epoch_schedule(tmp_path, teacher_dir, monkeypatch):
    """Rounds of two epochs with half of each in phase 1: counted in steps or in epochs the phases
    switch at the same steps, so the two runs are the same computation, bit for bit (one code path:
    only the function deciding the phase differs)."""
    from infodistill.training.distiller import Distiller

    params = "method.params={rounds: 2, phase1_fraction: 0.5}"
    over = [FEATURE_PAIR, params, "optim.epochs=4"]
    distill(distill_cfg(tmp_path / "steps", teacher_dir, "rid", *over), progress=False)
    on_step = Distiller.on_step
    seen = []

    def by_epoch(self, step, total_steps, steps_per_epoch=1):
        seen.append(step)
        return on_step(self, step // steps_per_epoch, total_steps // steps_per_epoch)

    monkeypatch.setattr(Distiller, "on_step", by_epoch)
    distill(distill_cfg(tmp_path / "epochs", teacher_dir, "rid", *over), progress=False)
    assert len(seen) > 8  # the patched schedule ran
    a, b = (untimed_log(tmp_path / d / "rid") for d in ("steps", "epochs"))
    assert a == b
    n = a[0]["phase_steps"]["filter"]
    assert [r["phase_steps"] for r in a] == [{"filter": n}, {"student": n}] * 2
