"""``method.pairs: auto``: the pairing the layer map suggests, measured on training examples when
the run is built and recorded in config.json, on the planted models of tests/helpers/planted.py
(the teacher's two stages hold y; the student's ``copy`` holds y exactly, its last stage ``blind``
nothing). By construction both teacher stages are worth distilling (the student's last stage lacks
all of y) and neither can go to ``copy`` (it holds y already): one pair, ``blind``; the two teacher
stages carry the same features, and a tie keeps the shallower one: ``[blind, stage1]``.
"""

from __future__ import annotations

import json

import pytest
import torch

import planted
from infodistill.cli import main
from infodistill.training.config import ConfigError, DistillConfig, load_config
from infodistill.training.runs import distill

pytestmark = pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # copy: 4 points

BASE = [
    "data.factory=planted.py:data",
    "data.batch_size=100",
    "student.factory=planted.py:student",
    "teacher.kind=untrained",
    "teacher.model.factory=planted.py:teacher",
    "method.name=vid",
    "method.pairs=auto",
    "optim.epochs=1",
]


@pytest.fixture
def user(tmp_path, monkeypatch):
    (tmp_path / "planted.py").write_text(planted.SOURCE)
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    return tmp_path


def test_auto_pairs_are_chosen_on_training_examples_and_recorded(user, capsys):
    (user / "auto.yaml").write_text("{}\n")
    assert main(["distill", "auto.yaml", *BASE, "--out", "run", "--quiet"]) == 0, capsys.readouterr().err
    config = json.loads((user / "run" / "config.json").read_text())
    assert config["method"]["pairs"] == [["blind", "stage1"]]
    record = config["method"]["auto_pairs"]
    assert record["examples"] == "the first 300 training examples"  # the factory's training split
    assert record["teacher_layers"] == ["stage1", "stage2"] and record["student_layers"] == ["copy", "blind"]
    assert record["left_bits"][0] == pytest.approx(2.0 - 0.05, abs=0.1)  # all of y, less its floor
    # the same command resumes: the pairs are chosen again, the same, and the config matches
    assert main(["distill", "auto.yaml", *BASE, "--out", "run", "--quiet", "--resume"]) == 0
    capsys.readouterr()


def test_auto_pairs_need_the_layer_map_and_explicit_pairs_for_the_stop_rule(user):
    cfg = load_config(DistillConfig, None, [*BASE, "run.out_dir=lib"])
    with pytest.raises(ConfigError, match="pass pair_resolver=infodistill.layer_map.auto_pairs"):
        distill(cfg, progress=False)
    assert cfg.method.pairs == "auto"
    with pytest.raises(ConfigError, match="with method.pairs: auto they are chosen when the run is built"):
        load_config(DistillConfig, None, [*BASE, "pid.pairs=[[blind, stage1]]", "pid.n_boot=5"]
                    + ["pid.n_perm=5", "pid.stop=true"])  # fmt: skip
    with pytest.raises(
        ConfigError, match="method.pairs must be a list of \\[student_layer, teacher_layer\\]"
    ):
        load_config(DistillConfig, None, [*BASE, "method.pairs=automatic"])
