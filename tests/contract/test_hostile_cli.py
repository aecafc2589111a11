"""Hostile and broken inputs at the command line: every case ends with exit status 2 and exactly
one line ``infodistill: error: ...`` on stderr naming the problem (no traceback, nothing on stdout),
or, for valid but extreme inputs, with the right answer. Training commands must fail before any
training step (``Tensor.backward`` is made to raise, so a case that starts training fails loudly).
No user file is ever unpickled: malicious payloads leave a marker file behind if they run.

Most cases call :func:`infodistill.cli.main` in-process; a few run ``python -m infodistill`` in a
subprocess to check the real exit status and stderr.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import infodistill
from gates import AND_RED, and_counts
from infodistill import cli


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_error(capsys, *argv, needles=()) -> str:
    rc, out, err = run(capsys, *argv)
    assert "Traceback" not in out + err
    assert rc == 2, (rc, err)
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("infodistill: error: ") and len(err) > len("infodistill: error: ") + 5, err
    for needle in needles:
        assert needle.lower() in err.lower(), (needle, err)
    return err


def save(path: Path, arr) -> Path:
    assert path.suffix == ".npy"  # np.save would append it otherwise
    np.save(path, arr)
    return path


@pytest.fixture(autouse=True)
def _no_training(monkeypatch):
    """A training case that gets as far as a backward pass has failed to fail early."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started: the input should have been refused before")

    monkeypatch.setattr(torch.Tensor, "backward", refuse)
    torch.set_num_threads(1)


# ==================================================================================== pid JOINT


def _joint_cases(tmp: Path, marker: Path) -> dict:
    evil_npy = tmp / "evil_objects.npy"
    np.save(evil_npy, np.array([_Evil(marker), 1], dtype=object), allow_pickle=True)
    evil_npz = tmp / "evil.npz"
    np.savez(evil_npz, p=np.array([_Evil(marker)], dtype=object))
    raw_pickle = tmp / "raw.npy"
    raw_pickle.write_bytes(pickle.dumps(_Evil(marker)))
    empty_npz = tmp / "none.npz"
    np.savez(empty_npz)
    return {
        "object array with a payload": ([evil_npy], ["evil_objects.npy", "never unpickles"]),
        "npz with a payload": ([evil_npz], ["evil.npz", "never unpickles"]),
        "raw pickle named .npy": ([raw_pickle], ["raw.npy", "pickle"]),
        "npz without arrays": ([empty_npz], ["none.npz", "0 arrays"]),
        "structured dtype": ([save(tmp / "rec.npy", np.zeros(3, dtype=[("a", "f8")]))], ["structured"]),
        "bool, not normalised": ([save(tmp / "b.npy", np.ones((2, 2, 2), bool))], ["b.npy", "sums to 8"]),
        "5-D": ([save(tmp / "d5.npy", np.full((2,) * 5, 1 / 32))], ["3-d"]),
        "zero counts": ([save(tmp / "z.npy", np.zeros((2, 2, 2))), "--counts"], ["total 0"]),
        "inf counts": (
            [save(tmp / "i.npy", np.where(and_counts() > 0, np.inf, 0.0)), "--counts"],
            ["infinite"],
        ),
        "empty axis": ([save(tmp / "e.npy", np.zeros((2, 0, 2))), "--counts"], ["empty"]),
        "datetimes": ([save(tmp / "dt.npy", np.zeros((2, 2, 2), "datetime64[s]"))], ["datetimes"]),
        "tol 0": ([save(tmp / "ok.npy", and_counts() / 4), "--tol", "0"], ["tol"]),
    }


@pytest.mark.parametrize(
    "case",
    [
        "object array with a payload",
        "npz with a payload",
        "raw pickle named .npy",
        "npz without arrays",
        "structured dtype",
        "bool, not normalised",
        "5-D",
        "zero counts",
        "inf counts",
        "empty axis",
        "datetimes",
        "tol 0",
    ],
)
def test_broken_joint_arrays(tmp_path, capsys, case):
    marker = tmp_path / "PWNED"
    argv, needles = _joint_cases(tmp_path, marker)[case]
    assert_error(capsys, "pid", *argv, needles=needles)
    assert not marker.exists()


