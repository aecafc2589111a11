"""The BROJA solver's fast paths against brute-force computations and against each other.

Each fast path (SYRK assembly of the Schur complement, the single-precision factorisation, the
pair-space Woodbury system, the active-set Newton finish) must give the same Newton directions as
the Newton matrix built entry by entry, and the same optimum as the plain interior-point method
within the certified gaps.
"""

import numpy as np
import pytest

from broja_brute import brute_coupling
from infodistill.pid import broja
from infodistill.pid.broja import (
    _Factor,
    _InteriorPoint,
    _NewtonSystem,
    _pair_gram,
    _PairSystem,
    _Problem,
    _spd_inverse,
    _working_set,
    active_set_newton,
    active_set_rounds,
    objective,
    round_to_feasible,
    solve_broja,
)


def random_joint(shape, seed, density=1.0):
    rng = np.random.default_rng(seed)
    p = rng.random(shape) * (rng.random(shape) < density)
    p[:, 0, 0] += 0.01  # every label, and T = 0, S = 0, used
    p[0] += 0.001 * (rng.random(shape[1:]) < 0.5)  # every t and s used
    return p / p.sum()


def random_counts(shape, seed, n):
    rng = np.random.default_rng(seed)
    c = np.zeros(shape)
    np.add.at(c.reshape(-1), rng.integers(0, c.size, size=n), 1.0)
    used = [c.sum(axis=tuple(j for j in range(3) if j != i)) > 0 for i in range(3)]
    c = c[np.ix_(*used)]
    return c / c.sum()


def marginals(p):
    return p.sum(axis=2), p.sum(axis=1)


def newton_state(prob, seed, mixed_sign=True):
    """A random IPM-like state: π = softmax on the support, u > 0 and W = u(1/s − 1) on the pairs."""
    rng = np.random.default_rng(seed)
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    z = np.where(prob.support, rng.normal(size=(Y, T, S)), -np.inf)
    e = np.exp(z - np.where(prob.pairs, z.max(axis=0), 0.0))
    pi = e / np.where(prob.pairs, e.sum(axis=0), 1.0)
    u = np.where(prob.pairs, rng.uniform(0.1, 1.0, (T, S)), 0.0)
    s = rng.uniform(0.2, 3.0, (T, S)) if mixed_sign else rng.uniform(0.05, 0.9, (T, S))
    W = np.where(prob.pairs, u * (1.0 / s - 1.0), 0.0)
    return pi, u, W


def brute_newton_matrix(prob, pi, u, W):
    """H = Σ_pairs Jᵀ (u diag π + W π πᵀ) J, entry by entry, in (λ(y,t), μ(y,s)) coordinates, with
    the identity on rows off the support (the solver leaves those at 0)."""
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    n = Y * (T + S)
    H = np.zeros((n, n))
    for t in range(T):
        for s in range(S):
            ys = np.flatnonzero(prob.support[:, t, s])
            for a in ys:
                for b in ys:
                    g = (u[t, s] * pi[a, t, s] if a == b else 0.0) + W[t, s] * pi[a, t, s] * pi[b, t, s]
                    for i in (a * T + t, Y * T + a * S + s):
                        for j in (b * T + t, Y * T + b * S + s):
                            H[i, j] += g
    off = np.concatenate([~prob.m_yt.reshape(-1), ~prob.m_ys.reshape(-1)])
    H[off, off] = 1.0
    return H


def pinned_index(prob):
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    return Y * T + np.arange(Y) * S + np.argmax(prob.m_ys, axis=1)


def check_solver_against_dense(system, prob, pi, u, W, seed, rtol):
    """system.solve(g) for g = H x (x random, 0 at the pinned μ and off the support) returns x."""
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    H = brute_newton_matrix(prob, pi, u, W)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=Y * (T + S))
    x[np.concatenate([~prob.m_yt.reshape(-1), ~prob.m_ys.reshape(-1)])] = 0.0
    x[pinned_index(prob)] = 0.0
    g = H @ x
    d_lam, d_mu = system.solve(g[: Y * T].reshape(Y, T), g[Y * T :].reshape(Y, S), refine=1)
    got = np.concatenate([d_lam.reshape(-1), d_mu.reshape(-1)])
    np.testing.assert_allclose(got, x, rtol=0, atol=rtol * np.abs(x).max())
    # and the exact product the refinement relies on is H itself
    h_lam, h_mu = system.matvec(x[: Y * T].reshape(Y, T), x[Y * T :].reshape(Y, S))
    np.testing.assert_allclose(np.concatenate([h_lam.reshape(-1), h_mu.reshape(-1)]), g, atol=1e-12)


