"""``decompose_batch`` (the batched interior-point method for bootstrap resamples of small joints)
against ``decompose`` one by one, the cvxpy reference and quantities computed here from p and Q."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from infodistill.pid import decompose, decompose_batch, estimate
from infodistill.pid.broja import batch as batch_module
from infodistill.pid.measures import LN2

DATA = Path(__file__).resolve().parent / "fixtures"
TERMS = ("redundancy", "unique_t", "unique_s", "synergy")
TOL_BITS = 1e-6


def resamples(counts: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n bootstrap resamples (same total) of a count histogram."""
    cells = np.repeat(np.arange(counts.size), counts.ravel().astype(int))
    rng = np.random.default_rng(seed)
    draws = [
        np.bincount(cells[rng.integers(0, cells.size, cells.size)], minlength=counts.size) for _ in range(n)
    ]
    return np.array(draws).reshape(n, *counts.shape)


def e1_counts() -> np.ndarray:
    """The E1 bootstrap histogram (10x5x5, 1 000 counts on 49 cells) of test_solver_robust."""
    p = np.load(DATA / "pid-bootstrap-nan-10x5x5.npy")
    return np.round(p / p.sum() * 1000).astype(int)


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kw)


def fsum_objective(q: np.ndarray) -> float:
    """f(Q) = Σ Q log Q(y|t,s) in nats with math.fsum (independent of the solver's own sums)."""
    r = q.sum(axis=0)
    return math.fsum(float(v * math.log(v / r[t, s])) for (y, t, s), v in np.ndenumerate(q) if v > 0)


def check_against(batch, single):
    for a, b in zip(batch, single, strict=True):
        assert 0.0 <= a.gap <= TOL_BITS and 0.0 <= b.gap <= TOL_BITS
        for k in (*TERMS, "mi_t", "mi_s", "mi_joint"):
            assert abs(getattr(a, k) - getattr(b, k)) <= a.gap + b.gap + 1e-12, (
                k,
                getattr(a, k),
                getattr(b, k),
            )


def test_bootstrap_resamples_equal_decompose_one_by_one():
    ps = resamples(e1_counts(), 40, seed=0)
    batch = quiet(decompose_batch, ps, counts=True, tol=TOL_BITS)
    single = [quiet(decompose, p, counts=True, tol=TOL_BITS) for p in ps]
    check_against(batch, single)
    # nearly all certified by the batch itself; the rest handed back to decompose
    assert sum(r.solver["batch"] == "batch" for r in batch) >= 36