@pytest.mark.parametrize("scale", [np.finfo(float).max / 2, 1e300, 5e-324])
def test_extreme_count_histograms_give_the_and_gate(tmp_path, capsys, scale):
    """Counts whose total overflows float64 (or that are subnormal) are a valid histogram: the CLI
    prints the closed-form AND-gate decomposition and nothing on stderr."""
    path = save(tmp_path / "and.npy", and_counts() * scale)
    rc, out, err = run(capsys, "pid", path, "--counts", "--json")
    assert rc == 0 and err == ""
    d = json.loads(out)
    assert d["redundancy"] == pytest.approx(AND_RED, abs=d["gap"] + 1e-9)
    assert d["synergy"] == pytest.approx(0.5, abs=d["gap"] + 1e-9)
    assert abs(d["unique_t"]) <= d["gap"] + 1e-9 and abs(d["unique_s"]) <= d["gap"] + 1e-9


# ==================================================================================== pid --labels


def _features(tmp: Path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    t = 8.0 * np.eye(3)[y] + rng.standard_normal((n, 3))
    s = 8.0 * np.stack([y == 0, y != 0], axis=1) + rng.standard_normal((n, 2))
    return y, t, s, save(tmp / "y.npy", y), save(tmp / "t.npy", t), save(tmp / "s.npy", s)


EST = ["--k-t", "3", "--k-s", "2", "--pca", "0", "--perm", "0", "--json"]


@pytest.mark.parametrize(
    "case",
    [
        "labels 4-D",
        "labels datetimes",
        "teacher 5-D",
        "student objects",
        "teacher inf",
        "student longer",
        "empty labels",
    ],
)
def test_broken_feature_files(tmp_path, capsys, case):
    y, t, s, Y, T, S = _features(tmp_path)
    needles = []
    if case == "labels 4-D":
        Y, needles = save(tmp_path / "y4.npy", y.reshape(-1, 1, 1, 1)), ["y4.npy", "1-d"]
    elif case == "labels datetimes":
        Y, needles = save(tmp_path / "yd.npy", y.astype("datetime64[D]")), ["yd.npy", "datetimes"]
    elif case == "teacher 5-D":
        T, needles = save(tmp_path / "t5.npy", t.reshape(-1, 1, 1, 1, 3)), ["t5.npy", "4-d"]
    elif case == "student objects":
        marker = tmp_path / "PWNED"
        S = tmp_path / "so.npy"
        np.save(S, np.array([_Evil(marker)] * len(y), dtype=object), allow_pickle=True)
        needles = ["so.npy", "never unpickles"]
    elif case == "teacher inf":
        t[5, 1] = -np.inf
        T, needles = save(tmp_path / "ti.npy", t), ["ti.npy", "infinite"]
    elif case == "student longer":
        S, needles = save(tmp_path / "sl.npy", np.concatenate([s, s[:4]])), ["mismatched lengths", "304"]
    elif case == "empty labels":
        Y, needles = save(tmp_path / "ye.npy", y[:0]), ["ye.npy", "empty"]
    assert_error(capsys, "pid", "--labels", Y, "--teacher", T, "--student", S, *EST, needles=needles)
    assert not (tmp_path / "PWNED").exists()


def test_huge_class_ids_and_feature_scales_give_the_plain_answer(tmp_path, capsys):
    """Class ids 1e300 apart (beyond int64) and features at 1e300 / 1e-300: the same histogram and
    terms as the plain files, not merged classes or clusters of overflowed distances."""
    y, t, s, Y, T, S = _features(tmp_path)
    rc, out, err = run(capsys, "pid", "--labels", Y, "--teacher", T, "--student", S, *EST)
    assert rc == 0, err
    ref = json.loads(out)
    huge_y = save(tmp_path / "yh.npy", np.array([1e300, -1e300, 2.0**70])[y])
    huge_t = save(tmp_path / "th.npy", t * 1e300)
    tiny_s = save(tmp_path / "st.npy", s * 1e-300)
    rc, out, err = run(capsys, "pid", "--labels", huge_y, "--teacher", huge_t, "--student", tiny_s, *EST)
    assert rc == 0 and err == ""
    got = json.loads(out)
    # Rows follow the sorted class ids: -1e300 (class 1), 2**70 (class 2), 1e300 (class 0).
    np.testing.assert_array_equal(np.array(got["counts"]), np.array(ref["counts"])[[1, 2, 0]])
    for term, value in ref["pid"].items():
        if term != "unit":
            assert got["pid"][term] == pytest.approx(value, abs=1e-9), term
    # And the values themselves: T's clusters are the 3 equiprobable classes and S's tell class 0
    # from the rest, a function of T: Red = I(Y;S) = h(1/3), Uni(Y:T\S) = log2 3 - h(1/3), rest 0.
    h_s = -(1 / 3) * math.log2(1 / 3) - (2 / 3) * math.log2(2 / 3)
    pid = ref["pid"]
    tol = pid["gap"] + 1e-6
    assert pid["mi_t"] == pytest.approx(math.log2(3), abs=tol) and pid["mi_s"] == pytest.approx(h_s, abs=tol)
    assert pid["redundancy"] == pytest.approx(h_s, abs=tol)
    assert pid["unique_t"] == pytest.approx(math.log2(3) - h_s, abs=tol)
    assert abs(pid["unique_s"]) <= tol and abs(pid["synergy"]) <= tol


# ==================================================================================== configs

BASE = (
    "data: {name: digits, train_subset: 60, test_subset: 30}\nmodel: {name: cnn-small, kwargs: {width: 2}}\n"
)
DISTILL = (
    "data: {name: digits, train_subset: 60, test_subset: 30}\n"
    "student: {name: cnn-small, kwargs: {width: 2}}\n"
    "teacher: {kind: untrained, model: {name: cnn-small, kwargs: {width: 2}}}\n"
)

TEACHER_CASES = {
    # name: (config text, overrides, words the error must contain)
    "python tag": ("run: !!python/object/apply:os.system ['touch {marker}']\n", [], ["not valid safe yaml"]),
    "python name tag": ("model: !!python/name:os.system\n", [], ["not valid safe yaml"]),
    "invalid yaml": ("data: {name: digits\n", [], ["not valid safe yaml"]),
    "list at the top": ("- data\n- optim\n", ["optim.epochs=1"], ["mapping of sections"]),
    "unknown top key": (BASE + "optimizer: {lr: 0.1}\n", [], ["unknown config key 'optimizer'"]),
    "unknown nested key": (BASE, ["optim.learning_rate=0.1"], ["unknown config key 'optim.learning_rate'"]),
    "unknown model option": (BASE, ["model.kwargs.depth=3"], ["unknown option", "depth"]),
    "wrong type": (BASE, ["optim.epochs=two"], ["'optim.epochs': expected int"]),
    "lr < 0": (BASE, ["optim.lr=-0.1"], ["optim.lr must be > 0"]),
    "lr inf": (BASE, ["optim.lr=.inf"], ["'optim.lr': expected a finite number"]),
    "epochs 0": (BASE, ["optim.epochs=0"], ["optim.epochs must be > 0"]),
    "batch 0": (BASE, ["data.batch_size=0"], ["data.batch_size must be > 0"]),
    "gamma < 0": (BASE, ["optim.gamma=-0.1"], ["optim.gamma must be > 0"]),
    "threads 0": (BASE, ["run.threads=0"], ["run.threads must be > 0"]),
    "seed < 0": (BASE, ["run.seed=-3"], ["run.seed must lie in"]),
    "unknown dataset": (BASE, ["data.name=imagenet"], ["unknown dataset 'imagenet'", "digits"]),
    "unknown model": (BASE, ["model.name=vgg16"], ["unknown model 'vgg16'"]),
    "absurd width": (BASE, ["model.kwargs.width=10000000000"], ["does not fit in memory"]),
    "missing data dir": (BASE, ["data.name=cifar10", "data.root=/nonexistent/cifar"], ["/nonexistent/cifar"]),
}


@pytest.mark.parametrize("case", sorted(TEACHER_CASES))
def test_train_teacher_config_errors(tmp_path, capsys, case):
    text, overrides, needles = TEACHER_CASES[case]
    marker = tmp_path / "PWNED"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text.replace("{marker}", str(marker)))
    out = tmp_path / "run"
    assert_error(capsys, "train-teacher", cfg, *overrides, "--out", out, "--quiet", needles=needles)
    assert not marker.exists()
    assert not (out / "latest.json").exists()


