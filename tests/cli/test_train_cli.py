"""The training commands of the CLI and the example configs."""

import json
from pathlib import Path

import pytest
import torch

from infodistill.cli import main
from infodistill.training.config import DistillConfig, TeacherTrainConfig, load_config
from infodistill.training.runs import build_distillation

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_example_configs_are_valid_and_build(path, tmp_path):
    """Every example config parses; distillation configs build (layer names and shapes check out)
    with their architectures, here on the small digits data and an untrained teacher."""
    if path.stem.startswith("teacher"):
        load_config(TeacherTrainConfig, path)
        return
    load_config(DistillConfig, path)
    torch.set_num_threads(1)
    small_data = [] if "mnist1d" in path.stem else ["data.name=digits", "data.train_subset=null"]
    cfg = load_config(
        DistillConfig,
        path,
        [
            *small_data,
            "teacher.kind=untrained",
            "teacher.checkpoints=[]",
            f"run.out_dir={tmp_path}",
        ],
    )
    build_distillation(cfg, progress=False)


def test_train_teacher_distill_and_evaluate_commands(tmp_path, capsys):
    torch.set_num_threads(1)
    teacher = tmp_path / "t"
    common = ["data.name=digits", "optim.epochs=2", "data.batch_size=64"]
    cfg = tmp_path / "teacher.yaml"
    cfg.write_text("model: {name: cnn-small, kwargs: {width: 8, pool_size: 2}}\n")
    assert main(["train-teacher", str(cfg), *common, "--out", str(teacher), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "train-teacher: epoch 2: accuracy" in out and str(teacher) in out
    dcfg = tmp_path / "distill.yaml"
    dcfg.write_text(
        "student: {name: cnn-small, kwargs: {width: 4, pool_size: 2}}\n"
        f"teacher: {{kind: trained, model: {{name: cnn-small, kwargs: {{width: 8, pool_size: 2}}}}, "
        f"checkpoints: ['{teacher}']}}\n"
        "method: {name: vid, pairs: [[stage3, stage3]]}\n"
        "pid: {pairs: [[stage3, stage3]], k: 5, n_samples: 200}\n"
    )
    student = tmp_path / "s"
    assert main(["distill", str(dcfg), *common, "--out", str(student), "--quiet"]) == 0
    assert "agreement" in capsys.readouterr().out
    assert main(["evaluate", str(student), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    last = [json.loads(x) for x in (student / "log.jsonl").read_text().splitlines()][-1]
    assert result["test"]["accuracy"] == pytest.approx(last["test"]["accuracy"])
    assert result["test"]["agreement"] == pytest.approx(last["test"]["agreement"])
    assert set(result["pid"]["stage3|stage3"]) >= {"redundancy", "unique_t", "mi_t", "mi_s"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["distill", "missing.yaml"], "config file missing.yaml does not exist"),
        (["train-teacher", "{cfg}", "optim.lr=fast"], "config key 'optim.lr': expected float"),
        (["train-teacher", "{cfg}", "model.name=wrn-17-3"], "wrn"),
        (["evaluate", "{tmp}"], "is not a run directory"),
        (["distill", "{cfg}", "teacher.kind=trained"], "teacher.checkpoints"),
    ],
)
def test_user_errors_are_one_line(tmp_path, capsys, args, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: digits}\noptim: {epochs: 1}\n")
    args = [a.format(cfg=cfg, tmp=tmp_path) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("infodistill: error:") and message in err and "\n" not in err


def test_resume_flag(tmp_path, capsys):
    torch.set_num_threads(1)
    cfg = tmp_path / "t.yaml"
    cfg.write_text("data: {name: digits, batch_size: 64}\nmodel: {name: cnn-small, kwargs: {width: 4}}\n")
    out = ["--out", str(tmp_path / "run"), "--quiet"]
    assert main(["train-teacher", str(cfg), "optim.epochs=1", *out]) == 0
    # Rerunning into a used directory without --resume is refused (nothing is overwritten).
    assert main(["train-teacher", str(cfg), "optim.epochs=2", *out]) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err
    # --resume with a different config names the keys that differ.
    assert main(["train-teacher", str(cfg), "optim.epochs=2", "--resume", *out]) == 2
    assert "config differs in optim.epochs" in capsys.readouterr().err
    # --resume with the same config continues: nothing left to do, the log keeps its one epoch.
    assert main(["train-teacher", str(cfg), "optim.epochs=1", "--resume", *out]) == 0
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 1
