"""bench/gpu.py: without CUDA it says so and measures nothing; ``--smoke`` runs its code (the real
distill path on synthetic data, tiny sizes, whatever device there is) and its numbers add up."""

from __future__ import annotations

import json

import pytest
import torch

from benchscripts import load_bench


def _bench():
    return load_bench("gpu")


def test_without_cuda_it_says_so_and_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _bench().main(["--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "torch.cuda.is_available() is False on this machine" in err
    assert "nothing was measured" in err and not (tmp_path / "x.json").exists()


def test_synthetic_data_are_cifar_shaped_and_seeded():
    bench = _bench()
    train, test = bench.synthetic(20, 10, seed=1)
    again, _ = bench.synthetic(20, 10, seed=1)
    assert train.input_shape == (3, 32, 32) and (len(train), len(test), train.num_classes) == (20, 10, 10)
    assert torch.equal(train.x, again.x) and torch.equal(train.y, again.y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the smoke run is for machines without a GPU")
def test_smoke_run_covers_every_row_and_its_ratios_add_up(tmp_path, monkeypatch, capsys):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    assert _bench().main(["--smoke", "--json", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    rows = out["throughput"]
    assert [(r["method"], r["amp"]) for r in rows] == [
        (m, a) for a in ("none", "bf16") for m in ("baseline", "kd", "vid", "rid")
    ]
    base = rows[0]["examples_per_s"]
    for r in rows:
        assert r["examples_per_s"] > 0 and r["ratio"] == pytest.approx(r["examples_per_s"] / base)
    fp32, bf16 = out["e1_epoch"]
    for r in (fp32, bf16):
        assert r["train_s"] == pytest.approx(32 / r["examples_per_s"], rel=1e-2)
        assert r["epoch_s"] >= r["train_s"] * 0.99 and r["wall_s"] >= r["epoch_s"]
    assert bf16["ratio"] == pytest.approx(fp32["epoch_s"] / bf16["epoch_s"])
    assert "| rid phase 2 (3 pairs) | bf16 |" in capsys.readouterr().out
