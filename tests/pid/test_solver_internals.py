"""The solver's building blocks against brute-force computations."""

import numpy as np
import pytest

from broja_brute import brute_coupling
from infodistill.pid.broja import _NewtonSystem, _Problem, objective, round_to_feasible


@pytest.mark.parametrize("shape", [(1, 3, 2), (3, 5, 4), (7, 6, 9), (20, 8, 6)])
def test_both_schur_assemblies_match_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    Y, T, S = shape
    pi = rng.random(shape)
    pi /= pi.sum(axis=0)
    q = rng.random(shape)
    W = rng.standard_normal((T, S))  # W = r(1/s − 1) can have either sign
    A = rng.random((T, Y, Y))
    A_inv = np.linalg.inv(A @ A.transpose(0, 2, 1) + np.eye(Y))
    ref = brute_coupling(A_inv, pi, q, W)
    np.testing.assert_allclose(_NewtonSystem._coupling_dense(A_inv, pi, q, W), ref, atol=1e-12)
    np.testing.assert_allclose(_NewtonSystem._coupling_structured(A_inv, pi, q, W), ref, atol=1e-12)


def test_rounding_lands_exactly_in_the_marginal_polytope():
    rng = np.random.default_rng(0)
    p = rng.random((4, 5, 6)) * (rng.random((4, 5, 6)) > 0.4)
    p /= p.sum()
    p_yt, p_ys = p.sum(axis=2), p.sum(axis=1)
    support = (p_yt[:, :, None] > 0) & (p_ys[:, None, :] > 0)
    approx = np.where(support, p + 1e-3 * rng.standard_normal(p.shape), 0.0).clip(0)
    q = round_to_feasible(approx, p_yt, p_ys)
    assert q.min() >= 0
    assert np.all(q[~support] == 0)
    np.testing.assert_allclose(q.sum(axis=2), p_yt, atol=1e-15)
    np.testing.assert_allclose(q.sum(axis=1), p_ys, atol=1e-15)


def test_objective_is_minus_conditional_entropy():
    rng = np.random.default_rng(1)
    q = rng.random((3, 4, 2))
    q /= q.sum()
    cells = [(y, t, s) for y in range(3) for t in range(4) for s in range(2)]
    h_y_given_ts = -sum(q[c] * np.log(q[c] / q[:, c[1], c[2]].sum()) for c in cells)
    assert objective(q) == pytest.approx(-h_y_given_ts, abs=1e-14)


def test_sparse_schur_assembly_matches_brute_force():
    rng = np.random.default_rng(5)
    Y, T, S = 4, 6, 5
    p = rng.random((Y, T, S)) * (rng.random((Y, T, S)) < 0.35)
    p[:, 0, 0] += 0.1  # every label used
    p /= p.sum()
    prob = _Problem(p.sum(axis=2), p.sum(axis=1))
    pi = rng.random((Y, T, S)) * prob.support  # π and q live on the support only
    pi /= np.where(pi.sum(axis=0) > 0, pi.sum(axis=0), 1.0)
    q = rng.random((Y, T, S)) * prob.support
    W = rng.standard_normal((T, S))
    A = rng.random((T, Y, Y))
    A_inv = np.linalg.inv(A @ A.transpose(0, 2, 1) + np.eye(Y))
    sparse_part = _NewtonSystem._coupling_sparse(prob, A_inv, pi, q, W).toarray().reshape(S, Y, S, Y)
    np.testing.assert_allclose(sparse_part, brute_coupling(A_inv, pi, q, W), atol=1e-12)


def test_degenerate_copy_problem_is_exact():
    """S = T with Y nearly independent of them: strict complementarity fails here (the IPM alone
    crawls); the answer must still be Red = I(Y;T), Uni = Syn = 0 within the certified gap."""
    from infodistill.pid import decompose, mutual_information

    c = np.zeros((2, 3, 3))
    c[0, [0, 1, 2], [0, 1, 2]] = [3334, 3333, 3333]
    c[1, [0, 1, 2], [0, 1, 2]] = [3333, 3334, 3333]
    p = c / c.sum()
    r = decompose(p)
    assert r.gap <= 1e-7
    assert r.redundancy == pytest.approx(mutual_information(p, 0, 1), abs=r.gap + 1e-12)
    assert r.unique_t == r.unique_s == r.synergy == 0.0


