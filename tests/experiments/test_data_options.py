"""Every data set the experiments document runs with models that fit it (or is refused before
anything trains), and the reports state the numbers of examples actually used."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import infodistill.data
import infodistill.training.runs
from datafiles import write_cifar10_bin
from infodistill.cli import main
from infodistill.data import DATASET_NAMES
from infodistill.experiments import fidelity, rid
from infodistill.training.rundir import read_log


def _cifar100_bin(root: Path, n: int) -> None:
    d = root / "cifar-100-binary"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, rows_n in (("train.bin", 5 * n), ("test.bin", n)):
        rows = rng.integers(0, 256, (rows_n, 3074), dtype=np.uint8)
        rows[:, 0] %= 20
        rows[:, 1] %= 100
        (d / name).write_bytes(rows.tobytes())


def _image_folder(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory):
    """Tiny copies of the path-based data sets, smaller than the presets' requests below."""
    base = tmp_path_factory.mktemp("data")
    write_cifar10_bin(base / "c10", 10)  # 50 training, 10 test images
    _cifar100_bin(base / "c100", 10)
    _image_folder(base / "images")  # 18 training, 6 test images
    return {"cifar10": base / "c10", "cifar100": base / "c100", "image-folder": base / "images"}


_load = infodistill.data.load_dataset
_LOADED: dict = {}


@pytest.fixture(autouse=True)
def _load_each_data_set_once(monkeypatch):
    """Every run of an experiment loads its data; generating MNIST-1D or decoding Fashion-MNIST
    each time would dominate this test. Shallow copies: a run rebinding ``x`` touches no other."""

    def cached(name, root=None, **kw):
        key = (name, str(root))
        if key not in _LOADED:
            _LOADED[key] = _load(name, root, **kw)
        return tuple(copy.copy(ds) for ds in _LOADED[key])

    monkeypatch.setattr(infodistill.data, "load_dataset", cached)
    monkeypatch.setattr(infodistill.training.runs, "load_dataset", cached)
    torch.set_num_threads(1)


# The quick presets, as the CLI's --data runs them, cut to one tiny epoch. The subset requests
# exceed the tiny data sets, so the reports must give the smaller numbers actually used.
E1_TINY = dict(
    teacher_train_subset=200,
    student_train_subset=64,
    test_subset=100,
    teacher_epochs=1,
    student_epochs=1,
    teachers=("trained",),
    methods=("baseline", "rid"),
    seeds=(0,),
    batch_size=32,
    pid_samples=60,
    pid_k=3,
)
E2_TINY = dict(
    train_subset=64,
    test_subset=100,
    teacher_epochs=1,
    student_epochs=1,
    ensembles=(1,),
    taus=(1.0,),
    data_settings=("crop-flip", "mixup"),
    lambdas=(),
    seeds=(0,),
    batch_size=32,
)


@pytest.mark.parametrize("experiment", ["rid", "fidelity"])
@pytest.mark.parametrize("data", DATASET_NAMES)
def test_every_experiment_runs_on_every_built_in_data_set(experiment, data, data_roots, tmp_path):
    root = data_roots.get(data)
    full_train, full_test = infodistill.data.load_dataset(data, root)
    one_d = len(full_train.input_shape) == 2  # 1-D signals (MNIST-1D, the sparse parity): cnn1d
    out = tmp_path / "out"
    if experiment == "rid":
        preset = replace(
            rid.PRESETS["quick"], data=data, data_kwargs={}, data_root=str(root) if root else None, **E1_TINY
        )
        report = rid.run_rid(preset, out, progress=False)
        expected = {
            "teacher_train": min(200, len(full_train)),
            "student_train": min(64, len(full_train)),
            "test": min(100, len(full_test)),
            "pid_samples": min(60, len(full_test)),
        }
        used = json.loads((out / "preset.json").read_text())
        teacher_log = read_log(out / "teacher" / "log.jsonl")
        student_log = read_log(out / "trained-rid-s0" / "log.jsonl")
        # The report's numbers are those the runs saw.
        assert teacher_log[-1]["distill_data"]["n"] == expected["teacher_train"]
        assert student_log[-1]["distill_data"]["n"] == expected["student_train"]
        assert student_log[-1]["test"]["n"] == expected["test"]
        text = report.read_text()
        assert f"trained on {expected['teacher_train']} examples" in text
        assert f"trained on {expected['student_train']} labelled examples" in text
        pid = f"PID (bits) of the last pair (`pid_layers: last`) on {expected['pid_samples']} test"
        assert f"test set: {expected['test']} examples. {pid}" in text
        models = (used["teacher_model"]["name"], used["student_model"]["name"])
    else:
        preset = replace(
            fidelity.PRESETS["quick"], data=data, data_root=str(root) if root else None, **E2_TINY
        )
        report = fidelity.run_fidelity(preset, out, progress=False)
        expected = {"train": min(64, len(full_train)), "test": min(100, len(full_test))}
        used = json.loads((out / "preset.json").read_text())
        log = read_log(out / "ens1-tau1-s0" / "log.jsonl")
        assert log[-1]["distill_data"]["n"] == expected["train"]
        assert log[-1]["test"]["n"] == expected["test"]
        text = report.read_text()
        assert f"trained on the same {expected['train']} training examples" in text
        assert f"test set: {expected['test']} examples." in text
        models = (used["model"]["name"],)
        # Crop-flip needs images: it is dropped on 1-D signals and run on every image data set.
        assert ("crop-flip" in used["data_settings"]) == (not one_d)
    assert json.loads((out / "summary.json").read_text())["examples"] == expected
    assert set(models) == ({"cnn1d"} if one_d else {"cnn-small"})
    assert not (out / ".lock").exists()


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started: the input should have been refused before")

    monkeypatch.setattr(torch.Tensor, "backward", refuse)


