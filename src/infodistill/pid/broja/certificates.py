"""What makes a bound a certificate, whatever produced the candidate: the rounding error of the
objective and of long sums, the exact projection of an approximate coupling onto Δ_P, and the
garbling linear program that settles degenerate problems (one source a Blackwell garbling of the
other) exactly, with the bound f ≥ −min(H(Y|T), H(Y|S)) that tells when to try it.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, sparse

EPS = float(np.finfo(np.float64).eps)


def sum_error_factor(n: int) -> float:
    """γ with |fl(Σ x_i) − Σ x_i| ≤ γ·Σ|x_i| for numpy's sum of n float64 terms, generously.

    numpy sums a contiguous array pairwise in blocks of 128 (8 interleaved accumulators, then a
    binary tree), whose error is at most (16 + log2 n)·u·Σ|x_i| to first order (u = eps/2); twice
    that plus a constant leaves room for the per-term rounding (a product and a log: a few ulps of
    each term) and for second-order terms.
    """
    return (2 * np.ceil(np.log2(max(n, 2))) + 40) * EPS


def objective(q: np.ndarray) -> float:
    """f(Q) = Σ Q log Q(y|t,s) = −H_Q(Y | T, S) in nats."""
    return objective_bound(q)[0]


def objective_bound(q: np.ndarray) -> tuple[float, float]:
    """f(Q) and a bound on its rounding error: γ_n·Σ|terms| (``sum_error_factor``) plus eps·ΣQ for
    the rounding of each Q/r inside its log (an absolute error of about eps in the log)."""
    r = q.sum(axis=0, keepdims=True)
    mask = q > 0
    terms = q[mask] * np.log((q / np.where(r > 0, r, 1.0))[mask])
    err = sum_error_factor(terms.size) * float(np.abs(terms).sum()) + 4 * EPS * float(q.sum())
    return float(terms.sum()), err


def round_to_feasible(q: np.ndarray, p_yt: np.ndarray, p_ys: np.ndarray) -> np.ndarray:
    """Project an approximate coupling onto Δ_P exactly (marginals to floating-point precision).

    Rows and columns that carry too much mass are scaled down, then each label's remaining deficit
    is added as the rank-one product of its row and column deficits. The added mass lands only where
    P(y,t) > 0 and P(y,s) > 0, so the support constraint is kept.
    """
    q = np.maximum(q, 0.0)
    rows = q.sum(axis=2)
    q = q * np.minimum(1.0, np.divide(p_yt, rows, out=np.ones_like(rows), where=rows > 0))[:, :, None]
    cols = q.sum(axis=1)
    q = q * np.minimum(1.0, np.divide(p_ys, cols, out=np.ones_like(cols), where=cols > 0))[:, None, :]
    d_t = np.maximum(p_yt - q.sum(axis=2), 0.0)
    d_s = np.maximum(p_ys - q.sum(axis=1), 0.0)
    err = d_t.sum(axis=1)
    scale = np.divide(1.0, err, out=np.zeros_like(err), where=err > 0)
    return q + d_t[:, :, None] * d_s[:, None, :] * scale[:, None, None]


def _conditional_entropy(p: np.ndarray) -> float:
    """H(Y | X) in nats for a joint p[y, x]."""
    px = p.sum(axis=0)
    m = p > 0
    return float(-(p[m] * np.log((p / np.where(px > 0, px, 1.0))[m])).sum())


def garbling_coupling(p_src: np.ndarray, p_dst: np.ndarray) -> np.ndarray | None:
    """Q(y,a,b) = P(y,a) K(b|a) in Δ_P, if the channel y→b is a garbling of y→a; else None.

    Blackwell: Y→B is a garbling of Y→A iff some stochastic matrix K satisfies
    Σ_a P(a|y) K(b|a) = P(b|y) for all y, b — a linear feasibility problem (solved with HiGHS).
    Such a Q makes Y ⊥ B | A, so I_Q(Y;A,B) = I(Y;A) ≤ min over Δ_P: it is optimal, and B has no
    unique information. This is exactly the case where strict complementarity fails and
    interior-point iterations converge slowly, so it is checked directly.
    """
    Y, A = p_src.shape
    B = p_dst.shape[1]
    p_y = p_src.sum(axis=1, keepdims=True)
    cond_src, cond_dst = p_src / p_y, p_dst / p_y
    a_eq = sparse.vstack(
        [sparse.kron(sparse.eye(A), np.ones((1, B))), sparse.kron(sparse.csr_matrix(cond_src), sparse.eye(B))]
    ).tocsr()
    b_eq = np.concatenate([np.ones(A), cond_dst.ravel()])
    res = optimize.linprog(
        np.zeros(A * B),
        A_eq=a_eq,
        b_eq=b_eq,
        bounds=(0, None),
        method="highs",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    if res.status != 0:
        return None
    K = res.x.reshape(A, B).clip(0.0)
    K /= np.maximum(K.sum(axis=1, keepdims=True), 1e-300)
    return p_src[:, :, None] * K[None]
