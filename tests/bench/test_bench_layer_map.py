"""bench/layer_map.py and bench/rank_teachers.py at tiny sizes: the map's comparison reports what it
measured, and the rank correlation is Spearman's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layer_map_bench_compares_the_two_paths(tmp_path, capsys):
    out = tmp_path / "m.json"
    args = ["--n", "200", "--layers", "2", "--small", "2", "--boot", "3", "--perm", "2", "--rounds", "1"]
    assert _load("layer_map").main([*args, "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    # the same symbols give the same histograms: the terms agree to the solvers' certified gaps
    assert got["max_term_difference_bits"] <= got["max_certified_gaps_bits"]
    assert got["ratio_naive_over_once"] == pytest.approx(got["naive_s"][0] / got["once_s"][0])
    assert set(got["full_map_timings"]) == {"discretize", "pairs"}
    text = capsys.readouterr().out
    assert text.startswith("machine: ") and "2 x 2 layers, n = 200" in text and "x once" in text


def test_rank_teachers_bench_spearman_is_scipys():
    from scipy.stats import spearmanr

    spearman = _load("rank_teachers").spearman
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 6), rng.normal(size=6)  # ties in a
        assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