# ---------------------------------------------------------------- linear algebra, brute force


@pytest.mark.parametrize("shape", [(1, 3, 2), (3, 5, 4), (7, 6, 9)])
def test_syrk_assembly_matches_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    Y, T, S = shape
    pi = rng.random(shape)
    pi /= pi.sum(axis=0)
    q = rng.random(shape)
    W = rng.standard_normal((T, S))
    A = rng.random((T, Y, Y))
    A = A @ A.transpose(0, 2, 1) + np.eye(Y)
    L_inv = np.linalg.inv(np.linalg.cholesky(A))  # A⁻¹ = L⁻ᵀ L⁻¹
    got = _NewtonSystem._coupling_syrk(L_inv, pi, q, W)
    np.testing.assert_allclose(got, brute_coupling(np.linalg.inv(A), pi, q, W), atol=1e-12)


def test_pair_gram_matches_explicit_product():
    rng = np.random.default_rng(3)
    Y, T, S = 4, 5, 6
    n = T + S
    M = rng.normal(size=(Y, n, n))
    Dinv = M + M.transpose(0, 2, 1)
    keep = rng.random((T, S)) < 0.6
    tp, sp = np.nonzero(keep)  # sorted by t, as the solver lists pairs
    pp = rng.random((Y, tp.size))
    U = np.zeros((Y * n, tp.size))  # column p: π_y(p) at rows λ(y, t_p) and μ(y, s_p)
    for p, (t, s) in enumerate(zip(tp, sp, strict=True)):
        for y in range(Y):
            U[y * n + t, p] = pp[y, p]
            U[y * n + T + s, p] = pp[y, p]
    block = np.zeros((Y * n, Y * n))
    for y in range(Y):
        block[y * n : (y + 1) * n, y * n : (y + 1) * n] = Dinv[y]
    np.testing.assert_allclose(_pair_gram(Dinv, pp, tp, sp, T, S), U.T @ block @ U, atol=1e-12)


def test_factor_cholesky_lu_and_single_precision():
    rng = np.random.default_rng(4)
    n = 40
    M = rng.normal(size=(n, n))
    spd = M @ M.T + n * np.eye(n) * np.logspace(-3, 3, n)  # badly scaled diagonal
    indefinite = M + M.T
    b = rng.normal(size=n)
    f = _Factor(spd.copy())
    assert f.kind == "chol"
    np.testing.assert_allclose(spd @ f.solve(b), b, atol=1e-9 * np.abs(b).max())
    f = _Factor(indefinite.copy())  # Cholesky fails, pivoted LU takes over
    assert f.kind == "lu"
    np.testing.assert_allclose(indefinite @ f.solve(b), b, atol=1e-9 * np.abs(b).max())
    f = _Factor(spd.astype(np.float32))
    assert f.scale.dtype == np.float32
    x = f.solve(b)
    assert x.dtype == np.float64
    assert np.linalg.norm(spd @ x - b) <= 1e-4 * np.linalg.norm(b)  # single precision


@pytest.mark.parametrize("n", [5, 130])  # numpy's batched inverse, and potrf + potri
def test_spd_inverse(n):
    rng = np.random.default_rng(n)
    M = rng.normal(size=(3, n, n))
    D = M @ M.transpose(0, 2, 1) + n * np.eye(n)
    got = _spd_inverse(D)
    np.testing.assert_allclose(got @ D, np.broadcast_to(np.eye(n), D.shape), atol=1e-10)
    with pytest.raises(np.linalg.LinAlgError):
        _spd_inverse(np.zeros_like(D))  # singular


# ---------------------------------------------------------------- Newton solves, every path