def test_batch_certificate_checked_independently():
    """Q in Δ_P (its marginals against p's), min_mi = H(Y) + f(Q) with f summed by math.fsum, and
    I(Y;T), I(Y;S), I(Y;T,S) from p: the identities hold within the certified gap."""
    ps = resamples(e1_counts(), 12, seed=3)
    for counts, r in zip(ps, quiet(decompose_batch, ps, counts=True, tol=TOL_BITS, unit="nats"), strict=True):
        p = counts / counts.sum()
        assert r.solver["batch"] in ("batch", "handed back: decompose")
        np.testing.assert_allclose(r.q.sum(axis=2), p.sum(axis=2), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(r.q.sum(axis=1), p.sum(axis=1), rtol=1e-12, atol=1e-15)
        assert np.all(r.q >= 0)
        py = p.sum(axis=(1, 2))
        h_y = -sum(v * math.log(v) for v in py if v > 0)
        assert abs(r.min_mi - (h_y + fsum_objective(r.q))) <= 1e-12
        h = lambda x: -math.fsum(float(v * math.log(v)) for v in x.ravel() if v > 0)  # noqa: E731
        assert abs(r.mi_t - (h_y + h(p.sum(axis=(0, 2))) - h(p.sum(axis=2)))) <= 1e-12
        assert abs(r.redundancy + r.unique_t - r.mi_t) <= r.gap + 1e-12
        assert abs(r.redundancy + r.unique_s - r.mi_s) <= r.gap + 1e-12
        assert abs(r.redundancy + r.unique_t + r.unique_s + r.synergy - r.mi_joint) <= r.gap + 1e-12
        assert min(getattr(r, k) for k in TERMS) >= -r.gap - 1e-12


def test_batch_matches_the_reference():
    pytest.importorskip("cvxpy")
    from infodistill.pid.reference import reference_decompose

    ps = resamples(e1_counts(), 4, seed=5)
    for counts, r in zip(ps, quiet(decompose_batch, ps, counts=True, tol=TOL_BITS), strict=True):
        ref = reference_decompose(counts / counts.sum())
        for k in TERMS:
            assert abs(getattr(r, k) - ref[k]) <= r.gap + ref["gap"] + 1e-9, (k, getattr(r, k), ref[k])


def test_resamples_with_unused_symbols_and_swapped_sources():
    """Some joints of the stack leave a label, a teacher or a student symbol empty (the batch keeps
    them as empty rows); S > T (the batch swaps, as decompose)."""
    rng = np.random.default_rng(11)
    ps = rng.integers(0, 30, size=(9, 6, 3, 5)).astype(float)
    ps *= rng.random(ps.shape) < 0.5
    ps[1, 2] = 0.0  # a label unused
    ps[2, :, 1] = 0.0  # a teacher symbol unused
    ps[3, :, :, 4] = 0.0  # a student symbol unused
    ps[4, :, :, :] = 0.0
    ps[4, 0, 0, 0] = 5.0  # a single cell
    ps[5, :, 0, 0] += 1.0
    batch = quiet(decompose_batch, ps, counts=True, tol=TOL_BITS)
    single = [quiet(decompose, p, counts=True, tol=TOL_BITS) for p in ps]
    check_against(batch, single)
    assert batch[4].q.shape == (6, 3, 5) and batch[4].synergy == 0.0


def test_handed_back_problems_are_decomposed_one_by_one(monkeypatch):
    """With no iteration allowed in the batch, every joint goes to decompose (and says so)."""
    monkeypatch.setattr(batch_module, "BATCH_MAX_ITER", 0)
    ps = resamples(e1_counts(), 3, seed=7)
    batch = quiet(decompose_batch, ps, counts=True, tol=TOL_BITS)
    assert [r.solver["batch"] for r in batch] == ["handed back: decompose"] * 3
    check_against(batch, [quiet(decompose, p, counts=True, tol=TOL_BITS) for p in ps])


def test_large_joints_are_decomposed_one_by_one():
    rng = np.random.default_rng(2)
    ps = rng.random((2, 10, 16, 16))
    ps /= ps.sum(axis=(1, 2, 3), keepdims=True)
    batch = quiet(decompose_batch, ps)
    check_against(batch, [quiet(decompose, p) for p in ps])


def test_default_tolerance_units_and_empty_stack():
    ps = resamples(e1_counts(), 3, seed=9)
    bits = quiet(decompose_batch, ps, counts=True)
    nats = quiet(decompose_batch, ps, counts=True, unit="nats")
    for b, n in zip(bits, nats, strict=True):
        assert b.unit == "bits" and n.unit == "nats"
        assert b.gap <= 1e-7 and n.gap <= 1e-7 * LN2
        assert abs(b.synergy * LN2 - n.synergy) <= n.gap + b.gap * LN2 + 1e-12
    assert decompose_batch(np.zeros((0, 2, 2, 2))) == []


@pytest.mark.parametrize(
    "ps, kw, match",
    [
        (np.ones((2, 2, 2)), {}, "4-D"),
        (np.ones((2, 2, 2, 2)), {}, "sums to"),
        (-np.ones((2, 2, 2, 2)), dict(counts=True), "negative"),
        (np.zeros((2, 2, 2, 2)), dict(counts=True), "total 0"),
        (np.full((1, 2, 2, 2), np.nan), dict(counts=True), "NaN"),
        (np.ones((1, 2, 2, 2)) / 8, dict(tol=-1.0), "tol"),
    ],
)
def test_bad_input_raises(ps, kw, match):
    with pytest.raises(ValueError, match=match):
        decompose_batch(ps, **kw)


def test_estimate_bootstrap_uses_the_batch(monkeypatch):
    """estimate's bootstrap and permutation baseline go through decompose_batch; with decompose one
    by one in its place the intervals and the bias agree within the resample tolerance."""
    from infodistill.pid import resample

    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 4, n)
    xt = y[:, None] + rng.normal(0, 0.8, (n, 3))
    xs = (y % 2)[:, None] + rng.normal(0, 0.8, (n, 3))
    calls = []
    real = resample.decompose_batch

    def spy(ps, **kw):
        calls.append(len(ps))
        return real(ps, **kw)

    monkeypatch.setattr(resample, "decompose_batch", spy)
    kw = dict(k=4, pca=None, n_boot=12, n_perm=5, seed=3)
    res = estimate(y, xt, xs, **kw)
    assert sorted(calls) == [5, 12]

    def one_by_one(ps, **kw):
        return [decompose(p, **kw) for p in ps]

    monkeypatch.setattr(resample, "decompose_batch", one_by_one)
    ref = estimate(y, xt, xs, **kw)
    tol = res.settings["resample_tol"]
    for k in TERMS:
        assert abs(res.ci[k][0] - ref.ci[k][0]) <= 2 * tol and abs(res.ci[k][1] - ref.ci[k][1]) <= 2 * tol
        assert abs(res.bias["mean"][k] - ref.bias["mean"][k]) <= 2 * tol