def _one_line_error(capsys, argv) -> str:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and "Traceback" not in err, (rc, out, err)
    assert err.count("\n") == 1 and err.startswith("infodistill: error: "), err
    return err


@pytest.mark.parametrize(("experiment", "preset"), [("rid", "paper"), ("fidelity", "cifar100")])
def test_a_preset_whose_models_do_not_fit_the_data_is_refused_before_training(
    experiment, preset, tmp_path, capsys, no_training
):
    # WRN and ResNet are 2-D networks with no 1-D counterpart: refused, naming the fix.
    out = tmp_path / "out"
    argv = ["reproduce", experiment, "--preset", preset, "--data", "mnist1d", "--out", out, "--quiet"]
    err = _one_line_error(capsys, argv)
    assert "does not fit the data 'mnist1d'" in err and "--preset quick" in err
    assert not out.exists()


def test_another_data_set_starts_its_options_afresh_and_a_wrong_option_is_refused_in_one_line(
    tmp_path, capsys, no_training
):
    # quick's patterns are an option of Fashion-MNIST's loader: --data digits (or --set data=digits)
    # leaves them behind, and options set after it are the new data set's own.
    from infodistill.experiments.common import apply_settings

    quick = rid.PRESETS["quick"]
    assert quick.data_kwargs == {"nuisance": 1.5}
    assert apply_settings(quick, {"data": "digits"}).data_kwargs == {}
    assert apply_settings(quick, {"data": "fashion-mnist"}).data_kwargs == {"nuisance": 1.5}
    moved = apply_settings(quick, [("data", "digits"), ("data_kwargs.test_size", 0.5)])
    assert moved.data_kwargs == {"test_size": 0.5} and quick.data_kwargs == {"nuisance": 1.5}
    # An option the new data set does not have is named with the set's own, before anything runs.
    out = tmp_path / "out"
    argv = [
        "reproduce",
        "rid",
        "--data",
        "digits",
        "--set",
        "data_kwargs.nuisance=1.5",
        "--out",
        out,
        "--quiet",
    ]
    err = _one_line_error(capsys, argv)
    assert "dataset 'digits' has no option 'nuisance'; its options: seed, test_size" in err
    assert not out.exists()


@pytest.mark.parametrize("data", ["cifar10", "cifar100", "image-folder"])
def test_a_path_based_data_set_without_data_dir_is_refused(data, tmp_path, capsys, no_training):
    out = tmp_path / "out"
    err = _one_line_error(capsys, ["reproduce", "rid", "--preset", "quick", "--data", data, "--out", out])
    assert "needs root" in err
    assert not out.exists()


def test_train_teacher_checks_its_model_against_the_data(tmp_path, capsys, no_training):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("data: {name: mnist1d}\nmodel: {name: cnn-small}\noptim: {epochs: 1}\n")
    err = _one_line_error(capsys, ["train-teacher", cfg, "--out", tmp_path / "run", "--quiet"])
    assert "model 'cnn-small' does not fit the data 'mnist1d'" in err and "cnn1d" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("experiment", "runner", "data", "preset"),
    [
        ("rid", "run_rid", "mnist1d", "quick-mnist1d"),
        ("fidelity", "run_fidelity", "mnist1d", "quick-mnist1d"),
        ("rid", "run_rid", "digits", "quick"),
        ("rid", "run_rid", "cifar10", "cifar10"),
    ],
)
def test_data_without_a_preset_picks_that_data_sets_own_preset(
    experiment, runner, data, preset, tmp_path, monkeypatch, capsys
):
    import importlib

    module = importlib.import_module(
        f"infodistill.experiments.{'rid' if experiment == 'rid' else 'fidelity'}"
    )
    seen = {}

    def record(p, out, progress=True):
        seen["preset"] = p
        return Path(out) / "report.md"

    monkeypatch.setattr(module, runner, record)
    assert main(["reproduce", experiment, "--data", data, "--out", str(tmp_path), "--quiet"]) == 0
    assert seen["preset"].name == preset and seen["preset"].data == data
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'report.md'}"