def test_garbling_coupling_is_optimal_when_it_exists():
    from infodistill.pid.broja import _conditional_entropy, garbling_coupling

    rng = np.random.default_rng(2)
    p_yt = rng.random((3, 4))
    p_yt /= p_yt.sum()
    K = rng.random((4, 5))
    K /= K.sum(axis=1, keepdims=True)
    p_ys = p_yt @ K  # Y→S is a garbling of Y→T by construction
    q = garbling_coupling(p_yt, p_ys)
    assert q is not None and q.min() >= 0
    np.testing.assert_allclose(q.sum(axis=2), p_yt, atol=1e-9)
    np.testing.assert_allclose(q.sum(axis=1), p_ys, atol=1e-9)
    # Y ⊥ S | T under q, so f(q) = −H(Y|T), the lower bound: q is optimal.
    assert objective(round_to_feasible(q, p_yt, p_ys)) == pytest.approx(-_conditional_entropy(p_yt), abs=1e-8)


def test_garbling_coupling_rejects_a_non_garbling():
    from infodistill.pid.broja import garbling_coupling

    # COPY gate, Y = (T, S): S carries information about Y that T lacks, so it is no garbling.
    p = np.zeros((4, 2, 2))
    for t in (0, 1):
        for s in (0, 1):
            p[2 * t + s, t, s] = 0.25
    assert garbling_coupling(p.sum(axis=2), p.sum(axis=1)) is None


def test_sparse_and_dense_evaluation_agree():
    rng = np.random.default_rng(0)
    p = rng.random((5, 7, 6)) * (rng.random((5, 7, 6)) < 0.2)
    p[:, 0, 0] += 0.05
    p /= p.sum()
    prob = _Problem(p.sum(axis=2), p.sum(axis=1))
    lam, mu = rng.normal(size=(5, 7)), rng.normal(size=(5, 6))
    prob.SPARSE_EVAL_DENSITY = 1.0  # support cells only
    c_sparse, pi_sparse = prob.evaluate(lam, mu)
    prob.SPARSE_EVAL_DENSITY = 0.0  # the dense grid
    c_dense, pi_dense = prob.evaluate(lam, mu)
    np.testing.assert_array_equal(np.isinf(c_sparse), np.isinf(c_dense))
    np.testing.assert_allclose(c_sparse[prob.pairs], c_dense[prob.pairs], rtol=0, atol=1e-14)
    np.testing.assert_allclose(pi_sparse, pi_dense, rtol=0, atol=1e-15)
    # and by hand: c = log Σ_y exp(λ + μ) over the support labels of each pair
    t, s = np.argwhere(prob.pairs)[0]
    ys = np.flatnonzero(prob.support[:, t, s])
    assert c_dense[t, s] == pytest.approx(np.log(np.exp(lam[ys, t] + mu[ys, s]).sum()), abs=1e-14)


