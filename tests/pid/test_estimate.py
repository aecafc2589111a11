"""Tests of infodistill.pid.estimate: PID of continuous representations via clustering."""

from __future__ import annotations

import json

import numpy as np
import pytest

from infodistill.pid import EstimateResult, SweepResult, decompose, estimate, sweep
from infodistill.pid.estimate import TERMS

PID_TERMS = ("redundancy", "unique_t", "unique_s", "synergy")

# Gate -> (function of the two source bits giving y, closed-form PID in bits).
GATES = {
    "RDN": (lambda t, s: t, dict(redundancy=1.0, unique_t=0.0, unique_s=0.0, synergy=0.0)),
    "UNQ": (lambda t, s: t, dict(redundancy=0.0, unique_t=1.0, unique_s=0.0, synergy=0.0)),
    "XOR": (lambda t, s: t ^ s, dict(redundancy=0.0, unique_t=0.0, unique_s=0.0, synergy=1.0)),
    "AND": (lambda t, s: t & s, dict(redundancy=0.311278, unique_t=0.0, unique_s=0.0, synergy=0.5)),
    "COPY": (lambda t, s: 2 * t + s, dict(redundancy=0.0, unique_t=1.0, unique_s=1.0, synergy=0.0)),
    "SUM": (lambda t, s: t + s, dict(redundancy=0.5, unique_t=0.0, unique_s=0.0, synergy=1.0)),
}


def gate_symbols(gate: str, n: int, rng):
    """Discrete samples (y, t, s) of a gate with uniform independent source bits (RDN: s = t)."""
    f, _ = GATES[gate]
    t = rng.integers(0, 2, n)
    s = t.copy() if gate == "RDN" else rng.integers(0, 2, n)
    return f(t, s), t, s


def population_joint(gate: str) -> np.ndarray:
    """The true discrete p[y, t, s] of a gate, built independently of any sampling or clustering."""
    f, _ = GATES[gate]
    pairs = [(0, 0), (1, 1)] if gate == "RDN" else [(t, s) for t in (0, 1) for s in (0, 1)]
    p = np.zeros((4, 2, 2))
    for t, s in pairs:
        p[f(t, s), t, s] += 1.0 / len(pairs)
    return p[p.sum(axis=(1, 2)) > 0]


