"""bench/e1_time.py runs a tiny E1 and its parts add up to the wall time it measured."""

from __future__ import annotations

import json

import pytest

from benchscripts import load_bench

_load = load_bench


def test_e1_time_splits_a_tiny_preset_into_parts_that_add_up(tmp_path, capsys):
    out = tmp_path / "e1.json"
    sets = [
        "data=digits",
        "methods=[baseline, rid]",
        "teachers=[trained]",
        "seeds=[0]",
        "teacher_min_steps=10",
        "teacher_epochs=1",
        "student_epochs=2",
        "pid_boot=0",
        "pid_layers=last",
        "pid_samples=200",
    ]
    args = ["--preset", "quick", "--json", str(out)]
    for s in sets:
        args += ["--set", s]
    assert _load("e1_time").main(args) == 0
    m = json.loads(out.read_text())
    assert m["runs"] == 2 and m["tracker_s"] > 0 and m["training_s"] > 0 and m["teacher_s"] > 0
    parts = m["teacher_s"] + m["training_s"] + m["tracker_s"] + m["rest_s"]
    assert parts == pytest.approx(m["wall_s"], rel=1e-9)
    assert m["tracker_share"] == pytest.approx(m["tracker_s"] / m["wall_s"])
    text = capsys.readouterr().out
    assert text.startswith("machine: ") and "| 2 runs: PID tracker |" in text
