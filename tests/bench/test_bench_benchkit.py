"""bench/benchkit.py, the helpers every bench script shares, and the scripts' use of it: each loads by
path (as the tests load them), prints the same machine line first, and keeps no copy of its own."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from benchscripts import BENCH, load_bench

# gpu.py comes from another branch and keeps its own report until it is moved over.
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in ("benchkit", "gpu"))


load = load_bench


@pytest.fixture(scope="module")
def kit():
    return load("benchkit")


def test_markdown_table(kit):
    text = kit.md_table(["a", "b"], [["1", "x"], ["22", ""]], ["---", "---:"])
    assert text.splitlines() == ["| a | b |", "|---|---:|", "| 1 | x |", "| 22 |  |"]
    assert kit.md_table(["a"], []).splitlines() == ["| a |", "|---|"]


def test_text_table_pads_columns_and_strips_the_last(kit):
    text = kit.text_table(("case", "s"), [("long name", "1.5"), ("x", "-")])
    assert text.splitlines() == ["case       s", "long name  1.5", "x          -"]


def test_number_formats(kit):
    assert [kit.fmt_s(x) for x in (0.0051534, 7.6649, 123.4, 1.0)] == ["0.00515", "7.66", "123", "1"]
    assert kit.fmt_or_dash(None, ".3f") == "—" and kit.fmt_or_dash(1.23456, ".3f") == "1.235"


def test_ratio_and_spread_are_per_round(kit):
    assert kit.median_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 1.0]) == 3.0  # ratios 2, 3, 4
    assert kit.spread([1.0, 2.0, 4.0]) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        kit.median_ratio([1.0], [1.0, 2.0])


def test_median_time_repeats_fast_calls(kit):
    calls = []
    t, reps, outs = kit.median_time(lambda: calls.append(1) or len(calls), fast_s=10, medium_s=20, max_reps=3)
    assert reps == 3 and outs == [1, 2, 3] and t >= 0
    t, reps, outs = kit.median_time(lambda: 0, fast_s=0, medium_s=0, max_reps=5)
    assert reps == 1
    best, out = kit.best_time(lambda: "x", 2)
    assert out == "x" and best >= 0


def test_time_rounds_rotates_and_prepares_before_every_chunk(kit):
    log = []
    items = ["a", "b", "c"]
    timed = kit.time_rounds(
        items,
        lambda item: log.append(("step", item)) or item.upper(),
        prepare=lambda item: log.append(("prep", item)),
        warmup=2,
        rounds=3,
        min_time=0.0,
    )
    assert [len(t.samples) for t in timed] == [3, 3, 3]
    assert all(
        t.steps_per_chunk == 1 and t.outputs == [i.upper()] * 3 for t, i in zip(timed, items, strict=True)
    )
    warm, rounds = log[:9], log[9:]
    assert warm == [(k, i) for i in items for k in ("prep", "step", "step")]
    order = [i for k, i in rounds if k == "prep"]
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert rounds == [(k, i) for i in order for k in ("prep", "step")]


def test_machine_line(kit):
    info = kit.machine_info(torch=False, packages=("numpy", "no_such_module_here"))
    assert "torch" not in info
    line = kit.machine_line(info)
    assert line.startswith(f"machine: {kit.cpu_model()}, ")
    assert f"numpy {np.__version__} (BLAS: " in line and "torch" not in line
    assert f"numpy {np.__version__}, no_such_module_here not installed; OMP_NUM_THREADS=" in line
    torch = pytest.importorskip("torch")
    line = kit.machine_line(kit.machine_info())
    assert f"torch {torch.__version__} (" in line and "intra-op thread" in line


def test_write_json_is_atomic_and_makes_the_folder(kit, tmp_path):
    out = tmp_path / "new" / "r.json"
    kit.write_json(out, {"x": np.float64(0.5), "n": [1, 2]}, indent=1)
    assert json.loads(out.read_text()) == {"x": 0.5, "n": [1, 2]}
    assert out.read_text().startswith('{\n "x"')
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_uses_the_shared_helpers(name):
    mod = load(name)
    assert mod.benchkit is sys.modules["benchkit"]
    source = (BENCH / f"{name}.py").read_text()
    copies = re.findall(
        r"^def (cpu_model|machine_info|machine_line|_?median_time|_?md|median_ratio|spread|timed|_fmt_s?)\(",
        source,
        flags=re.M,
    )
    assert copies == [] and "json.dump" not in source and "platform." not in source


def test_fuzz_and_solver_print_the_machine_first(capsys, tmp_path):
    assert load("fuzz_decompose").main(["--n", "2", "--json", str(tmp_path / "f.json")]) == 0
    first, summary = capsys.readouterr().out.splitlines()[:2]
    assert first.startswith("machine: ") and summary.startswith("2 joints (seed 0, from 0)")
    assert json.loads((tmp_path / "f.json").read_text())["machine"]["numpy"] == np.__version__

    assert load("pid_solver").main(["--sizes", "2x3x3", "--no-reference"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("machine: ") and lines[1].startswith("  dense-2x3x3: ours ")
