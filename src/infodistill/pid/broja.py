"""BROJA partial information decomposition with a certified optimality gap.

The BROJA decomposition [Bertschinger et al., Entropy 2014] of p(y, t, s) needs

    min_{Q in Δ_P} I_Q(Y; T, S),   Δ_P = {Q : Q(y,t) = P(y,t), Q(y,s) = P(y,s)}.

Since H(Y) is fixed on Δ_P this is min f(Q) with f(Q) = Σ Q(y,t,s) log Q(y|t,s) = −H_Q(Y|T,S),
a convex problem. Its Lagrange dual (derived in docs/solver.md) is

    max_{λ, μ}  D(λ, μ) = Σ P(y,t) λ(y,t) + Σ P(y,s) μ(y,s)
    s.t.        c(t,s) = log Σ_y exp(λ(y,t) + μ(y,s)) ≤ 0   for every pair (t, s),

where the sum over y runs over labels with P(y,t) > 0 and P(y,s) > 0 (exactly the support a Q in
Δ_P may use). For any primal-feasible Q and dual-feasible (λ, μ), f(Q) − D(λ, μ) ≥ 0 by Gibbs'
inequality; that difference is the certificate reported as ``gap``.

Solver: a log-barrier path-following Newton method on the dual,

    max Φ_ε(λ, μ) = D(λ, μ) + ε Σ_{(t,s)} log(−c(t,s)),

whose maximiser gives the primal point Q(y,t,s) = ε / (−c(t,s)) · softmax_y(λ(y,t) + μ(y,s)).
The Newton system in (λ, μ) has T dense Y×Y diagonal blocks for λ, which are eliminated; the
remaining Schur complement in μ is (S·Y)×(S·Y) (T and S are swapped so that S ≤ T). After each
centring step the primal point is rounded onto Δ_P exactly (scale down over-full rows and columns,
then add the rank-one deficit; Altschuler, Weed & Rigollet 2017) and the gap is evaluated; the
method stops when the certified gap is at most the tolerance.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["solve_broja"]


class SolverInfo(dict):
    """Diagnostics of one solve (iterations, final barrier weight, timings)."""


def _xlogy_sum(x: np.ndarray, y: np.ndarray) -> float:
    mask = x > 0
    return float((x[mask] * np.log(y[mask])).sum())


def objective(q: np.ndarray) -> float:
    """f(Q) = Σ Q log Q(y|t,s) = −H_Q(Y | T, S) in nats."""
    r = q.sum(axis=0, keepdims=True)
    mask = q > 0
    return float((q[mask] * np.log((q / np.where(r > 0, r, 1.0))[mask])).sum())


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


class _Dual:
    """Barrier dual of the BROJA problem for given marginals P(y,t), P(y,s) (all symbols used)."""

    def __init__(self, p_yt: np.ndarray, p_ys: np.ndarray):
        self.p_yt, self.p_ys = p_yt, p_ys
        self.m_yt, self.m_ys = p_yt > 0, p_ys > 0
        self.support = self.m_yt[:, :, None] & self.m_ys[:, None, :]
        self.pairs = self.support.any(axis=0)
        self.n_pairs = int(self.pairs.sum())
        Y, _ = p_yt.shape
        # One μ(y, s) per label is pinned to fix the gauge λ(y,·)+a_y, μ(y,·)−a_y.
        self.pin = np.argmax(self.m_ys, axis=1) * Y + np.arange(Y)

    def evaluate(self, lam: np.ndarray, mu: np.ndarray):
        z = np.where(self.support, lam[:, :, None] + mu[:, None, :], -np.inf)
        zmax = np.where(self.pairs, z.max(axis=0), 0.0)
        e = np.exp(z - zmax)
        tot = e.sum(axis=0)
        c = np.where(self.pairs, zmax + np.log(np.where(self.pairs, tot, 1.0)), -np.inf)
        pi = e / np.where(self.pairs, tot, 1.0)
        return c, pi

    def linear(self, lam, mu) -> float:
        return float((self.p_yt * lam).sum() + (self.p_ys * mu).sum())

    def phi(self, lam, mu, eps, c=None):
        if c is None:
            c, _ = self.evaluate(lam, mu)
        cp = c[self.pairs]
        if np.any(cp >= 0):
            return -np.inf
        return self.linear(lam, mu) + eps * float(np.log(-cp).sum())

    def newton_direction(self, lam, mu, eps, c, pi):
        Y, T = self.p_yt.shape
        S = self.p_ys.shape[1]
        w = np.where(self.pairs, 1.0 / np.where(self.pairs, -c, 1.0), 0.0)
        u = eps * w
        q = u[None] * pi  # primal estimate
        g_lam = np.where(self.m_yt, self.p_yt - q.sum(axis=2), 0.0)
        g_mu = np.where(self.m_ys, self.p_ys - q.sum(axis=1), 0.0)
        W = eps * w * w - u  # weight of the π π^T term of each pair's Y×Y block
        # Blocks of −∇²Φ: A_t (λλ), C_s (μμ), B_{t,s} (λμ) = diag(q_ts) + W_ts π_ts π_ts^T.
        idx = np.arange(Y)
        B = np.einsum("ts,yts,zts->tysz", W, pi, pi)
        B[:, idx, :, idx] += q  # diagonal part: q[y, t, s] at (t,y,s,y)
        A = np.einsum("ts,yts,zts->tyz", W, pi, pi)
        A[:, idx, idx] += q.sum(axis=2).T + (~self.m_yt).T
        C = np.einsum("ts,yts,zts->syz", W, pi, pi)
        C[:, idx, idx] += q.sum(axis=1).T + (~self.m_ys).T
        # Eliminate λ: A is block diagonal over t.
        A_inv = np.linalg.inv(A)  # (T, Y, Y)
        B2 = B.reshape(T, Y, S * Y)
        AinvB = A_inv @ B2  # (T, Y, S*Y)
        Ainv_g = np.einsum("tyz,zt->ty", A_inv, g_lam)  # (T, Y)
        schur = -(B2.reshape(T * Y, S * Y).T @ AinvB.reshape(T * Y, S * Y))
        blk = schur.reshape(S, Y, S, Y)
        blk[np.arange(S), :, np.arange(S), :] += C
        rhs = g_mu.T.reshape(-1) - B2.reshape(T * Y, S * Y).T @ Ainv_g.reshape(-1)
        schur[self.pin, :] = 0.0
        schur[:, self.pin] = 0.0
        schur[self.pin, self.pin] = 1.0
        rhs[self.pin] = 0.0
        try:
            d_mu = linalg.cho_solve(linalg.cho_factor(schur, check_finite=False), rhs, check_finite=False)
        except linalg.LinAlgError:
            d_mu = linalg.lstsq(schur, rhs, check_finite=False)[0]
        d_mu_ts = d_mu.reshape(S, Y)
        r_lam = g_lam.T - np.einsum("tysz,sz->ty", B, d_mu_ts)
        d_lam = np.einsum("tyz,tz->ty", A_inv, r_lam)
        d_lam = np.where(self.m_yt, d_lam.T, 0.0)
        d_mu_y = np.where(self.m_ys, d_mu_ts.T, 0.0)
        decrement = float((g_lam * d_lam).sum() + (g_mu * d_mu_y).sum())
        return d_lam, d_mu_y, decrement, q


def solve_broja(
    p_yt: np.ndarray,
    p_ys: np.ndarray,
    tol: float = 1e-9,
    max_newton: int = 200,
) -> tuple[np.ndarray, float, float, SolverInfo]:
    """Minimise f(Q) = −H_Q(Y|T,S) over Δ_P given the pairwise marginals (all symbols used).

    Returns (q, f_upper, d_lower, info): an exactly feasible q with f(q) = f_upper, and a dual
    bound d_lower ≤ min f, so the optimum lies in [d_lower, f_upper]; tol is in nats.
    """
    dual = _Dual(p_yt, p_ys)
    lam = np.where(dual.m_yt, np.log(np.where(dual.m_yt, p_yt, 1.0)) - 1.0, 0.0)
    mu = np.zeros_like(p_ys)
    eps = 1.0 / max(dual.n_pairs, 1)
    info = SolverInfo(newton_steps=0, outer=0)
    best = None
    while True:
        # Centre at the current ε.
        for _ in range(50):
            c, pi = dual.evaluate(lam, mu)
            d_lam, d_mu, dec, q = dual.newton_direction(lam, mu, eps, c, pi)
            info["newton_steps"] += 1
            if dec <= 1e-2 * eps:
                break
            phi0 = dual.phi(lam, mu, eps, c)
            step = 1.0
            slope = dec
            while step > 1e-12:
                new_lam, new_mu = lam + step * d_lam, mu + step * d_mu
                phi1 = dual.phi(new_lam, new_mu, eps)
                if phi1 >= phi0 + 0.25 * step * slope:
                    break
                step *= 0.5
            else:
                break
            lam, mu = new_lam, new_mu
            if info["newton_steps"] >= max_newton:
                break
        info["outer"] += 1
        c, pi = dual.evaluate(lam, mu)
        w = np.where(dual.pairs, 1.0 / np.where(dual.pairs, -c, 1.0), 0.0)
        q = round_to_feasible(eps * w[None] * pi, p_yt, p_ys)
        f_up = objective(q)
        # λ, μ are strictly feasible (c < 0), so D is a valid lower bound.
        d_low = dual.linear(lam, mu)
        if best is None or f_up < best[1]:
            best = (q, f_up)
        if best[1] - d_low <= tol or info["newton_steps"] >= max_newton:
            info["eps"] = eps
            return best[0], best[1], d_low, info
        eps *= 0.1
