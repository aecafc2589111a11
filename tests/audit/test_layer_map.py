"""The layer map, its suggested pairing and the teacher ranking (infodistill.layer_map), on planted
features whose answer is known by construction: y = 2*b1 + b2 for two fair bits, teacher and
student layers that hold b1, b2, y or nothing (Gaussian clusters around a centre per value, or
noise)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from infodistill.cli import main
from infodistill.layer_map import (
    LayerMap,
    MapCell,
    layer_map,
    map_features,
    rank_teachers,
    suggest_pairing,
)
from infodistill.pid import decompose, discretize, estimate
from infodistill.pid.terms import TERMS

N = 600
BOOT = 20


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _bits(n=N, seed=0):
    rng = np.random.default_rng(seed)
    b1, b2 = rng.integers(0, 2, n), rng.integers(0, 2, n)
    return b1, b2, 2 * b1 + b2


def _code(v, values, seed, dim=8):
    """Well separated Gaussian clusters, one per value of v: the features hold exactly v."""
    centres = np.random.default_rng(seed).normal(size=(values, dim)) * 4.0
    return centres[v] + np.random.default_rng(seed + 100).normal(size=(len(v), dim))


def _noise(seed, n=N, dim=8):
    return np.random.default_rng(seed).normal(size=(n, dim))


# ------------------------------------------------------------------------------ discretise once


def test_the_map_equals_per_pair_estimates():
    b1, b2, y = _bits()
    teacher = {"t1": _code(b1, 2, 1) + _noise(50), "t2": _noise(2, dim=12), "t3": _code(y, 4, 3)}
    student = {"s1": _code(b2, 2, 4) + 0.5 * _noise(51), "s2": _noise(5, dim=6)}
    kw = dict(k=6, pca=4, n_boot=BOOT, n_perm=5, seed=3)
    lmap = map_features(y, teacher, student, **kw)
    assert lmap.teacher_layers == ["t1", "t2", "t3"] and lmap.student_layers == ["s1", "s2"]
    for t, s in itertools.product(teacher, student):
        cell = lmap.cell(t, s)
        # the naive path: every pair's features through the whole pipeline again
        ref = estimate(y, teacher[t], student[s], **kw)
        tol = cell.gap + ref.pid.gap  # each term is exact to within its certified gap
        for term in TERMS:
            assert abs(getattr(cell, term) - ref.terms[term]) <= tol, (t, s, term)
        rtol = 2 * ref.settings["resample_tol"]  # bootstrap and permutations: certified to this
        for term in TERMS:
            assert np.allclose(cell.ci_raw[term], ref.ci[term], rtol=0, atol=rtol), (t, s, term)
            assert abs(cell.bias[term] - ref.bias["mean"][term]) <= rtol
        # bias-centred interval: the raw one moved down by the bootstrap's mean shift
        shift = ref.boot_shift["unique_t"]
        assert cell.ci["unique_t"][0] == pytest.approx(ref.ci["unique_t"][0] - shift, abs=rtol)
        floor = ref.bias["mean"]["unique_t"] + 2 * ref.bias["sd"]["unique_t"] + 0.02
        assert cell.floor == pytest.approx(floor, abs=2 * rtol)
    # and one cell by hand: the histogram of the two layers' symbols, decomposed
    dt, ds = discretize(teacher["t3"], k=6, pca=4, seed=3), discretize(student["s1"], k=6, pca=4, seed=3)
    counts = np.zeros((4, 6, 6))
    np.add.at(counts, (y, dt.symbols, ds.symbols), 1)
    pid = decompose(counts, counts=True)
    cell = lmap.cell("t3", "s1")
    assert cell.unique_t == pytest.approx(pid.unique_t, abs=pid.gap + cell.gap)
    json.dumps(lmap.as_dict())


def test_planted_map_reads_the_bits_left():
    b1, b2, y = _bits()
    lmap = map_features(
        y,
        {"b1": _code(b1, 2, 1), "noise": _noise(2), "y": _code(y, 4, 3)},
        {"none": _noise(6), "copy_y": _code(y, 4, 3)},
        n_boot=BOOT,
    )
    # Uni(Y:T\S): all of I(Y;T) against a student layer that holds nothing, 0 against a copy
    assert lmap.cell("b1", "none").unique_t == pytest.approx(1.0, abs=0.05)
    assert lmap.cell("y", "none").unique_t == pytest.approx(2.0, abs=0.05)
    assert lmap.cell("y", "copy_y").unique_t == pytest.approx(0.0, abs=1e-6)
    assert lmap.cell("y", "copy_y").redundancy == pytest.approx(2.0, abs=0.05)
    assert all(lmap.cell(t, "copy_y").at_floor for t in ("b1", "noise", "y"))
    assert not lmap.cell("y", "none").at_floor and not lmap.cell("b1", "none").at_floor
    assert lmap.cell("noise", "none").at_floor and not lmap.cell("noise", "none").informative
    assert lmap.matrix("unique_t").shape == (3, 2)


# ------------------------------------------------------------------------------ pairing


def _pairing(teacher, student, y):
    return suggest_pairing(map_features(y, teacher, student, n_boot=BOOT))


def test_nothing_is_paired_when_the_students_last_layer_holds_the_label():
    b1, b2, y = _bits()
    teacher = {"t1": _code(b1, 2, 1), "t2": _noise(2), "t3": _code(y, 4, 3)}
    # s2, the deepest student layer, is a copy of t3: the student lacks nothing any teacher layer has
    p = _pairing(teacher, {"s1": _noise(6), "s2": teacher["t3"].copy()}, y)
    assert p.pairs == [] and p.worth == [] and p.unpaired == ["s1", "s2"] and p.skipped == ["t2"]


def test_a_copied_layer_is_not_paired_with_its_original():
    b1, b2, y = _bits()
    teacher = {"t1": _code(b1, 2, 1), "t2": _noise(2), "t3": _code(y, 4, 3)}
    # s1 copies t1 (b1), s2 holds nothing: t1 (1 bit) and t3 (2 bits) are worth distilling, t2 is
    # noise. (t1, s1) is at its floor, and t1 and t3 cannot both find a later student layer than
    # the other in depth order, so one pair: t3 goes to s1, which shares b1 with it (Red = 1 bit,
    # against 0 for s2)
    p = _pairing(teacher, {"s1": teacher["t1"].copy(), "s2": _noise(7)}, y)
    assert p.worth == ["t1", "t3"] and p.skipped == ["t2"]
    assert p.pairs == [("s1", "t3")] and p.unpaired == ["s2"]
    assert p.shared[0] == pytest.approx(1.0, abs=0.05)
    assert p.left[0] == pytest.approx(2.0 - 0.05, abs=0.08)  # Uni(Y:T3\S2) = 2 bits, minus its floor


def test_pairing_is_monotone_in_depth_and_distils_every_layer_worth_it():
    b1, b2, y = _bits()
    teacher = {"t1": _code(b1, 2, 1), "t2": _noise(2), "t3": _code(y, 4, 3)}
    # both student layers hold nothing: t1 and t3 are worth distilling and both fit, in depth order
    p = _pairing(teacher, {"s1": _noise(6), "s2": _noise(7)}, y)
    assert p.pairs == [("s1", "t1"), ("s2", "t3")] and p.skipped == ["t2"] and p.worth == ["t1", "t3"]


def test_pairing_of_a_student_layer_that_is_a_function_of_a_teacher_layer():
    b1, b2, y = _bits()
    teacher = {"t1": _code(b1, 2, 1), "t2": _code(b2, 2, 2), "t3": _code(y, 4, 3)}
    rotation = np.linalg.qr(np.random.default_rng(9).normal(size=(8, 8)))[0]
    # s1 = a rotation and scaling of t1: it holds b1, so (t1, s1) is at its floor; s2 holds nothing,
    # so all three teacher layers are worth distilling. Two pairs fit only as s1 <- t2, s2 <- t3
    p = _pairing(teacher, {"s1": 3.0 * teacher["t1"] @ rotation, "s2": _noise(7)}, y)
    assert p.pairs == [("s1", "t2"), ("s2", "t3")] and p.unpaired == [] and p.skipped == []
    assert p.worth == ["t1", "t2", "t3"]


def _cell(t, s, *, red=0.0, left=0.0, informative=True, at_floor=False):
    z = {term: 0.0 for term in TERMS}
    return MapCell(t, s, **{**z, "redundancy": red, "unique_t": left + 0.1}, gap=0.0, ci={}, ci_raw={},
                   bias={}, bias_sd={}, floor=0.1, at_floor=at_floor, informative=informative)  # fmt: skip


@pytest.mark.parametrize("seed", range(30))
def test_pairing_is_the_best_monotone_matching(seed):
    """Against brute force over every monotone matching of random maps."""
    rng = np.random.default_rng(seed)
    m, n = rng.integers(1, 6), rng.integers(1, 5)
    left = rng.uniform(-0.5, 2.0, (m, n))
    red = rng.uniform(0.0, 2.0, (m, n))
    floor = rng.random((m, n)) < 0.25
    informative = rng.random(m) < 0.8
    cells = [
        [_cell(f"t{i}", f"s{j}", red=red[i, j], left=left[i, j], informative=informative[i],
               at_floor=floor[i, j]) for j in range(n)]
        for i in range(m)
    ]  # fmt: skip
    p = suggest_pairing(LayerMap([f"t{i}" for i in range(m)], [f"s{j}" for j in range(n)], cells, {}))

    worth = [informative[i] and not floor[i, -1] and left[i, -1] > 0 for i in range(m)]
    assert p.worth == [f"t{i}" for i in range(m) if worth[i]]

    def ok(i, j):
        return worth[i] and not floor[i, j]

    best = (0, 0.0, 0.0)
    for r in range(1, min(m, n) + 1):
        for ts in itertools.combinations(range(m), r):
            for ss in itertools.combinations(range(n), r):
                pairs = list(zip(ts, ss, strict=True))
                if all(ok(i, j) for i, j in pairs):
                    score = (r, sum(red[i, j] for i, j in pairs), sum(left[i, -1] for i, _ in pairs))
                    best = max(best, score)
    ts = [int(t[1:]) for _, t in p.pairs]
    ss = [int(s[1:]) for s, _ in p.pairs]
    got = (len(p.pairs), sum(red[i, j] for i, j in zip(ts, ss, strict=True)), p.total)
    assert got[0] == best[0] and got[1] == pytest.approx(best[1], abs=1e-9)
    assert got[2] == pytest.approx(best[2], abs=1e-9)
    assert ts == sorted(set(ts)) and ss == sorted(set(ss))  # monotone, each layer once
    assert all(ok(i, j) for i, j in zip(ts, ss, strict=True))


# ------------------------------------------------------------------------------ from models


class Planted(nn.Module):
    """A model whose stages read fixed codes of the label from the input: x holds (b1, b2) as its
    first two columns (0/1) and noise after; ``holds`` names what each stage outputs ("exact y":
    the centre of y's cluster with no noise, so y is a function of the stage's output)."""

    def __init__(self, holds: dict, seed: int):
        super().__init__()
        self.gen = torch.Generator().manual_seed(seed)
        self.holds = holds
        self.stage_names = tuple(holds)
        for name in holds:
            self.add_module(name, nn.Identity())
        self.centres = torch.randn(4, 8, generator=self.gen) * 4.0
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        b1, b2 = x[:, 0].long(), x[:, 1].long()
        value = {"b1": 2 * b1, "b2": b2, "y": 2 * b1 + b2, "exact y": 2 * b1 + b2}
        out = None
        for name, what in self.holds.items():
            if what == "noise":
                z = torch.randn(x.shape[0], 8, generator=self.gen)
            else:
                z = self.centres[value[what]]
                if what != "exact y":
                    z = z + torch.randn(x.shape[0], 8, generator=self.gen)
            out = getattr(self, name)(z)
        return self.fc(out)


def _data(n=N):
    b1, b2, y = _bits(n)
    x = np.concatenate([b1[:, None], b2[:, None], _noise(11, n, 6)], axis=1)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def test_layer_map_from_models_by_hooks():
    x, y = _data()
    teacher = Planted({"stage1": "b1", "stage2": "noise", "stage3": "y"}, seed=1)
    student = Planted({"stage1": "noise", "stage2": "noise"}, seed=2)
    teacher.train()
    lmap = layer_map(teacher, student, x, y, n_boot=BOOT)
    assert lmap.teacher_layers == ["stage1", "stage2", "stage3"]
    assert lmap.student_layers == ["stage1", "stage2"]
    assert teacher.training  # flags restored
    assert lmap.pairing().pairs == [("stage1", "stage1"), ("stage2", "stage3")]
    only = layer_map(teacher, student, x, y, teacher_layers="stage3", student_layers=["stage2"], n_boot=BOOT)
    assert only.cell("stage3", "stage2").unique_t == pytest.approx(2.0, abs=0.05)
    with pytest.raises(ValueError, match="no module named 'stage9'"):
        layer_map(teacher, student, x, y, teacher_layers=["stage9"])


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # "exact y" has 4 distinct points
def test_teacher_ranking_planted():
    x, y = _data()
    teachers = {
        "noise": Planted({"stage1": "noise", "stage2": "noise"}, seed=1),
        "half": Planted({"stage1": "noise", "stage2": "b2"}, seed=2),
        "label": Planted({"stage1": "b1", "stage2": "y"}, seed=3),
    }
    student = Planted({"stage1": "noise", "stage2": "noise"}, seed=4)
    ranking = rank_teachers(teachers, student, x, y, n_boot=BOOT)
    assert [r.name for r in ranking.ranks] == ["label", "half", "noise"]
    assert ranking.student_layer == "stage2"
    label, half, noise = ranking.ranks
    assert label.best_layer == "stage2" and label.unique_t == pytest.approx(2.0, abs=0.05)
    assert half.best_layer == "stage2" and half.unique_t == pytest.approx(1.0, abs=0.05)
    assert noise.cell.at_floor and not label.cell.at_floor and not half.cell.at_floor
    assert not label.tied_with_next and not half.tied_with_next
    assert "label" in ranking.table() and json.dumps(ranking.as_dict())
    # a student from whose layer y can be read exactly: nothing is left in any teacher
    holder = Planted({"stage1": "exact y"}, seed=5)
    done = rank_teachers(teachers, holder, x, y, n_boot=BOOT)
    assert all(r.cell.at_floor and r.unique_t == pytest.approx(0.0, abs=1e-6) for r in done.ranks)


# ------------------------------------------------------------------------------ the command line

USER = '''
import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset


class Coded(nn.Module):
    # stage1 = proj(centre of y's cluster + noise), stage2 = proj2(stage1): what the stages hold
    # is set by the weights (identity: y; zero: nothing).
    stage_names = ("stage1", "stage2")

    def __init__(self):
        super().__init__()
        self.gen = torch.Generator().manual_seed(0)
        self.centres = torch.randn(4, 8, generator=self.gen) * 4.0
        self.stage1 = nn.Linear(8, 8)
        self.stage2 = nn.Linear(8, 8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = 2 * x[:, 0, 0].long() + x[:, 0, 1].long()
        z = self.centres[y] + torch.randn(x.shape[0], 8, generator=self.gen)
        return self.fc(self.stage2(self.stage1(z)))


class Blind(nn.Module):
    # a student whose stages see only the input's noise columns: they hold nothing of y
    stage_names = ("stage1", "stage2")

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Linear(6, 8)
        self.stage2 = nn.Linear(8, 8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.stage2(self.stage1(x[:, 0, 2:])))


def coded():
    return Coded()


def blind():
    return Blind()


def data(n=600):
    rng = np.random.default_rng(0)
    b1, b2 = rng.integers(0, 2, n), rng.integers(0, 2, n)
    x = np.concatenate([b1[:, None], b2[:, None], rng.normal(size=(n, 6))], axis=1)
    x, y = torch.tensor(x, dtype=torch.float32)[:, None], torch.tensor(2 * b1 + b2)  # (1, 8) signals
    return TensorDataset(x, y), TensorDataset(x, y)
'''


@pytest.fixture
def user(tmp_path, monkeypatch):
    """planted.py (models and data) and two weights files for its teacher: one whose stages hold y
    (identity projections), one whose stages hold nothing (zero projections)."""
    (tmp_path / "planted.py").write_text(USER)
    monkeypatch.chdir(tmp_path)
    from infodistill.models import build_from_factory

    state = build_from_factory("planted.py:coded").state_dict()
    for name, weight in (("holds", torch.eye(8)), ("blank", torch.zeros(8, 8))):
        stages = {f"stage{i}.{p}": (weight if p == "weight" else torch.zeros(8)).clone() for i in (1, 2)
                  for p in ("weight", "bias")}  # fmt: skip
        save_file({**state, **stages}, str(tmp_path / f"{name}.safetensors"))
    return tmp_path


COMMON = ["--teacher-model", "planted.py:coded", "--student", "untrained"]
COMMON += ["--student-model", "planted.py:blind"]
COMMON += ["--data", "planted.py:data", "--boot", str(BOOT), "--device", "cpu"]


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # the blank teacher: one point,
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide")  # of zero variance
def test_cli_map_heatmap_and_ranking(user, capsys):
    from infodistill.audit import load_models

    png = user / "map.png"
    argv = ["audit", "--teacher", "holds.safetensors", *COMMON, "--map", "--heatmap", str(png)]
    assert main([*argv, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["teacher_layers"] == ["stage1", "stage2"] and got["student_layers"] == ["stage1", "stage2"]
    # the library on the same models gives the same map
    loaded = load_models(
        ["holds.safetensors"], "untrained", teacher_model="planted.py:coded",
        student_model="planted.py:blind", data="planted.py:data", device="cpu",
    )  # fmt: skip
    lib = layer_map(loaded.teachers[0], loaded.student, loaded.x, loaded.y, n_boot=BOOT)
    for i, j in itertools.product(range(2), range(2)):
        assert got["cells"][i][j]["unique_t"] == pytest.approx(lib.cells[i][j].unique_t, abs=1e-9)
    assert lib.cells[1][1].unique_t == pytest.approx(2.0, abs=0.05)  # the teacher holds y, the student not
    assert got["pairing"]["pairs"] == [["stage1", "stage1"], ["stage2", "stage2"]]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Uni(Y:T\\S) [CI]" in out and "suggested pairing" in out

    rank = ["audit", "--teacher", "blank.safetensors", "--teacher", "holds.safetensors", *COMMON]
    assert main([*rank, "--json"]) == 0
    ranking = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in ranking["ranks"]] == ["holds.safetensors", "blank.safetensors"]
    assert ranking["ranks"][1]["at_floor"] and not ranking["ranks"][0]["at_floor"]
    assert ranking["ranks"][0]["unique_t"] == pytest.approx(2.0, abs=0.05)

    bad = {
        "heatmap without map": ["--teacher", "holds.safetensors", *COMMON, "--heatmap", "m.png"],
        "map of two teachers": [*rank[1:], "--map"],
        "not a png": [*argv[1:-1], "m.jpg"],
        "two student layers": [*rank[1:], "--layers-s", "stage1,stage2"],
        "a layer": [*argv[1:], "--layers-s", "stage9"],
        "twice": ["--teacher", "holds.safetensors", *rank[1:]],
    }
    for case, args in bad.items():
        assert main(["audit", *args]) == 2, case
        err = capsys.readouterr().err
        assert err.startswith("infodistill: error: ") and err.count("\n") == 1, (case, err)


def test_bad_inputs_are_one_line_errors_naming_the_fix():
    b1, b2, y = _bits()
    t, s = {"t": _code(b1, 2, 1)}, {"s": _noise(6)}
    cases = [
        (lambda: map_features(y, {}, s), "teacher_features is empty"),
        (lambda: map_features(y, [1, 2], s), "teacher_features must be a mapping {layer name: features}"),
        (lambda: map_features(y[:10], t, s), "layer 't' has 600 examples but labels has 10"),
        (lambda: map_features(y, t, s, n_boot=0), "n_boot must be an integer >= 1"),
        (lambda: map_features(y, t, s, n_perm=1), "n_perm must be an integer >= 2"),
        (lambda: map_features(y, {"t": _noise(1, dim=3)}, s), "layer 't': "),  # pca 5 > 3 dims
        (lambda: rank_teachers({}, None, None, None), "teachers must be a non-empty mapping"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as err:
            call()
        assert message in str(err.value) and "\n" not in str(err.value), (message, str(err.value))
    lmap = map_features(y, t, s, n_boot=BOOT)
    with pytest.raises(KeyError, match="no mapped student layer 'x'"):
        lmap.cell("t", "x")
    with pytest.raises(ValueError, match="heatmap term 'nope'"):
        lmap.heatmap("x.png", terms=["nope"])
