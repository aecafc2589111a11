"""bench/scaling.py on tiny grids: table shapes, ratios, skip rule, certified gaps, the timed steps.

Timings are never asserted (the machine is shared); what is checked is that the tables say what the
measurements say (ratios and exponents recomputed here from the raw cells), that the solver's gaps
meet the default tolerance, that timing estimate's internals leaves its result unchanged, and that
the training step is the trainer's SGD step (checked against the update written out by hand).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from benchscripts import load_bench
from infodistill.pid import estimate
from infodistill.pid.decompose import DEFAULT_TOL_BITS


def quiet(*_args):
    pass


@pytest.fixture(scope="module")
def scaling():
    return load_bench("scaling")


def md_tables(text: str) -> list[list[list[str]]]:
    """Every markdown table in text, as rows of stripped cells (header first, separator dropped)."""
    tables, cur = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(set(c) <= set("-:") for c in cells):
                cur.append(cells)
        elif cur:
            tables.append(cur)
            cur = []
    if cur:
        tables.append(cur)
    return tables


# --------------------------------------------------------------------------------------------------
# Solver section


def test_dirichlet_joint_is_a_seeded_positive_distribution(scaling):
    p = scaling.make_dirichlet((3, 4, 5), seed=7)
    assert p.shape == (3, 4, 5)
    assert np.all(p > 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(p, scaling.make_dirichlet((3, 4, 5), seed=7))
    assert not np.array_equal(p, scaling.make_dirichlet((3, 4, 5), seed=8))


def test_predicted_time_by_hand(scaling):
    row = [dict(k=8, ny=10, time_s=1.0), dict(k=16, ny=10, time_s=4.0)]  # local exponent 2
    assert scaling.predict_time(row, None, 32, 10) == pytest.approx(16.0)
    steep = [dict(k=8, ny=10, time_s=1.0), dict(k=16, ny=10, time_s=16.0)]  # 4, clamped to 3
    assert scaling.predict_time(steep, None, 32, 10) == pytest.approx(128.0)
    flat = [dict(k=8, ny=10, time_s=1.0), dict(k=16, ny=10, time_s=1.0)]  # 0, clamped to 2
    assert scaling.predict_time(flat, None, 32, 10) == pytest.approx(4.0)
    one = [dict(k=8, ny=10, time_s=0.5)]  # a single cell: exponent 2
    assert scaling.predict_time(one, None, 24, 10) == pytest.approx(4.5)
    # The same k one |Y| smaller: at least linear in |Y|; a skipped one forces a skip.
    above = dict(k=32, ny=10, time_s=5.0)
    assert scaling.predict_time(row, above, 32, 100) == pytest.approx(50.0)
    assert scaling.predict_time([], dict(k=8, ny=2, time_s=None), 8, 10) == math.inf
    assert scaling.predict_time([], None, 8, 2) == 0.0


def test_solver_section_table_matches_the_cells(scaling):
    ys, ks = (2, 3), (4, 8)
    cells = scaling.run_solver(ys, ks, cap_s=60.0, max_reps=1, log=quiet)
    assert len(cells) == len(scaling.SOLVER_KINDS) * len(ys) * len(ks)
    for c in cells:
        assert c["time_s"] is not None and c["time_s"] > 0
        assert 0.0 <= c["gap_bits"] <= DEFAULT_TOL_BITS
        assert c["support_cells"] <= c["ny"] * c["k"] ** 2
    dense = [c for c in cells if c["kind"] == "dense"]
    assert all(c["support_cells"] == c["ny"] * c["k"] ** 2 for c in dense)  # Dirichlet: all cells > 0

    text = scaling.solver_tables(cells, 60.0)
    tables = md_tables(text)
    assert len(tables) == len(scaling.SOLVER_KINDS)
    for kind, table in zip(scaling.SOLVER_KINDS, tables, strict=True):
        header, rows = table[0], table[1:]
        assert header[1 : 1 + len(ks)] == [f"k={k}" for k in ks]
        assert len(header) == 1 + len(ks) + 3
        assert [int(r[0]) for r in rows] == list(ys)
        for r in rows:
            assert len(r) == len(header)
            row = sorted(
                (c for c in cells if c["kind"] == kind and c["ny"] == int(r[0])), key=lambda c: c["k"]
            )
            t = [c["time_s"] for c in row]
            ratios = [float(re.search(r"\(×([0-9.e+-]+)\)", cell).group(1)) for cell in r[1 : 1 + len(ks)]]
            np.testing.assert_allclose(ratios, [ti / t[0] for ti in t], rtol=6e-3)
            expo = math.log(t[-1] / t[0]) / math.log(ks[-1] / ks[0])
            assert float(r[1 + len(ks)]) == pytest.approx(expo, abs=0.006)
            assert float(r[-1]) == pytest.approx(max(c["gap_bits"] for c in row), rel=0.06)


def test_solver_cells_over_the_cap_are_skipped(scaling):
    cells = scaling.run_solver((2, 3), (4, 8, 16), kinds=("hist",), cap_s=1e-9, max_reps=1, log=quiet)
    # Only the very first cell has nothing to predict from; everything after it is predicted > cap.
    measured = [(c["ny"], c["k"]) for c in cells if c["time_s"] is not None]
    assert measured == [(2, 4)]
    assert all(c["predicted_s"] > 1e-9 for c in cells if c["time_s"] is None)
    text = scaling.solver_tables(cells, 1e-9)
    (table,) = md_tables(text)
    assert table[1][2:4] == ["skipped (> 1e-09 s cap)"] * 2
    assert table[2][1:4] == ["skipped (> 1e-09 s cap)"] * 3
    assert table[1][4] == "—" and table[1][5] == "—"  # no exponent from a single cell


# --------------------------------------------------------------------------------------------------
# Estimate section


def test_estimate_section_breakdown_and_unchanged_result(scaling):
    cells = scaling.run_estimate((300, 600), (8, 16), max_reps=1, log=quiet)
    assert [(c["n"], c["d"]) for c in cells] == [(300, 8), (300, 16), (600, 8), (600, 16)]
    for c in cells:
        assert c["gap_bits"] <= DEFAULT_TOL_BITS
        stages = c["stages_s"]
        assert set(stages) == {*scaling.EST_STAGES, "other"}
        assert all(v >= 0 for k, v in stages.items() if k != "other")
        # one run: the stages and the remainder add up to the measured total
        assert sum(stages.values()) == pytest.approx(c["time_s"], rel=1e-9, abs=1e-12)
        assert stages["other"] >= -1e-6  # the stages are timed inside the timed call
        assert stages["k-means"] > 0 and stages["decompose"] > 0 and stages["perm baseline"] > 0
        assert stages["bootstrap"] < 1e-3  # the bench runs no bootstrap
        # The bench's run gives exactly what a plain call gives on the same data.
        y, t, s = scaling.make_features(c["n"], c["d"])
        plain = estimate(y, t, s, k=10, pca=5)
        assert c["mi_joint_bits"] == plain.pid.mi_joint

    (table,) = md_tables(scaling.estimate_table(cells))
    header, rows = table[0], table[1:]
    assert len(header) == 4 + len(scaling.EST_STAGES) + 1 + 2
    assert header[3] == "ratio to n=300, d=8"
    assert len(rows) == 4 and all(len(r) == len(header) for r in rows)
    ratios = [float(r[3].rstrip("×")) for r in rows]
    np.testing.assert_allclose(ratios, [c["time_s"] / cells[0]["time_s"] for c in cells], rtol=6e-3)


def test_features_are_float32_and_carry_the_label(scaling):
    y, t, s = scaling.make_features(4000, 16)
    assert t.dtype == s.dtype == np.float32 and t.shape == s.shape == (4000, 16)
    assert set(np.unique(y)) <= set(range(10))
    # Class means are 0.15 (teacher) and 0.08 (student) times a standard normal vector.
    # Expected spread of the class means: sqrt(0.9 (a² + 1.25 / 400)) with a = 0.15 and 0.08, i.e.
    # 0.152 and 0.093, against 0.053 for noise alone (1.25 = noise + shared variance, 400 per class).
    spread_t = np.stack([t[y == c].mean(0) for c in range(10)]).std(0).mean()
    spread_s = np.stack([s[y == c].mean(0) for c in range(10)]).std(0).mean()
    assert 0.12 < spread_t < 0.19
    assert 0.075 < spread_s < 0.115
    # The shared nuisance (0.5 x the same normal draw in both) correlates T and S per coordinate:
    # corr = 0.25 / sqrt((1 + 0.25 + 0.15^2 v)(1 + 0.25 + 0.08^2 v)) ~ 0.2 for v ~ 1.
    corr = np.mean([np.corrcoef(t[:, j], s[:, j])[0, 1] for j in range(16)])
    assert 0.15 < corr < 0.25


# --------------------------------------------------------------------------------------------------
# Training section


def test_train_step_is_the_trainers_sgd_step(scaling):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from infodistill.models import build_model

    mb = scaling._ModelBench("cnn-small", {"width": 4}, (1, 28, 28), seed=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 1, 28, 28, generator=g), torch.randint(0, 10, (6,), generator=g)

    ref = build_model("cnn-small", 10, 1, seed=3, width=4).train()
    loss = F.cross_entropy(ref(x), y)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    # SGD with momentum 0.9, weight decay 5e-4, lr 0.05; first step: buf = g + wd p, p <- p - lr buf.
    expected = [
        p.detach() - 0.05 * (gr + 5e-4 * p.detach()) for p, gr in zip(ref.parameters(), grads, strict=True)
    ]
    got_loss = mb.step(x, y)
    assert float(got_loss) == pytest.approx(float(loss.detach()), rel=1e-6)
    for p, e in zip(mb.model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)

    mb.reset()  # back to the initial weights and BatchNorm statistics, momentum zeroed
    fresh = build_model("cnn-small", 10, 1, seed=3, width=4).state_dict()
    assert fresh.keys() == mb.model.state_dict().keys()
    for name, v in mb.model.state_dict().items():
        assert torch.equal(v, fresh[name]), name
    assert all(torch.count_nonzero(st["momentum_buffer"]) == 0 for st in mb.opt.state.values())


def test_train_section_table(scaling):
    torch = pytest.importorskip("torch")
    threads_before = torch.get_num_threads()
    models = [("cnn-small", {"width": 4}, (1, 28, 28)), ("wrn-16-1", {}, (3, 32, 32))]
    rows = scaling.run_train((2, 4), (1, 2), models, rounds=2, min_time=1e-3, warmup=1, log=quiet)
    assert torch.get_num_threads() == threads_before
    assert [(r["batch"], r["threads"]) for r in rows] == [(2, 1), (2, 2), (4, 1), (4, 2)] * 2
    for r in rows:
        assert r["images_per_s"] == pytest.approx(r["batch"] * 1e3 / r["ms_per_step"])
        assert r["rounds"] == 2 and math.isfinite(r["last_loss"])
        assert r["reference"] == "batch 2, 1 thread"  # (64, 1) is not in this grid
        if (r["batch"], r["threads"]) == (2, 1):
            assert r["time_ratio"] == 1.0 and r["throughput_ratio"] == 1.0
        # Both ratios are medians of per-round ratios against the reference cell of the same model.
        ref = next(x for x in rows if x["model"] == r["model"] and (x["batch"], x["threads"]) == (2, 1))
        pairs = list(zip(r["samples_ms"], ref["samples_ms"], strict=True))
        assert r["time_ratio"] == pytest.approx(float(np.median([a / b for a, b in pairs])))
        tput = [(r["batch"] / a) / (2 / b) for a, b in pairs]
        assert r["throughput_ratio"] == pytest.approx(float(np.median(tput)))

    (table,) = md_tables(scaling.train_table(rows))
    assert table[0][:4] == ["model (input)", "batch", "threads", "ms/step"]
    assert len(table) == 1 + len(rows)
    assert {r[0] for r in table[1:]} == {"cnn-small width=4 (1×28×28)", "wrn-16-1 (3×32×32)"}


# --------------------------------------------------------------------------------------------------
# Command line


def test_main_quick_all_sections_tiny_grid(scaling, tmp_path):
    pytest.importorskip("torch")
    lines: list[str] = []
    out = tmp_path / "res" / "scaling.json"
    argv = ["--quick", "--ys", "2", "--ks", "4", "8", "--kinds", "dense", "--ns", "300", "--ds", "8"]
    argv += ["--batches", "2", "4", "--threads", "1", "--models", "cnn-small", "--rounds", "1"]
    argv += ["--min-time", "0.001", "--json", str(out)]
    assert scaling.main(argv, log=lines.append) == 0
    head = lines[0]
    cpu = Path("/proc/cpuinfo")
    if cpu.exists():
        model = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in cpu.read_text().splitlines()
                if ln.startswith("model name")
            ),
            None,
        )
        if model:
            assert model in head
    assert head.startswith("machine: ") and f"numpy {np.__version__}" in head and "torch " in head
    tables = md_tables("\n".join(lines))
    assert len(tables) == 3  # solver (dense only), estimate, training
    assert [len(t) for t in tables] == [2, 2, 3]  # header + rows
    data = json.loads(out.read_text())
    assert [(c["ny"], c["k"]) for c in data["solver"]] == [(2, 4), (2, 8)]
    assert [(c["n"], c["d"]) for c in data["estimate"]] == [(300, 8)]
    assert [(r["batch"], r["threads"]) for r in data["train"]] == [(2, 1), (4, 1)]
    assert set(data["section_seconds"]) == {"solver", "estimate", "train"}
    assert data["machine"]["logical_cpus"] >= 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["scaling.json"]  # no temp file left


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--ks", "0"], "--ks values must be >= 1"),
        (["--estimate", "--ds", "4"], "--ds values must be >= 5"),
        (["--solver", "--batches", "8"], "add --train"),
        (["--cap", "0"], "--cap must be a positive"),
        (["--estimate", "--ns", "100000000", "--ds", "100000"], "GiB of features"),
    ],
)
def test_main_usage_errors_are_one_line_exit_2(scaling, capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        scaling.main(argv, log=quiet)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