def embed(symbols, rng, n_symbols: int = 2, dim: int = 16, noise: float = 0.05):
    """Each symbol becomes a well-separated unit-norm centre in R^dim plus small Gaussian noise."""
    centres = rng.normal(size=(n_symbols, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return centres[symbols] + noise * rng.normal(size=(len(symbols), dim))


def counts_of(y, t, s) -> np.ndarray:
    c = np.zeros((y.max() + 1, t.max() + 1, s.max() + 1))
    np.add.at(c, (y, t, s), 1)
    return c


@pytest.fixture(scope="module")
def noisy_channels():
    """Labels in {0,1,2}; T and S noisy copies of y (T the cleaner one), embedded in 8-D."""

    def make(n, seed=0):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 3, n)
        t = np.where(rng.random(n) < 0.8, y, rng.integers(0, 3, n))
        s = np.where(rng.random(n) < 0.6, y, rng.integers(0, 3, n))
        return y, embed(t, rng, 3, 8), embed(s, rng, 3, 8)

    return make


# ---------------------------------------------------------------------------------------------
# Recovery of known PIDs


@pytest.mark.parametrize("gate", list(GATES))
def test_gate_recovery(gate):
    rng = np.random.default_rng(1)
    n = 20_000
    y, t, s = gate_symbols(gate, n, rng)
    res = estimate(y, embed(t, rng), embed(s, rng), k=2, pca=None, seed=3)
    exact = decompose(population_joint(gate))
    closed = GATES[gate][1]
    for term in PID_TERMS:
        got = getattr(res.pid, term)
        assert abs(got - getattr(exact, term)) < 0.02, (term, got, getattr(exact, term))
        assert abs(got - closed[term]) < 0.02, (term, got, closed[term])
        assert abs(getattr(exact, term) - closed[term]) < 1e-4
    # The clusters recover the symbols exactly, so the estimate is the plug-in PID of the
    # discrete sample itself (PID is invariant to relabelling the clusters).
    sample = decompose(counts_of(y, t, s), counts=True)
    for term in TERMS:
        assert getattr(res.pid, term) == pytest.approx(getattr(sample, term), abs=1e-6)
    assert res.counts.sum() == n
    assert res.settings["clusters_used_t"] == res.settings["clusters_used_s"] == 2


@pytest.mark.parametrize("gate", ["AND", "UNQ"])
def test_gate_recovery_pca_held_out(gate):
    rng = np.random.default_rng(2)
    y, t, s = gate_symbols(gate, 20_000, rng)
    res = estimate(y, embed(t, rng), embed(s, rng), k=2, pca=2, fit_fraction=0.5)
    exact = decompose(population_joint(gate))
    for term in PID_TERMS:
        assert abs(getattr(res.pid, term) - getattr(exact, term)) < 0.02
    assert res.settings["pca_solver_t"] == "full"


def test_argmax_discretisation_on_logits():
    rng = np.random.default_rng(4)
    n = 5000
    y, t, s = gate_symbols("AND", n, rng)
    logits_t = 4.0 * np.eye(2)[t] + 0.3 * rng.normal(size=(n, 2))
    res = estimate(y, logits_t, embed(s, rng), k=2, discretize=("argmax", "kmeans"), pca=None)
    assert res.settings["discretize_t"] == "argmax" and res.settings["k_t"] is None
    assert res.settings["dim_t"] == 2
    sample = decompose(counts_of(y, t, s), counts=True)
    assert res.pid.synergy == pytest.approx(sample.synergy, abs=1e-6)
    # Both sides argmax: the histogram is exactly the discrete one, axes in column order.
    logits_s = 4.0 * np.eye(2)[s] + 0.3 * rng.normal(size=(n, 2))
    both = estimate(y, logits_t, logits_s, discretize="argmax")
    np.testing.assert_array_equal(both.counts, counts_of(y, t, s))


# ---------------------------------------------------------------------------------------------
# Held-out split, bootstrap, bias, determinism


def test_fit_fraction_split_is_disjoint(noisy_channels):
    y, xt, xs = noisy_channels(1000)
    res = estimate(y, xt, xs, k=3, fit_fraction=0.3, pca=None)
    fit, count = res.split["fit"], res.split["count"]
    assert len(fit) == res.settings["n_fit"] == 300
    assert len(count) == res.settings["n_count"] == 700
    assert np.intersect1d(fit, count).size == 0
    np.testing.assert_array_equal(np.union1d(fit, count), np.arange(1000))
    assert res.counts.sum() == 700
    assert res.settings["n_samples"] == 1000 and res.settings["fit_fraction"] == 0.3
    full = estimate(y, xt, xs, k=3, pca=None)
    assert full.settings["n_fit"] == full.settings["n_count"] == 1000 and full.counts.sum() == 1000


def test_bootstrap_ci_contains_estimate_and_narrows(noisy_channels):
    widths = {}
    for n in (2000, 20_000):
        y, xt, xs = noisy_channels(n)
        res = estimate(y, xt, xs, k=3, pca=None, n_boot=60, ci=0.9, n_perm=0)
        assert res.boot.shape == (60, len(TERMS))
        assert set(res.ci) == set(TERMS)
        for term, (lo, hi) in res.ci.items():
            value = getattr(res.pid, term)
            assert lo <= value <= hi, (n, term, lo, value, hi)
        widths[n] = {t: hi - lo for t, (lo, hi) in res.ci.items()}
    for term in ("redundancy", "unique_t", "synergy", "mi_t", "mi_s", "mi_joint"):
        assert widths[20_000][term] < 0.6 * widths[2000][term], term


def test_permutation_baseline_matches_plugin_bias(noisy_channels):
    n = 2000
    y, xt, xs = noisy_channels(n)
    res = estimate(y, xt, xs, k=3, pca=None, n_perm=20)
    assert res.bias["method"] == "label_permutation" and res.bias["n_perm"] == 20
    assert all(v >= 0 for v in res.bias["mean"].values())
    # Under independence the plug-in I(Y;T,S) has expectation ~ (|Y|-1)(|T||S|-1) / (2 n ln 2).
    expected = 2 * 8 / (2 * n * np.log(2))
    assert 0.5 * expected < res.bias["mean"]["mi_joint"] < 2 * expected
    assert res.pid.mi_t > 50 * res.bias["mean"]["mi_t"]
    assert estimate(y, xt, xs, k=3, pca=None, n_perm=0).bias is None


def test_deterministic_for_a_seed(noisy_channels):
    y, xt, xs = noisy_channels(1500)
    kw = dict(k=4, pca=3, fit_fraction=0.5, n_boot=10, seed=7)
    a, b = estimate(y, xt, xs, **kw), estimate(y, xt, xs, **kw)
    assert a.as_dict() == b.as_dict()
    np.testing.assert_array_equal(a.boot, b.boot)
    np.testing.assert_array_equal(a.split["fit"], b.split["fit"])
    c = estimate(y, xt, xs, **{**kw, "seed": 8})
    assert not np.array_equal(a.split["fit"], c.split["fit"])


def test_units_and_serialisation(noisy_channels):
    y, xt, xs = noisy_channels(1000)
    bits = estimate(y, xt, xs, k=3, n_boot=5)
    nats = estimate(y, xt, xs, k=3, n_boot=5, unit="nats")
    for term in TERMS:
        assert getattr(nats.pid, term) == pytest.approx(getattr(bits.pid, term) * np.log(2), abs=1e-6)
    assert nats.settings["unit"] == "nats"
    d = json.loads(json.dumps(bits.as_dict()))
    assert d["settings"]["k_t"] == 3 and len(d["counts"]) == 3 and set(d["ci"]) == set(TERMS)
    table = bits.table()
    assert all(term in table for term in TERMS) and "CI" in table and "perm. baseline" in table
    assert isinstance(bits, EstimateResult)


# ---------------------------------------------------------------------------------------------
# Pooling of feature maps


@pytest.mark.parametrize("spatial", [(3, 3), (5,)])
def test_pool_avg_vs_flatten(spatial):
    rng = np.random.default_rng(5)
    n = 3000
    y, t, s = gate_symbols("XOR", n, rng)

    def fmap(sym):
        # The symbol sits in the channel means; each position adds its own noise.
        base = embed(sym, rng, dim=4, noise=0.02)
        return base.reshape(n, 4, *([1] * len(spatial))) + 0.3 * rng.normal(size=(n, 4, *spatial))

    ft, fs = fmap(t), fmap(s)
    axes = tuple(range(2, ft.ndim))
    kw = dict(k=2, pca=None, n_perm=0)
    avg = estimate(y, ft, fs, pool="avg", **kw)
    flat = estimate(y, ft, fs, pool="flatten", **kw)
    pooled = estimate(y, ft.mean(axis=axes), fs.mean(axis=axes), **kw)
    flattened = estimate(y, ft.reshape(n, -1), fs.reshape(n, -1), **kw)
    # Exact: estimate pools with the same numpy call (arr.mean over the spatial axes) on the same
    # float64 array, so both sides run the same kernels in the same order on any CPU.
    assert avg.terms == pooled.terms and np.array_equal(avg.counts, pooled.counts)
    assert flat.terms == flattened.terms and np.array_equal(flat.counts, flattened.counts)
    assert avg.settings["pool"] == "avg" and avg.settings["dim_t"] == 4
    assert flat.settings["dim_t"] == 4 * int(np.prod(spatial))
    assert avg.settings["shape_t"] == flat.settings["shape_t"] == [4, *spatial]
    # Averaging removes the per-position noise: XOR's bit of synergy is recovered.
    assert avg.pid.synergy == pytest.approx(1.0, abs=0.02)


# ---------------------------------------------------------------------------------------------
# Sweep


def test_sweep_rows_match_estimate(noisy_channels):
    y, xt, xs = noisy_channels(1500)
    kw = dict(pca=3, fit_fraction=0.5, seed=2, n_perm=2)
    sw = sweep(y, xt, xs, k=(2, 3, 5), **kw)
    assert isinstance(sw, SweepResult) and [r["k"] for r in sw.rows] == [2, 3, 5]
    for row, res in zip(sw.rows, sw.results, strict=True):
        single = estimate(y, xt, xs, k=row["k"], **kw)
        assert single.as_dict() == res.as_dict()
        assert {t: row[t] for t in TERMS} == single.terms
        assert row["mi_joint_perm"] == single.bias["mean"]["mi_joint"]
    table = sw.table()
    assert len(table.splitlines()) == 3 + 3 and "Red(Y:T,S)" in table
    json.dumps(sw.as_dict())
    with pytest.raises(ValueError, match="k_t"):
        sweep(y, xt, xs, k=(2, 3), k_t=2)
    with pytest.raises(TypeError):
        sweep(y, xt, xs, k=(2,), not_an_option=1)


# ---------------------------------------------------------------------------------------------
# Bad input


def _base():
    rng = np.random.default_rng(0)
    n = 40
    return dict(
        labels=rng.integers(0, 2, n),
        teacher_features=rng.normal(size=(n, 6)),
        student_features=rng.normal(size=(n, 6)),
    )


def _nan(x):
    x = x.copy()
    x[3, 2] = np.nan
    return x


def _inf(x):
    x = x.copy()
    x[0, 0] = np.inf
    return x


BAD = [
    (
        "mismatched lengths",
        dict(student_features=lambda d: d["student_features"][:-1]),
        {},
        "student_features",
    ),
    ("non-integer labels", dict(labels=lambda d: d["labels"] + 0.5), {}, "labels"),
    ("string labels", dict(labels=lambda d: d["labels"].astype(str)), {}, "labels"),
    ("2-D labels", dict(labels=lambda d: d["labels"].reshape(-1, 1)), {}, "labels"),
    ("empty labels", dict(labels=lambda d: d["labels"][:0]), {}, "labels"),
    ("NaN features", dict(teacher_features=lambda d: _nan(d["teacher_features"])), {}, "teacher_features"),
    ("inf features", dict(student_features=lambda d: _inf(d["student_features"])), {}, "student_features"),
    (
        "no feature columns",
        dict(teacher_features=lambda d: d["teacher_features"][:, :0]),
        {},
        "teacher_features",
    ),
    ("1-D features", dict(teacher_features=lambda d: d["teacher_features"][:, 0]), {}, "teacher_features"),
    (
        "5-D features",
        dict(student_features=lambda d: d["student_features"].reshape(40, 1, 1, 2, 3)),
        {},
        "student_features",
    ),
    ("fewer samples than clusters", {}, dict(k=50, pca=None), "k"),
    ("k < 1", {}, dict(k=0), "k"),
    ("k_t < 1", {}, dict(k_t=0), "k_t"),
    ("non-integer k", {}, dict(k=2.5), "k"),
    ("pca above feature dim", {}, dict(pca=7, k=2), "pca"),
    ("fit_fraction out of range", {}, dict(fit_fraction=1.5), "fit_fraction"),
    ("fit split too small for k", {}, dict(fit_fraction=0.1, k=10, pca=None), "k"),
    ("unknown pool", {}, dict(pool="max"), "pool"),
    ("unknown discretize", {}, dict(discretize="quantile"), "discretize"),
    ("unknown unit", {}, dict(unit="bans"), "unit"),
    ("ci out of range", {}, dict(ci=95), "ci"),
    ("negative n_boot", {}, dict(n_boot=-1), "n_boot"),
    ("negative seed", {}, dict(seed=-1), "seed"),
]


@pytest.mark.parametrize("case, data_change, kwargs, name", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises(case, data_change, kwargs, name):
    d = _base()
    d.update({key: f(d) for key, f in data_change.items()})
    kwargs = {"k": 3, **kwargs}
    with pytest.raises(ValueError) as info:
        estimate(d["labels"], d["teacher_features"], d["student_features"], **kwargs)
    msg = str(info.value)
    assert name in msg and "\n" not in msg, msg


def test_accepted_inputs():
    d = _base()
    # Arbitrary integer label values, whole-number float labels and integer features are all fine.
    a = estimate(d["labels"] * 7 - 3, d["teacher_features"], d["student_features"], k=3)
    b = estimate(d["labels"].astype(float), d["teacher_features"], d["student_features"], k=3)
    assert a.terms == b.terms and a.settings["n_classes"] == 2
    ints = (d["teacher_features"] * 10).astype(int)
    assert estimate(d["labels"], ints, ints, k=3, pca=2).settings["dim_t"] == 6


# ---------------------------------------------------------------------------------------------
# A side discretised beforehand (a fixed teacher tracked over epochs)


def test_discretized_side_gives_the_same_estimate(noisy_channels):
    from infodistill.pid import Discretized, discretize

    y, xt, xs = noisy_channels(900, seed=4)
    # 4-D maps above the randomized-PCA threshold, as a conv teacher's features are
    rng = np.random.default_rng(1)
    xt4 = np.concatenate([xt, 0.01 * rng.normal(size=(len(y), 600))], axis=1).reshape(len(y), 8, 19, 4)
    kw = dict(k=4, pca=3, seed=7, n_boot=6, n_perm=2)
    full = estimate(y, xt4, xs, **kw)
    dt = discretize(xt4, k=4, pca=3, seed=7)
    assert isinstance(dt, Discretized) and dt.alphabet == 4 and dt.symbols.shape == (len(y),)
    assert dt.settings["pca_solver"] == "randomized" and dt.settings["sample_shape"] == [8, 19, 4]
    # the symbols are a relabelling-free copy of what estimate counted: its histogram's teacher margin
    assert np.array_equal(np.bincount(dt.symbols, minlength=4), full.counts.sum(axis=(0, 2)))
    pre = estimate(y, dt, xs, **kw)
    assert pre.as_dict() == full.as_dict()
    ds = discretize(xs, k=4, pca=3, seed=7)
    assert estimate(y, dt, ds, **kw).as_dict() == full.as_dict()
    # argmax sides too
    logits = rng.normal(size=(len(y), 3))
    a = estimate(y, logits, xs, discretize=("argmax", "kmeans"), k=4, pca=3, seed=7)
    da = discretize(logits, method="argmax")
    assert np.array_equal(da.symbols, logits.argmax(axis=1)) and da.alphabet == 3
    b = estimate(y, da, xs, discretize=("argmax", "kmeans"), k=4, pca=3, seed=7)
    assert a.as_dict() == b.as_dict()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=5), "k=4 but this estimate uses k=5"),
        (dict(pca=2), "pca=3 but this estimate uses pca=2"),
        (dict(seed=1), "seed=0 but this estimate uses seed=1"),
        (dict(normalize=False), "normalize=True"),
        (dict(fit_fraction=0.5), "fit_fraction=None"),
        (dict(discretize="argmax"), "mode='kmeans'"),
    ],
)
def test_discretized_side_with_other_settings_is_refused(noisy_channels, kwargs, match):
    from infodistill.pid import discretize

    y, xt, xs = noisy_channels(200)
    dt = discretize(xt, k=4, pca=3, seed=0)
    base = dict(k=4, pca=3, seed=0)
    with pytest.raises(ValueError, match=match):
        estimate(y, dt, xs, **{**base, **kwargs})
    with pytest.raises(ValueError, match="lengths must match"):
        estimate(y[:100], dt, xs[:100], **base)
    with pytest.raises(ValueError, match="not a Discretized"):
        sweep(y, dt, xs, k=(2, 4))


def test_estimate_times_its_own_stages(noisy_channels):
    import time

    from infodistill.pid.estimate import ESTIMATE_STAGES

    y, xt, xs = noisy_channels(600)
    t0 = time.perf_counter()
    res = estimate(y, xt, xs, k=3, pca=3, n_boot=5, n_perm=3)
    wall = time.perf_counter() - t0
    assert tuple(res.timings) == ESTIMATE_STAGES
    assert all(v > 0 for v in res.timings.values())
    assert sum(res.timings.values()) <= wall  # stages are disjoint parts of the call
    # timings are not results: equal estimates compare and serialise equal
    again = estimate(y, xt, xs, k=3, pca=3, n_boot=5, n_perm=3)
    assert again == res and again.as_dict() == res.as_dict() and "timings" not in res.as_dict()
