"""bench/data_loading.py and bench/stream_memory.py run (tiny sizes) and their tables add up."""

from __future__ import annotations

import json

import pytest

from benchscripts import load_bench

_load = load_bench


def test_data_loading_rows_and_ratios(tmp_path, capsys):
    pytest.importorskip("infodistill.data").load_fashion_mnist()  # Debian's copy must be installed
    out = tmp_path / "d.json"
    _load("data_loading").main(
        ["--threads", "1", "--rounds", "1", "--batches", "2", "--n", "1000", "--json", str(out)]
    )
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 7 and rows[0]["ratio"] == 1.0  # the reference against itself
    assert all(r["ratio"] > 0 and len(r["ms_per_batch"]) == 1 for r in rows)
    table = capsys.readouterr().out
    assert "| in memory: BatchReader, 0 workers |" in table
    assert table.split("| in memory: BatchReader, 0 workers |")[1].splitlines()[0].endswith("| yes |")


def test_stream_memory_measures_each_mode(tmp_path, capsys):
    out = tmp_path / "m.json"
    args = ["--sizes", "24", "--px", "8", "--workers", "0", "--json", str(out), "--eval-px", "8"]
    _load("stream_memory").main([*args, "--eval-images", "24", "--eval-batches", "auto", "7"])
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert [(r["mode"], r["workers"]) for r in rows] == [("streamed", 0), ("in memory", 0)]
    assert [(r["px"], r["eval_batch"]) for r in record["eval_rows"]] == [(8, "auto"), (8, "7")]
    assert all(r["peak_main_bytes"] > 10 * 2**20 for r in record["eval_rows"])
    assert all(
        r["peak_main_bytes"] > 10 * 2**20 for r in rows
    )  # a Python process with torch: tens of MiB at least