PROBLEMS = {
    "dense": ((3, 4, 5), 1.0),
    "sparse": ((4, 5, 4), 0.45),
    "labels": ((9, 3, 3), 1.0),
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
@pytest.mark.parametrize("mixed_sign", [True, False])
@pytest.mark.parametrize("path", ["schur", "schur-single", "pair"])
def test_newton_solve_matches_dense_solve(name, mixed_sign, path):
    shape, density = PROBLEMS[name]
    prob = _Problem(*marginals(random_joint(shape, 11, density)))
    pi, u, W = newton_state(prob, 5, mixed_sign)
    if path == "pair":
        system, rtol = _PairSystem(prob, pi, u, W), 1e-9
    else:
        system = _NewtonSystem(prob, pi, u, W, single=path == "schur-single")
        assert system.single == (path == "schur-single")
        rtol = 1e-9 if path == "schur" else 1e-6  # single: refined to a 1e-8 relative residual
    check_solver_against_dense(system, prob, pi, u, W, 6, rtol)


def test_pair_space_is_chosen_for_many_labels_only():
    rng = np.random.default_rng(0)
    many = rng.random((100, 32, 32))
    few = rng.random((10, 32, 32))
    assert _Problem(*marginals(many / many.sum())).pair_space
    assert not _Problem(*marginals(few / few.sum())).pair_space


# ---------------------------------------------------------------- whole solves agree


def assert_same_optimum(a, b):
    """Two certified solves [d, f] of the same problem overlap, and agree within their gaps.

    Both bounds include their own rounding error (solve_broja), so d <= f and the overlap hold
    exactly in floating point, with no slack: on another CPU a rounding-level gap came out
    negative (d1 = -3.6522713597056033 > f1 = -3.652271359705604) before the bounds covered it.
    """
    (_, f1, d1, _), (_, f2, d2, _) = a, b
    assert d1 <= f1 and d2 <= f2
    assert max(d1, d2) <= min(f1, f2)
    assert abs(f1 - f2) <= (f1 - d1) + (f2 - d2)


TOL = 1e-7 * np.log(2)

SOLVES = {
    "dense": lambda: random_joint((40, 8, 8), 1),
    "sparse": lambda: random_joint((40, 8, 7), 2, density=0.5),
    "histogram": lambda: random_counts((30, 8, 8), 3, 5000),
}


@pytest.mark.parametrize("name", sorted(SOLVES))
def test_pair_space_and_schur_complement_give_the_same_optimum(name, monkeypatch):
    p_yt, p_ys = marginals(SOLVES[name]())
    results = {}
    for pair in (True, False):
        monkeypatch.setattr(broja.problem, "_pair_space", lambda prob, pair=pair: pair)
        monkeypatch.setattr(broja.finish, "FINISH_ROUNDS", 0)
        results[pair] = solve_broja(p_yt, p_ys, tol=TOL)
        assert results[pair][3]["converged"]
        assert results[pair][3]["newton"] == ("pair" if pair else "schur")
    assert_same_optimum(results[True], results[False])


@pytest.mark.parametrize("name", sorted(SOLVES))
def test_active_set_finish_agrees_with_the_interior_point_method(name, monkeypatch):
    p_yt, p_ys = marginals(SOLVES[name]())
    with_finish = solve_broja(p_yt, p_ys, tol=TOL)
    monkeypatch.setattr(broja.finish, "FINISH_ROUNDS", 0)
    without = solve_broja(p_yt, p_ys, tol=TOL)
    assert with_finish[3]["converged"] and without[3]["converged"]
    assert_same_optimum(with_finish, without)
    if name == "dense":
        # where it applies, it closes the gap to round-off in fewer interior-point iterations
        assert with_finish[3].get("finished_by") == "active-set Newton"
        assert with_finish[3]["gap"] <= 1e-12
        assert with_finish[3]["iterations"] < without[3]["iterations"]


def test_single_precision_steps_give_the_same_optimum(monkeypatch):
    p = random_joint((8, 64, 64), 7)
    p_yt, p_ys = marginals(p)
    mixed = solve_broja(p_yt, p_ys, tol=TOL)
    assert mixed[3]["single_precision_steps"] > 0
    monkeypatch.setattr(broja.newton, "SINGLE_MIN_N", 10**9)
    double = solve_broja(p_yt, p_ys, tol=TOL)
    assert double[3]["single_precision_steps"] == 0
    assert mixed[3]["converged"] and double[3]["converged"]
    assert_same_optimum(mixed, double)


# ---------------------------------------------------------------- the active-set Newton method


def interior_point_iterate(p_yt, p_ys, complementarity):
    prob = _Problem(p_yt, p_ys)
    ipm = _InteriorPoint(prob)
    while (ipm.r * ipm.slack)[prob.pairs].sum() > complementarity:
        assert ipm.step()
    return prob, ipm


def certified_gap(prob, lam, mu, r):
    """f(round(r·π)) − (D(λ, μ) − max c): the full problem's certificate, recomputed here."""
    c, pi = prob.evaluate(lam, mu)
    q = round_to_feasible(np.maximum(r, 0.0)[None] * pi, prob.p_yt, prob.p_ys)
    return objective(q) - (prob.linear(lam, mu) - c[prob.pairs].max())


def test_active_set_newton_meets_the_restricted_kkt_conditions_with_two_components():
    """Pairs restricted to two diagonal blocks of (t, s): every label's graph of working pairs has two
    connected components, each pinned. The result must satisfy the restricted problem's KKT
    conditions, checked directly: Σ r π reproduces both marginals, c = 0 and r > 0 on the set."""
    rng = np.random.default_rng(8)
    Y, T, S = 3, 4, 4
    block = np.zeros((T, S), bool)
    block[:2, :2] = block[2:, 2:] = True
    p = rng.uniform(0.5, 1.0, (Y, T, S)) * block  # a Q in Δ_P that lives on the blocks
    p /= p.sum()
    p_yt, p_ys = marginals(p)
    prob = _Problem(p_yt, p_ys)
    assert prob.pairs.all()  # the full problem allows every pair
    lam = np.zeros((Y, T))
    mu = np.log(p_ys)
    r = np.where(block, 0.1, 0.0)
    lam, mu, r_new = active_set_newton(prob, lam, mu, r, block, max_steps=30)
    c, pi = prob.evaluate(lam, mu)
    q = r_new[None] * pi
    np.testing.assert_allclose(q.sum(axis=2), p_yt, atol=1e-13)
    np.testing.assert_allclose(q.sum(axis=1), p_ys, atol=1e-13)
    np.testing.assert_allclose(c[block], 0.0, atol=1e-13)
    assert r_new[block].min() > 0 and np.all(r_new[~block] == 0)


def test_active_set_newton_refuses_a_set_that_cannot_carry_the_marginals():
    p_yt, p_ys = marginals(random_joint((3, 4, 4), 9))
    prob = _Problem(p_yt, p_ys)
    ipm = _InteriorPoint(prob)
    active = np.zeros((4, 4), bool)
    active[0, :] = True  # rows t = 1, 2, 3 have no pair
    assert active_set_newton(prob, ipm.lam, ipm.mu, ipm.r, active) is None


def test_working_set_covers_every_support_row():
    p_yt, p_ys = marginals(random_joint((5, 6, 7), 10, density=0.5))
    prob = _Problem(p_yt, p_ys)
    ipm = _InteriorPoint(prob)  # at the start r < s everywhere: r > s alone marks nothing
    active = _working_set(prob, ipm.r, ipm.slack)
    assert (prob.support & active[None]).any(axis=2)[prob.m_yt].all()
    assert (prob.support & active[None]).any(axis=1)[prob.m_ys].all()


#: Few labels: only part of the pairs is active at the optimum.
ROUNDS = {
    "dense": lambda: random_joint((5, 10, 10), 4),
    "sparse": lambda: random_joint((6, 10, 9), 5, density=0.5),
    "histogram": lambda: random_counts((5, 10, 10), 6, 3000),
}


@pytest.mark.parametrize("name", sorted(ROUNDS))
@pytest.mark.parametrize("change", ["grow", "shrink"])
def test_active_set_rounds_repair_a_wrong_working_set(name, change):
    """Start the rounds from a working set with truly active pairs removed (the set must grow: their
    constraints come out violated) or with inactive pairs added (it must shrink: their masses come
    out negative). The rounds must reach the optimum of the full problem, certified to round-off."""
    p_yt, p_ys = marginals(ROUNDS[name]())
    reference = solve_broja(p_yt, p_ys, tol=1e-10)
    # Close enough that a set misses only marginal pairs. (On the weighted central path light pairs
    # hold less of Σ r·s, so 1e-7 came earlier in the iteration than on the unweighted one.)
    prob, ipm = interior_point_iterate(p_yt, p_ys, 1e-8)
    right = _working_set(prob, ipm.r, ipm.slack)
    ratio = np.where(prob.pairs, ipm.r / ipm.slack, 0.0)
    if change == "grow":
        # leave out the lightest active pairs (the ones an iterate misclassifies), keeping every
        # support row covered
        wrong = right.copy()
        for flat in np.argsort(np.where(right, ratio, np.inf), axis=None)[:3]:
            trial = wrong.copy()
            trial.flat[flat] = False
            covered_t = (prob.support & trial[None]).any(axis=2)[prob.m_yt].all()
            covered_s = (prob.support & trial[None]).any(axis=1)[prob.m_ys].all()
            if covered_t and covered_s:
                wrong = trial
    else:
        # take in the inactive pairs closest to the boundary
        wrong = right.copy()
        wrong.flat[np.argsort(np.where(prob.pairs & ~right, -ratio, np.inf), axis=None)[:3]] = True
    assert (wrong != right).any()
    gaps, sets = [], []
    for out in active_set_rounds(prob, ipm.lam, ipm.mu, ipm.r, wrong, rounds=8, steps=8):
        lam, mu, r, c, pi, active = out
        gaps.append(certified_gap(prob, lam, mu, r))
        sets.append(active)
        if gaps[-1] <= 1e-11:
            break
    assert gaps[-1] <= 1e-11, gaps
    assert len(gaps) > 1  # the first set was wrong: it took a repair
    if change == "grow":
        assert (sets[-1] & ~wrong).any()  # pairs joined
    else:
        assert (wrong & ~sets[-1]).any()  # pairs left
    _, f_ref, d_ref, _ = reference
    bound = prob.linear(lam, mu) - c[prob.pairs].max()
    assert d_ref - 1e-12 <= objective(round_to_feasible(np.maximum(r, 0)[None] * pi, p_yt, p_ys))
    assert bound <= f_ref + 1e-12 and abs(bound - f_ref) <= (f_ref - d_ref) + 1e-11


def test_cholesky_lower_reports_an_indefinite_matrix():
    rng = np.random.default_rng(12)
    M = rng.normal(size=(6, 6))
    low = np.asfortranarray(M + M.T - 10 * np.eye(6))
    assert _Factor.cholesky_lower(low, np.ones(6)) is None
    spd = M @ M.T + np.eye(6)
    f = _Factor.cholesky_lower(np.asfortranarray(spd), np.ones(6))
    b = rng.normal(size=6)
    np.testing.assert_allclose(spd @ f.solve(b), b, atol=1e-10)


def test_failed_accuracy_checks_fall_back_to_the_robust_factorisation(monkeypatch):
    """With every checked solve declared inaccurate, the iteration steps down to the general product
    with pivoted-LU fallback (single → double SYRK → general) and still certifies the same optimum."""
    p_yt, p_ys = marginals(random_joint((8, 64, 64), 13))
    reference = solve_broja(p_yt, p_ys, tol=TOL)
    levels = []
    original = broja.interior_point._newton_system

    def spy(prob, pi, u, W, level=0):
        levels.append(level)
        return original(prob, pi, u, W, level)

    monkeypatch.setattr(broja.interior_point, "_newton_system", spy)
    monkeypatch.setattr(broja._NewtonBase, "SINGLE_MAX_RESIDUAL", 0.0)
    monkeypatch.setattr(broja._NewtonBase, "DOUBLE_MAX_RESIDUAL", 0.0)
    robust = solve_broja(p_yt, p_ys, tol=TOL)
    assert levels[:3] == [0, 1, 2] and set(levels[3:]) == {2}
    assert robust[3]["converged"]
    assert_same_optimum(robust, reference)


# ---------------------------------------------------------------- the Schur complement on the used μ


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("single", [True, False])
def test_schur_on_the_used_mu_only_matches_dense_solve(compress, single, monkeypatch):
    """A histogram with empty (y, t) and (y, s) cells: the SYRK route solved on the used, unpinned
    μ only (R's rows of unused λ dropped) and on all of them give the brute-force solution."""
    from infodistill.pid.broja import newton

    prob = _Problem(*marginals(random_counts((6, 9, 8), 4, 150)))
    rows, cols, _ = prob.schur_index()
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    assert rows.size < T * Y and cols.size < S * Y - Y  # cells to drop on both sides
    monkeypatch.setattr(newton, "COMPRESS_BELOW", 1.0 if compress else 0.0)
    pi, u, W = newton_state(prob, 5, mixed_sign=False)
    system = _NewtonSystem(prob, pi, u, W, single=single)
    assert (system.cols.size < S * Y) == compress and system.single == single
    check_solver_against_dense(system, prob, pi, u, W, 6, 1e-6 if single else 1e-9)


def test_sparse_histogram_in_the_used_mu_schur_and_the_sparse_route_agree(monkeypatch):
    """A sparse histogram goes to the dense Schur complement on its used μ while that is small
    (``COMPRESSED_DENSE_MAX_WORK``), else to the sparse route: the same certified optimum."""
    p_yt, p_ys = marginals(random_counts((10, 60, 50), 8, 200))  # coupling block 1.7 % full
    results = {"cells": solve_broja(p_yt, p_ys, tol=TOL)}  # the cell route (``broja.cells``) first
    assert results["cells"][3]["converged"] and results["cells"][3]["newton"] == "cells"
    monkeypatch.setattr(broja.solve, "cells_route", lambda prob: False)
    for limit, route in ((2e8, "schur"), (0.0, "sparse")):
        monkeypatch.setattr(broja.problem, "COMPRESSED_DENSE_MAX_WORK", limit)
        results[route] = solve_broja(p_yt, p_ys, tol=TOL)
        assert results[route][3]["converged"] and results[route][3]["newton"] == route
    assert_same_optimum(results["schur"], results["sparse"])
    assert_same_optimum(results["cells"], results["schur"])
