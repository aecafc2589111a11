"""The cell route of the BROJA solver (``broja.cells``: the interior-point method on the support
cells with the Schur complement in μ) against independent computations: its Newton solves against a
dense Newton matrix built here from its definition, its optimum against the general route on the
grid and the cvxpy reference, an exactly feasible Q, and a hand-back to the full method when it does
not certify."""

import numpy as np
import pytest
from scipy.linalg import lapack

from fast_routes import assert_decompose_agrees_without, assert_handed_back, assert_matches_reference
from infodistill.pid.broja import _Problem, objective, solve_broja
from infodistill.pid.broja import cells as cells_mod
from infodistill.pid.broja.cells import _Cells, _Schur, cells_route, solve_cells
from infodistill.pid.broja.solve import _solve_broja, first_path

TOL = 1e-9  # nats


def clustered(shape, seed, n=4000, home=0.9):
    """A sparse histogram of n samples: each label has a few home clusters in T and S (as the
    representation histograms and the bench's hist- cases), unused symbols dropped."""
    rng = np.random.default_rng(seed)
    Y, T, S = shape
    y = rng.integers(Y, size=n)
    home_t, home_s = rng.integers(T, size=(Y, 3)), rng.integers(S, size=(Y, 3))
    t = np.where(rng.random(n) < home, home_t[y, rng.integers(3, size=n)], rng.integers(T, size=n))
    s = np.where(rng.random(n) < 0.7, home_s[y, rng.integers(3, size=n)], (t * S) // T)
    s = np.where(rng.random(n) < 0.03, rng.integers(S, size=n), s)
    p = np.zeros(shape)
    np.add.at(p, (y, t, s), 1.0)
    used = [p.sum(axis=tuple(j for j in range(3) if j != i)) > 0 for i in range(3)]
    p = p[np.ix_(*used)]
    return p / p.sum()


def marginals(p):
    p_yt, p_ys = p.sum(axis=2), p.sum(axis=1)
    if p_ys.shape[1] > p_yt.shape[1]:  # as decompose: S ≤ T
        p_yt, p_ys = p_ys, p_yt
    return p_yt, p_ys


JOINTS = {
    "hist-10x60x50": clustered((10, 60, 50), 0),
    "hist-8x40x40": clustered((8, 40, 40), 1, n=2000),
    "hist-12x50x30": clustered((12, 50, 30), 2, n=5000, home=0.97),
    "hist-6x60x50-skewed": None,  # built below: masses over 5 orders (the weighted path)
    # More labels than DENSE_MAX_Y on a sparse support: the general route takes the sparse Schur
    # complement there.
    "hist-30x40x40": clustered((30, 40, 40), 4),
}


def _skewed():
    p = clustered((6, 60, 50), 3, n=3000)
    rng = np.random.default_rng(3)
    p = p * 10.0 ** (-5 * rng.random(p.shape))
    return p / p.sum()


JOINTS["hist-6x60x50-skewed"] = _skewed()


@pytest.mark.parametrize("name", sorted(JOINTS))
def test_cell_route_is_taken_and_matches_the_general_route(name):
    p_yt, p_ys = marginals(JOINTS[name])
    prob = _Problem(p_yt, p_ys)
    assert cells_route(prob)
    path = first_path(p_yt, p_ys)
    q, f, d, info = solve_cells(prob, TOL, path)
    assert info["newton"] == "cells"
    if not info["converged"]:
        pytest.skip("not certified by the cell route alone (handed back in solve_broja)")
    assert 0 <= f - d <= TOL
    # Q exactly in Δ_P, zero off the support, and f its certified objective.
    np.testing.assert_allclose(q.sum(axis=2), p_yt, rtol=0, atol=1e-15)
    np.testing.assert_allclose(q.sum(axis=1), p_ys, rtol=0, atol=1e-15)
    assert q.min() >= 0 and np.all(q[~((p_yt > 0)[:, :, None] & (p_ys > 0)[:, None, :])] == 0)
    assert objective(q) <= f <= objective(q) + 1e-12
    # The general route (independent code: the Schur complement assembled on the Y·T·S grid), with
    # overflow an error: its equilibration floors a cancelled diagonal (``newton.CANCEL_FLOOR``);
    # floored at 1e-300, hist-30x40x40's sparse Schur complement overflowed.
    with np.errstate(over="raise"):
        q2, f2, d2, info2 = _solve_broja(_Problem(p_yt, p_ys), TOL, 100)
    assert info2["converged"] and info2["newton"] != "cells"
    assert abs(f - f2) <= (f - d) + (f2 - d2) + 1e-12
    assert d <= f2 + 1e-12 and d2 <= f + 1e-12


def test_every_cell_route_joint_certifies_through_solve_broja():
    for name, p in JOINTS.items():
        q, f, d, info = solve_broja(*marginals(p), TOL)
        assert info["converged"] and 0 <= f - d <= TOL, name


def dense_newton_matrix(cs: _Cells, pi, q, W):
    """H = Jᵀ diag(q) J + Vᵀ diag(W) V over the unknowns (used λ, free μ), from its definition:
    J maps the unknowns to z = λ(y,t) + μ(y,s) on each cell, row p of V is Σ_{cells of p} π J."""
    n_cells = cs.y.size
    J = np.zeros((n_cells, cs.m))
    J[np.arange(n_cells), cs.cl] = 1.0
    J[np.arange(n_cells), cs.cm] = 1.0
    J = J[:, : cs.n_x]  # the pinned μ are not unknowns
    V = np.zeros((cs.n_pairs, cs.n_x))
    np.add.at(V, cs.which, pi[:, None] * J)
    return J.T @ (q[:, None] * J) + V.T @ (W[:, None] * V)


def newton_state(cs: _Cells, rng):
    """A state whose Newton matrix is positive definite: π a softmax on each pair, r > 0, slack s in
    (0, 1), so W = r/s − r > 0; returns (π, q = r·π, W)."""
    e = np.exp(rng.normal(size=cs.y.size))
    pi = e / np.add.reduceat(e, cs.starts)[cs.which]
    r = rng.uniform(0.1, 1.0, cs.n_pairs)
    W = r / rng.uniform(0.05, 0.9, cs.n_pairs) - r
    return pi, r[cs.which] * pi, W


@pytest.mark.parametrize("name", ["hist-10x60x50", "hist-30x40x40"])
@pytest.mark.parametrize("r_dense", [False, True])
@pytest.mark.parametrize("single", [False, True])
def test_schur_solve_matches_the_dense_newton_matrix(monkeypatch, name, r_dense, single):
    """Both ways of forming R = L⁻¹B (scatter, dense batched product), with the label blocks
    compressed to the labels each t uses (``_Cells.K``: 9 of 10 and 15 of 30 here)."""
    monkeypatch.setattr(cells_mod, "R_DENSE_ADVANTAGE", np.inf if r_dense else 0.0)
    p_yt, p_ys = marginals(JOINTS[name])
    cs = _Cells(_Problem(p_yt, p_ys))
    assert cs.r_dense == r_dense
    assert cs.K == (p_yt > 0).sum(axis=0).max() < p_yt.shape[0]
    rng = np.random.default_rng(7)
    pi, q, W = newton_state(cs, rng)
    H = dense_newton_matrix(cs, pi, q, W)
    system = _Schur(cs, pi, q, W, single)
    g = rng.normal(size=cs.n_x)
    x = system.solve_once(g)
    for _ in range(2 if single else 0):  # float32 factor: refined against the exact product
        x = x + system.solve_once(g - system.matvec(x))
    x_ref = np.linalg.solve(H, g)
    np.testing.assert_allclose(system.matvec(x_ref), H @ x_ref, rtol=1e-10, atol=1e-12)
    assert np.linalg.norm(x - x_ref) <= 1e-7 * np.linalg.norm(x_ref)


def test_cell_route_is_not_taken_for_dense_or_small_joints():
    rng = np.random.default_rng(0)
    p = rng.random((10, 32, 32))
    assert not cells_route(_Problem(*marginals(p / p.sum())))
    p = rng.random((10, 5, 5))
    assert not cells_route(_Problem(*marginals(p / p.sum())))


def test_decompose_cell_route_agrees_with_the_general_route(monkeypatch):
    assert_decompose_agrees_without(monkeypatch, JOINTS["hist-10x60x50"], "cells", "cells_route")


def test_cell_route_matches_the_cvxpy_reference():
    assert_matches_reference(JOINTS["hist-8x40x40"], "cells")


def test_uncertified_cell_run_is_handed_back_to_the_full_method(monkeypatch):
    p_yt, p_ys = marginals(JOINTS["hist-10x60x50"])

    def two_steps(prob, tol, path="plain", max_iter=100):
        out = cells_mod.solve_cells(prob, tol, path, max_iter=2)
        two_steps.calls.append(out[3]["converged"])
        return out

    two_steps.calls = []
    assert_handed_back(monkeypatch, p_yt, p_ys, "cells", "solve_cells", two_steps, TOL)


def test_many_labels_on_few_pairs_take_pair_space_even_on_a_sparse_support(monkeypatch):
    """A sparse 100×20×20 histogram: pair space's modelled work is below the cells' (many labels on
    400 pairs), so neither the cell route nor the sparse Schur complement is taken; the optimum is
    the sparse route's within the two certified gaps."""
    from fast_routes import TERMS
    from infodistill.pid import decompose
    from infodistill.pid.broja import problem as problem_mod
    from infodistill.pid.broja.problem import cells_work, is_sparse, pair_space_work

    p = clustered((100, 20, 20), 5, n=6000)
    prob = _Problem(*marginals(p))
    assert is_sparse(prob) and not cells_route(prob) and prob.pair_space
    assert pair_space_work(prob) < 0.7 * cells_work(prob)
    fast = decompose(p, tol=TOL)
    assert fast.solver["newton"] == "pair" and fast.solver["converged"]
    monkeypatch.setattr(problem_mod, "_pair_space", lambda prob: False)
    slow = decompose(p, tol=TOL)
    assert slow.solver["newton"] == "sparse" and slow.solver["converged"]
    for k in TERMS:
        assert abs(getattr(fast, k) - getattr(slow, k)) <= fast.gap + slow.gap + 1e-12


def test_schur_complement_not_positive_definite_is_factorised_by_pivoted_lu(monkeypatch):
    """Where potrf reports the Schur complement not positive definite (late iterations on joints with
    many labels), a float64 ``_Schur`` factorises it by pivoted LU and its solves still match the
    dense Newton matrix; a float32 one raises, so that the caller redoes the step in float64."""
    p_yt, p_ys = marginals(JOINTS["hist-30x40x40"])
    cs = _Cells(_Problem(p_yt, p_ys))
    rng = np.random.default_rng(8)
    pi, q, W = newton_state(cs, rng)
    real = lapack.get_lapack_funcs

    def failing_potrf(names, arrays):
        funcs = real(names, arrays)
        if names == ("potrf",):
            return (lambda a, **kw: (a, 1),)
        return funcs

    monkeypatch.setattr(lapack, "get_lapack_funcs", failing_potrf)
    with pytest.raises(np.linalg.LinAlgError):
        _Schur(cs, pi, q, W, True)
    system = _Schur(cs, pi, q, W, False)
    assert system.pivoted
    H = dense_newton_matrix(cs, pi, q, W)
    g = rng.normal(size=cs.n_x)
    x_ref = np.linalg.solve(H, g)
    assert np.linalg.norm(system.solve_once(g) - x_ref) <= 1e-7 * np.linalg.norm(x_ref)


def test_schur_complement_is_equilibrated_where_it_cancels(monkeypatch):
    """Late on a 30-label histogram with one BLAS thread, C − RᵀR can cancel to rounding in some
    columns (it does on this project's machines, AVX-512 and AVX2). Every Schur complement the run
    factorises must still be equilibrated: its diagonal 1 where the difference is signal, and in a
    cancelled column the difference's rounding (SYRK against the einsum that set the scale, up to
    ~1e-13 of C for the few hundred terms of the sum) over the floor, within ±10 (measured: −0.11
    to 1.0001 under AVX2, −0.006 to 1 under AVX-512); and the run certify on the cells. With the cancelled
    diagonal floored at 1e-300, its diagonal held entries of −1e289 and the pivoted-LU fallback
    factorised noise (this joint stopped uncertified once the fallback's solve changed)."""
    from infodistill.pid.blas_threads import blas_threads
    from infodistill.pid.broja.newton import _Factor

    diagonals = []
    real = _Factor.cholesky_lower.__func__

    def spy(cls, low, scale):
        diagonals.append(np.diagonal(low).copy())
        return real(cls, low, scale)

    monkeypatch.setattr(_Factor, "cholesky_lower", classmethod(spy))
    p_yt, p_ys = marginals(JOINTS["hist-30x40x40"])
    with blas_threads(1):
        q, f, d, info = solve_cells(_Problem(p_yt, p_ys), TOL, first_path(p_yt, p_ys))
    assert info["converged"] and info["newton"] == "cells" and 0 <= f - d <= TOL
    assert diagonals
    for diag in diagonals:
        assert np.all(np.abs(diag) <= 10.0)
        assert np.mean(np.abs(diag - 1.0) <= 1e-5) >= 0.9  # the cancelled columns are few


def test_a_joint_the_cells_certify_needs_no_room_for_the_general_route(monkeypatch):
    """The general route's memory is checked only when it runs: a budget between the cells' arrays
    and the general route's Newton system (both counted by their own functions) lets the cells
    certify, where a budget below both is refused in one line."""
    from infodistill.pid.broja.cells import cells_bytes
    from infodistill.pid.broja.solve import solver_bytes
    from infodistill.pid.limits import MEMORY_ENV

    p_yt, p_ys = marginals(JOINTS["hist-10x60x50"])
    prob = _Problem(p_yt, p_ys)
    small, large = cells_bytes(prob), solver_bytes(prob)
    assert small < large
    monkeypatch.setenv(MEMORY_ENV, str((small + large) / 2 / 2**30))
    q, f, d, info = solve_broja(p_yt, p_ys, TOL)
    assert info["newton"] == "cells" and info["converged"] and 0 <= f - d <= TOL
    monkeypatch.setenv(MEMORY_ENV, str(small / 2 / 2**30))
    with pytest.raises(ValueError, match=MEMORY_ENV):
        solve_broja(p_yt, p_ys, TOL)