DISTILL_CASES = {
    "no teacher section": ("data: {name: digits}\n", [], ["teacher.checkpoints: a trained teacher needs"]),
    "unknown method": (DISTILL, ["method.name=magic"], ["unknown method 'magic'"]),
    "method param typo": (DISTILL, ["method.params={temperature: 4}"], ["unknown argument", "temperature"]),
    "method param string": (DISTILL, ["method.params={tau: hot}"], ["tau must be a finite number"]),
    "method param inf": (
        DISTILL,
        ["method.name=vid", "method.pairs=[[stage3, stage3]]", "method.params={lam: .inf}"],
        ["lam must be a finite number"],
    ),
    "negative lambda": (
        DISTILL,
        ["method.name=rid", "method.pairs=[[stage3, stage3]]", "method.params={lam: -1}"],
        ["lam must be >= 0"],
    ),
    "layer typo": (
        DISTILL,
        ["method.name=vid", "method.pairs=[[stage9, stage3]]"],
        ["no module named 'stage9'"],
    ),
    "pid k 1": (DISTILL, ["pid.pairs=[[stage3, stage3]]", "pid.k=1"], ["pid.k must be >= 2"]),
    "pid every 0": (DISTILL, ["pid.pairs=[[stage3, stage3]]", "pid.every=0"], ["pid.every must be > 0"]),
    "noise sigma < 0": (DISTILL, ["teacher.noise_sigma=-1"], ["teacher.noise_sigma must be >= 0"]),
    "missing teacher checkpoint": (
        DISTILL,
        ["teacher.kind=trained", "teacher.checkpoints=[/nonexistent/run]"],
        ["/nonexistent/run", "not an infodistill checkpoint"],
    ),
}