def test_a_singular_newton_matrix_hands_the_batch_back(monkeypatch):
    """np.linalg raises for the whole stack when one matrix is singular: the problems still running
    go to decompose instead of the error reaching the caller."""

    def singular(self, *args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(batch_module._BatchNewton, "__init__", singular)
    ps = resamples(e1_counts(), 3, seed=13)
    batch = quiet(decompose_batch, ps, counts=True, tol=TOL_BITS)
    assert [r.solver["batch"] for r in batch] == ["handed back: decompose"] * 3
    check_against(batch, [quiet(decompose, p, counts=True, tol=TOL_BITS) for p in ps])


def test_spd_inverse_against_numpy():
    """The vectorised Cholesky inverse of the label blocks against np.linalg.inv (and A A⁻¹ = I); a
    matrix that is not positive definite raises LinAlgError (the caller then takes np.linalg.inv)."""
    rng = np.random.default_rng(3)
    X = rng.random((40, 10, 13))
    A = X @ X.transpose(0, 2, 1) + 1e-3 * np.eye(10)
    inv = batch_module._spd_inverse(A)
    assert np.allclose(inv, np.linalg.inv(A), rtol=1e-9, atol=1e-9 * np.abs(inv).max())
    assert np.allclose(A @ inv, np.eye(10), atol=1e-8)
    bad = A.copy()
    bad[7] = -np.eye(10)
    with pytest.raises(np.linalg.LinAlgError):
        batch_module._spd_inverse(bad)


def test_batched_newton_solve_against_the_exact_product():
    """The batched Schur-complement solve (its gathers of K and of the C blocks on the free μ) against
    the Newton matrix's exact product ``matvec``, on resamples with unused symbols: the direction
    it returns reproduces the right-hand side on every used λ and free μ."""
    ps = resamples(e1_counts(), 6, seed=21).astype(float)
    ps[2, :, 1, :] = 0.0  # an unused teacher symbol in one resample
    ps /= ps.sum(axis=(1, 2, 3), keepdims=True)
    bt = batch_module._Batch(ps.sum(axis=3), ps.sum(axis=2))
    rng = np.random.default_rng(5)
    B, Y, T, S = bt.shape
    lam = np.where(bt.m_yt, rng.normal(size=(B, Y, T)), 0.0)
    mu = np.where(bt.m_ys, rng.normal(size=(B, Y, S)), 0.0)
    c, pi = bt.evaluate(lam, mu)
    r = np.where(bt.pairs, rng.random((B, T, S)) + 0.1, 0.0)
    s = np.where(bt.pairs, rng.random((B, T, S)) + 0.2, 1.0)
    W = np.where(bt.pairs, r * (1.0 / s - 1.0), 0.0)
    system = batch_module._BatchNewton(bt, pi, r, W)
    g_lam = np.where(bt.m_yt, rng.normal(size=(B, Y, T)), 0.0)
    g_mu = np.where(bt.free_mu, rng.normal(size=(B, Y, S)), 0.0)
    d_lam, d_mu = system.solve(g_lam, g_mu, refine=0)
    h_lam, h_mu = system.matvec(d_lam, d_mu)
    assert np.abs(np.where(bt.m_yt, h_lam - g_lam, 0.0)).max() <= 1e-8 * np.abs(g_lam).max()
    assert np.abs(np.where(bt.free_mu, h_mu - g_mu, 0.0)).max() <= 1e-8 * np.abs(g_mu).max()
    assert not d_mu[~bt.free_mu].any()


def test_subset_indices_equal_a_fresh_batch():
    """``_subset`` moves the gather indices of the kept problems; they equal those of a batch built
    from those problems alone."""
    ps = resamples(e1_counts(), 7, seed=8).astype(float)
    ps /= ps.sum(axis=(1, 2, 3), keepdims=True)
    p_yt, p_ys = ps.sum(axis=3), ps.sum(axis=2)
    whole = batch_module._Batch(p_yt, p_ys)
    keep = np.array([1, 4, 6])
    sub = batch_module._subset(whole, keep)
    fresh = batch_module._Batch(p_yt[keep], p_ys[keep])
    k = fresh.perm.shape[1]  # the whole batch may pad to more free μ; the kept ones come first
    assert np.array_equal(sub.valid[:, :k], fresh.valid) and not sub.valid[:, k:].any()
    for name in ("flat", "rows", "rows_y", "y_i"):
        assert np.array_equal(getattr(sub, name)[:, :k], getattr(fresh, name)), name
    assert np.array_equal(sub.c_flat[:, :k, :k], fresh.c_flat)
    assert np.array_equal(sub.c_mask[:, :k, :k], fresh.c_mask)


def test_warm_start_is_strictly_feasible_for_every_resample():
    """``warm_start``'s iterate (from the stack's mean) has c < 0 on every pair and r > 0 on every
    pair of each problem, including resamples that leave symbols unused; started from it, the batch
    certifies every resample as decompose does, in fewer iterations than from each one's own Q0."""
    ps = resamples(e1_counts(), 24, seed=4).astype(float)
    ps[3, :, 2, :] = 0.0  # an unused teacher symbol
    ps[5, 1] = 0.0  # an unused label
    ps /= ps.sum(axis=(1, 2, 3), keepdims=True)
    p_yt, p_ys = ps.sum(axis=3), ps.sum(axis=2)
    tol = TOL_BITS * LN2
    start = batch_module.warm_start(p_yt, p_ys, tol)
    assert start is not None
    lam, mu, r = start
    bt = batch_module._Batch(p_yt, p_ys)
    c, _ = bt.evaluate(np.where(bt.m_yt, lam, 0.0), np.where(bt.m_ys, mu, 0.0))
    assert (c[bt.pairs] < 0).all() and (np.broadcast_to(r, bt.pairs.shape)[bt.pairs] > 0).all()
    warm = batch_module.solve_broja_batch(p_yt, p_ys, tol, start=start)
    cold = batch_module.solve_broja_batch(p_yt, p_ys, tol)
    # (the resample without teacher symbol 2 is far from the mean: the warm run hands it back, and
    # decompose_batch runs it again from its own Q0; the cold run hands back two others)
    both = warm[3] & cold[3]
    assert both.sum() >= 20
    assert warm[4][both].mean() < cold[4][both].mean() - 1
    for i, p in enumerate(ps):
        if not both[i]:
            continue
        # Each certified interval [d_lower, f_upper] of min f = min I_Q − H(Y) contains decompose's
        # optimum (H(Y) computed here), and those of the warm and the cold run overlap.
        p_y = p.sum(axis=(1, 2))
        h_y = -math.fsum(float(v * math.log(v)) for v in p_y if v > 0)
        one = quiet(decompose, p, unit="nats", tol=tol)
        f_one = one.min_mi - h_y
        for run in (warm, cold):
            assert run[2][i] - 1e-12 <= f_one <= run[1][i] + one.gap + 1e-12
        assert warm[2][i] <= cold[1][i] + 1e-12 and cold[2][i] <= warm[1][i] + 1e-12
    batch = quiet(decompose_batch, ps, tol=TOL_BITS)
    check_against(batch, [quiet(decompose, p, tol=TOL_BITS) for p in ps])
    assert sum(r.solver["batch"] == "batch" for r in batch) == len(ps)