#: (y, t, s, count) of a 10×10×10 histogram from a real E1 run (PID of student vs teacher stage3 on
#: 1000 Fashion-MNIST test images) on which the interior-point iterates stalled at a 2e-7-bit gap;
#: the long primal polish closes it.
REAL_HISTOGRAM = [
    (0, 0, 4, 7),
    (0, 0, 6, 1),
    (0, 0, 7, 7),
    (0, 2, 9, 2),
    (0, 3, 0, 1),
    (0, 3, 7, 1),
    (0, 5, 4, 1),
    (0, 5, 6, 60),
    (0, 5, 7, 17),
    (0, 6, 5, 4),
    (0, 6, 6, 1),
    (0, 6, 9, 1),
    (0, 7, 4, 1),
    (0, 8, 7, 2),
    (0, 8, 8, 1),
    (1, 0, 2, 3),
    (1, 0, 4, 6),
    (1, 0, 7, 2),
    (1, 3, 0, 1),
    (1, 7, 2, 93),
    (2, 0, 7, 2),
    (2, 2, 5, 12),
    (2, 2, 9, 24),
    (2, 3, 0, 27),
    (2, 3, 5, 2),
    (2, 3, 7, 3),
    (2, 3, 9, 4),
    (2, 5, 4, 1),
    (2, 5, 5, 2),
    (2, 5, 6, 1),
    (2, 6, 3, 1),
    (2, 6, 5, 30),
    (2, 6, 6, 1),
    (2, 8, 5, 1),
    (3, 0, 0, 1),
    (3, 0, 2, 11),
    (3, 0, 4, 39),
    (3, 0, 7, 9),
    (3, 3, 0, 2),
    (3, 3, 4, 1),
    (3, 5, 6, 3),
    (3, 6, 4, 1),
    (3, 7, 2, 23),
    (3, 7, 4, 1),
    (3, 7, 7, 1),
    (3, 8, 0, 1),
    (4, 0, 4, 17),
    (4, 0, 7, 1),
    (4, 0, 9, 2),
    (4, 2, 0, 1),
    (4, 2, 5, 14),
    (4, 2, 9, 43),
    (4, 3, 0, 10),
    (4, 3, 4, 1),
    (4, 3, 9, 7),
    (4, 6, 3, 1),
    (4, 6, 5, 15),
    (4, 7, 4, 1),
    (4, 8, 5, 1),
    (4, 8, 9, 1),
    (5, 1, 1, 1),
    (5, 1, 8, 46),
    (5, 4, 0, 1),
    (5, 4, 1, 15),
    (5, 4, 3, 1),
    (5, 4, 8, 1),
    (5, 8, 1, 1),
    (5, 8, 3, 1),
    (5, 9, 1, 7),
    (5, 9, 3, 1),
    (5, 9, 8, 12),
    (6, 0, 4, 5),
    (6, 0, 7, 3),
    (6, 2, 5, 5),
    (6, 2, 9, 18),
    (6, 3, 0, 25),
    (6, 3, 5, 1),
    (6, 3, 7, 2),
    (6, 3, 8, 1),
    (6, 3, 9, 2),
    (6, 5, 4, 3),
    (6, 5, 6, 11),
    (6, 5, 7, 5),
    (6, 5, 9, 1),
    (6, 6, 5, 8),
    (6, 7, 2, 1),
    (6, 8, 0, 2),
    (6, 8, 3, 1),
    (6, 8, 5, 2),
    (6, 8, 9, 1),
    (7, 1, 1, 16),
    (7, 1, 8, 57),
    (7, 4, 3, 1),
    (7, 9, 1, 17),
    (7, 9, 8, 4),
    (8, 0, 4, 4),
    (8, 0, 7, 1),
    (8, 1, 1, 1),
    (8, 1, 8, 1),
    (8, 3, 0, 2),
    (8, 3, 9, 2),
    (8, 4, 1, 4),
    (8, 4, 3, 16),
    (8, 4, 8, 1),
    (8, 6, 3, 2),
    (8, 6, 5, 2),
    (8, 8, 0, 9),
    (8, 8, 1, 2),
    (8, 8, 3, 17),
    (8, 8, 4, 1),
    (8, 8, 5, 6),
    (8, 8, 7, 2),
    (8, 8, 9, 4),
    (8, 9, 1, 10),
    (8, 9, 3, 6),
    (8, 9, 8, 2),
    (9, 1, 1, 2),
    (9, 4, 1, 15),
    (9, 4, 3, 49),
    (9, 8, 3, 6),
    (9, 8, 9, 2),
    (9, 9, 1, 20),
    (9, 9, 8, 1),
]


def test_real_representation_histogram_is_certified():
    import warnings

    from infodistill.pid import decompose

    c = np.zeros((10, 10, 10))
    for y, t, s, n in REAL_HISTOGRAM:
        c[y, t, s] = n
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        r = decompose(c, counts=True)
    assert r.gap <= 1e-7
    assert abs(r.redundancy + r.unique_t - r.mi_t) <= r.gap + 1e-12
