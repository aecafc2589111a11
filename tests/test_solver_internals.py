"""The solver's building blocks against brute-force computations."""

import numpy as np
import pytest

from infodistill.pid.broja import _NewtonSystem, objective, round_to_feasible


def _brute_coupling(A_inv, pi, q, W):
    """Σ_t B_tᵀ A_t⁻¹ B_t by explicit loops over the pair blocks."""
    Y, T, S = pi.shape
    out = np.zeros((S * Y, S * Y))
    for t in range(T):
        B = np.zeros((Y, S, Y))
        for s in range(S):
            B[:, s, :] = np.diag(q[:, t, s]) + W[t, s] * np.outer(pi[:, t, s], pi[:, t, s])
        B = B.reshape(Y, S * Y)
        out += B.T @ A_inv[t] @ B
    return out.reshape(S, Y, S, Y)


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
    ref = _brute_coupling(A_inv, pi, q, W)
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
