"""The small-problem route of the BROJA solver (``broja.small``) against the general route and the
cvxpy reference: the same optimum within the certified gaps, an exactly feasible Q, and a hand-back
to the full method when it does not certify."""

import numpy as np
import pytest

from fast_routes import assert_decompose_agrees_without, assert_handed_back, assert_matches_reference
from infodistill.pid import decompose
from infodistill.pid.broja import _Problem, objective
from infodistill.pid.broja import small as small_mod
from infodistill.pid.broja.small import small_route, solve_small
from infodistill.pid.broja.solve import _solve_broja, first_path

TOL = 1e-9  # nats


def histogram(shape, seed, n=1000):
    """Counts of n samples of correlated (y, t, s), normalised, unused symbols dropped."""
    rng = np.random.default_rng(seed)
    Y, T, S = shape
    y = rng.integers(Y, size=n)
    t = np.where(rng.random(n) < 0.8, (y * T) // Y, rng.integers(T, size=n))
    s = np.where(rng.random(n) < 0.6, (t + y) % S, rng.integers(S, size=n))
    p = np.zeros(shape)
    np.add.at(p, (y, t, s), 1.0)
    used = [p.sum(axis=tuple(j for j in range(3) if j != i)) > 0 for i in range(3)]
    p = p[np.ix_(*used)]
    return p / p.sum()


def dense(shape, seed, skew=0.0):
    rng = np.random.default_rng(seed)
    p = rng.random(shape) * 10.0 ** (-skew * rng.random(shape))
    return p / p.sum()


JOINTS = {
    "hist-10x5x5": histogram((10, 5, 5), 0),
    "hist-10x5x5-b": histogram((10, 5, 5), 1),
    "hist-4x3x6": histogram((4, 3, 6), 2, n=200),
    "dense-3x2x2": dense((3, 2, 2), 3),
    "dense-6x4x3": dense((6, 4, 3), 4),
    "skewed-5x4x4": dense((5, 4, 4), 5, skew=8.0),  # masses over 8 orders: the weighted path
    "one-label": dense((1, 3, 4), 6),
    "one-source-symbol": dense((4, 5, 1), 7),
}


def marginals(p):
    return p.sum(axis=2), p.sum(axis=1)


@pytest.mark.parametrize("name", sorted(JOINTS))
def test_small_route_matches_the_general_route(name):
    p_yt, p_ys = marginals(JOINTS[name])
    assert small_route(p_yt, p_ys)
    path = first_path(p_yt, p_ys)
    q, f, d, info = solve_small(p_yt, p_ys, TOL, path)
    assert info["converged"] and info["newton"] == "small"
    assert 0 <= f - d <= TOL
    # Q exactly in Δ_P, and f its certified objective.
    np.testing.assert_allclose(q.sum(axis=2), p_yt, rtol=0, atol=1e-15)
    np.testing.assert_allclose(q.sum(axis=1), p_ys, rtol=0, atol=1e-15)
    assert q.min() >= 0 and np.all(q[~((p_yt > 0)[:, :, None] & (p_ys > 0)[:, None, :])] == 0)
    assert objective(q) <= f <= objective(q) + 1e-12
    # The general route (independent code: Schur/sparse/pair-space systems on the grid).
    q2, f2, d2, info2 = _solve_broja(_Problem(p_yt, p_ys), TOL, 100)
    assert info2["converged"]
    assert abs(f - f2) <= (f - d) + (f2 - d2) + 1e-12
    assert d <= f2 + 1e-12 and d2 <= f + 1e-12


def test_small_route_is_taken_for_bootstrap_sized_joints_and_not_for_large_ones():
    assert small_route(*marginals(histogram((10, 5, 5), 0)))
    assert not small_route(*marginals(dense((10, 32, 32), 0)))
    assert not small_route(*marginals(dense((4, 20, 20), 0)))  # 400 pairs: the scalar routes win
    info = decompose(histogram((10, 5, 5), 0)).solver
    assert info["newton"] == "small" and info["converged"]


@pytest.mark.parametrize("name", ["hist-10x5x5", "dense-6x4x3", "skewed-5x4x4"])
def test_decompose_small_route_agrees_with_general_route(name, monkeypatch):
    assert_decompose_agrees_without(monkeypatch, JOINTS[name], "small", "small_route")


@pytest.mark.parametrize("name", ["hist-10x5x5", "dense-6x4x3"])
def test_small_route_matches_the_cvxpy_reference(name):
    assert_matches_reference(JOINTS[name], "small")


def test_uncertified_small_run_is_handed_back_to_the_full_method(monkeypatch):
    p_yt, p_ys = marginals(JOINTS["hist-10x5x5"])

    def two_steps(a, b, tol, path="plain", max_iter=100):
        out = small_mod.solve_small(a, b, tol, path, max_iter=2)
        two_steps.calls.append(out[3]["converged"])
        return out

    two_steps.calls = []
    assert_handed_back(monkeypatch, p_yt, p_ys, "small", "solve_small", two_steps, TOL)


def _lse_pairs(v: np.ndarray, which: np.ndarray, starts: np.ndarray, n_pairs: int, width: int) -> np.ndarray:
    """log Σ exp of v over each pair's cells, by scipy on a padded (pairs × width) array."""
    from scipy.special import logsumexp

    pad = np.full((n_pairs, width), -np.inf)
    pad[which, np.arange(which.size) - starts[which]] = v
    return logsumexp(pad, axis=1)


def test_step_length_keeps_the_slack_rule_and_steps_near_its_limit():
    """``step_length``'s accepted α keeps −c ≥ 1 % of its value on every pair, with c at α computed
    here by scipy's logsumexp, and is within its backtracking factor 0.9 of the largest α that does
    (bisection here; the feasible α form an interval, c being convex along the step) or at the
    linear bounds when those are smaller."""
    from infodistill.pid.broja.small import step_length

    rng = np.random.default_rng(12)
    ratios = []
    for _ in range(200):
        sizes = rng.integers(1, 6, size=rng.integers(2, 8))
        n, width = sizes.size, int(sizes.max())
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        which = np.repeat(np.arange(n), sizes)
        c = -rng.uniform(0.01, 2.0, n)
        z0 = rng.normal(size=which.size) * 2
        z = z0 - _lse_pairs(z0, which, starts, n, width)[which] + c[which]
        dz = rng.normal(size=which.size) * rng.uniform(0.1, 5.0)
        dc = np.bincount(which, np.exp(z - c[which]) * dz)
        r = rng.uniform(0.01, 1.0, n)
        d_r = rng.uniform(-0.5, 1.0, n) * r
        alpha, c_new, _ = step_length(r, c, z, dz, 1.0, d_r, dc, which, starts, 1e9)
        if alpha == 0.0:
            continue
        c_alpha = _lse_pairs(z + alpha * dz, which, starts, n, width)
        assert np.all(c_alpha <= 0.01 * c + 1e-12)
        assert np.allclose(c_new, c_alpha, atol=1e-12)
        # the bounds step_length starts from: 0.99 of the ratio test on r and of the linearisation
        lin = 0.99 * min(1.0, min((-r / d_r)[d_r < 0], default=np.inf))
        rising = dc > 0
        lin = min(lin, float(np.min(-0.99 * c[rising] / dc[rising])) if rising.any() else np.inf)

        def ok(a, z=z, dz=dz, which=which, starts=starts, n=n, width=width, c=c):
            return np.all(_lse_pairs(z + a * dz, which, starts, n, width) <= 0.01 * c)

        lo, hi = (lin, lin) if ok(lin) else (0.0, lin)
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        assert alpha <= lo * (1 + 1e-9) + 1e-15
        ratios.append(alpha / lo)
    assert len(ratios) > 150 and min(ratios) > 0.5 and np.median(ratios) > 0.9