@pytest.mark.parametrize("case", sorted(DISTILL_CASES))
def test_distill_config_errors(tmp_path, capsys, case):
    text, overrides, needles = DISTILL_CASES[case]
    cfg = tmp_path / "d.yaml"
    cfg.write_text(text)
    out = tmp_path / "run"
    assert_error(capsys, "distill", cfg, *overrides, "--out", out, "--quiet", needles=needles)
    assert not (out / "latest.json").exists()


def test_config_paths_that_are_not_config_files(tmp_path, capsys):
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert_error(capsys, "train-teacher", folder, needles=["is a directory"])
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xd8\xff\xe0 a jpeg, not yaml")
    assert_error(capsys, "train-teacher", binary, needles=["b.yaml", "utf-8"])
    assert_error(capsys, "train-teacher", tmp_path / "gone.toml", needles=["gone.toml", "does not exist"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE)
    clash = tmp_path / "a_file"
    clash.write_text("")
    # --out names an existing file: an OSError from mkdir, reported as one line.
    assert_error(
        capsys, "train-teacher", cfg, "optim.epochs=1", "--out", clash, "--quiet", needles=["a_file"]
    )


# ==================================================================================== run directories


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A real one-epoch train-teacher run (digits, tiny CNN), made once."""
    d = tmp_path_factory.mktemp("trained")
    cfg = d / "t.yaml"
    cfg.write_text(BASE)
    torch.set_num_threads(1)
    assert cli.main(["train-teacher", str(cfg), "optim.epochs=1", "--out", str(d / "run"), "--quiet"]) == 0
    return d / "run"


def _corrupt(run: Path, tmp: Path, how: str, marker: Path) -> Path:
    bad = tmp / f"run-{how}"
    shutil.copytree(run, bad)
    ckpt = next(bad.glob("epoch-*"))
    tensors, state = ckpt / "tensors.safetensors", ckpt / "state.json"
    if how == "truncated":
        tensors.write_bytes(tensors.read_bytes()[:100])
    elif how == "pickle":
        tensors.write_bytes(pickle.dumps({"student": _Evil(marker)}))
    elif how == "torch.save":
        torch.save({"student": _Evil(marker)}, tensors)
    elif how == "no state.json":
        state.unlink()
    elif how == "state list":
        state.write_text("[]")
    elif how == "no weights":
        state.write_text('{"epoch": 0}')
    elif how == "pointer escape":
        (bad / "latest.json").write_text('{"latest": "../../../../etc"}')
    elif how in ("nan weights", "int weights"):
        t = load_file(str(tensors))
        key = next(k for k in t if k.startswith(".student") and t[k].is_floating_point())
        t[key] = t[key] * float("nan") if how == "nan weights" else t[key].to(torch.int64)
        save_file(t, str(tensors))
    elif how == "other architecture":
        raw = json.loads((bad / "config.json").read_text())
        raw["model"]["kwargs"]["width"] = 3
        (bad / "config.json").write_text(json.dumps(raw))
    elif how == "config.json corrupt":
        (bad / "config.json").write_text("{oops")
    return bad


CORRUPTIONS = {
    "truncated": ["truncated or corrupt"],
    "pickle": ["truncated or corrupt"],
    "torch.save": ["truncated or corrupt"],
    "no state.json": ["not an infodistill checkpoint", "state.json"],
    "state list": ["must hold a mapping"],
    "no weights": ["has no 'student' entry"],
    "pointer escape": ["must name a checkpoint directory beside it"],
    "nan weights": ["nan or infinite values"],
    "int weights": ["integer/float mismatch"],
    "other architecture": ["another architecture", "shape mismatch"],
    "config.json corrupt": ["config.json is not valid json"],
}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_evaluate_a_broken_run_directory(trained_run, tmp_path, capsys, how):
    marker = tmp_path / "PWNED"
    bad = _corrupt(trained_run, tmp_path, how, marker)
    assert_error(capsys, "evaluate", bad, needles=CORRUPTIONS[how])
    assert not marker.exists()


@pytest.mark.parametrize("how", ["pickle", "nan weights", "int weights", "no weights", "truncated"])
def test_distill_from_a_broken_teacher(trained_run, tmp_path, capsys, how):
    marker = tmp_path / "PWNED"
    bad = _corrupt(trained_run, tmp_path, how, marker)
    cfg = tmp_path / "d.yaml"
    cfg.write_text(DISTILL.replace("kind: untrained", f"kind: trained, checkpoints: ['{bad}']"))
    out = tmp_path / "student"
    assert_error(capsys, "distill", cfg, "--out", out, "--quiet", needles=CORRUPTIONS[how])
    assert not marker.exists() and not (out / "latest.json").exists()


def test_audit_refuses_one_cluster_and_a_diverged_teacher(trained_run, tmp_path, capsys):
    student = ["--student", "untrained", "--student-model", "cnn-small", "--student-kwargs", "{width: 2}"]
    # One cluster carries no information: the verdict would be a silent "nothing to distill".
    assert_error(
        capsys, "audit", "--teacher", trained_run, *student, "--k", "1", needles=["--k must be >= 2"]
    )
    bad = _corrupt(trained_run, tmp_path, "nan weights", tmp_path / "PWNED")
    assert_error(capsys, "audit", "--teacher", bad, *student, "--boot", "2", needles=["nan or infinite"])


def test_reproduce_refuses_bad_options_before_running(tmp_path, capsys):
    assert_error(
        capsys, "reproduce", "rid", "--preset", "huge", "--out", tmp_path, needles=["unknown preset 'huge'"]
    )
    assert_error(
        capsys, "reproduce", "rid", "--epochs", "0", "--out", tmp_path, needles=["--epochs must be >= 1"]
    )
    assert list(tmp_path.iterdir()) == []


# ==================================================================================== known gaps
# Inputs that still fail late; each test flips to XPASS (a strict failure) once its fix lands.


def test_pid_layer_typo_fails_before_training(tmp_path, capsys):
    cfg = tmp_path / "d.yaml"
    cfg.write_text(DISTILL)
    assert_error(
        capsys,
        "distill",
        cfg,
        "pid.pairs=[[stage9, stage3]]",
        "--out",
        tmp_path / "r",
        "--quiet",
        needles=["stage9"],
    )


def test_resume_with_a_config_json_that_is_a_list(trained_run, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "run"
    shutil.copytree(trained_run, bad)
    (bad / "config.json").write_text("[]")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(BASE)
    assert_error(capsys, "train-teacher", cfg, "optim.epochs=1", "--out", bad, "--resume", "--quiet")


def test_reproduce_with_a_negative_seed(tmp_path, capsys):
    argv = ["reproduce", "rid", "--seeds", "-1", "--data", "digits", "--out", tmp_path]
    assert_error(capsys, *argv, needles=["seed"])


# ==================================================================================== subprocess


def _subprocess(*argv, cwd):
    src = str(Path(infodistill.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    return subprocess.run(
        [sys.executable, "-m", "infodistill", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def test_real_process_exit_status_and_stderr(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.npy"
    np.save(evil, np.array([_Evil(marker)], dtype=object), allow_pickle=True)
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"run: !!python/object/apply:os.system ['touch {marker}']\n")
    for argv, needle in (
        (("pid", evil), "never unpickles"),
        (("train-teacher", cfg), "not valid safe YAML"),
        (("evaluate", tmp_path), "not a run directory"),
    ):
        proc = _subprocess(*argv, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and "Traceback" not in proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("infodistill: error: ") and needle in lines[0]
    assert not marker.exists()


def test_pid_inputs_too_large_for_the_memory_budget_are_one_line_errors(tmp_path, capsys, monkeypatch):
    # The budget (pid/limits.py) sized down so that small files stand for huge ones: the same check
    # refuses 200 000 distinct labels at the default 4 GiB.
    monkeypatch.setenv("INFODISTILL_PID_MEMORY_GB", "0.001")  # ~1 MiB
    rng = np.random.default_rng(0)
    n = 3000
    labels = save(tmp_path / "y.npy", np.arange(n))  # 3000 distinct labels
    feats = save(tmp_path / "t.npy", rng.normal(size=(n, 4)).astype(np.float32))
    # 3000 labels x 10 x 10 clusters, 16 float64 copies: 38 MB
    err = assert_error(
        capsys, "pid", "--labels", labels, "--teacher", feats, "--student", feats, "--pca", "0",
        needles=("memory budget", "3000 x 10 x 10", "fewer labels"),
    )
    assert "INFODISTILL_PID_MEMORY_GB" in err
    # more clusters than the budget allows, with few labels
    few = save(tmp_path / "y2.npy", np.arange(n) % 3)
    assert_error(
        capsys, "pid", "--labels", few, "--teacher", feats, "--student", feats, "--k", "200", "--pca", "0",
        needles=("memory budget", "--k"),
    )
    # a joint file whose solver arrays exceed the budget
    joint = save(tmp_path / "p.npy", np.full((40, 40, 40), 1 / 64000))
    assert_error(capsys, "pid", joint, needles=("memory budget", "40 x 40 x 40"))
