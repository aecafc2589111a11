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

Solver (details in docs/solver.md): a feasible primal-dual interior-point method (Mehrotra
predictor-corrector) on the dual, whose constraint multipliers r(t,s) are the primal pair masses,
Q(y,t,s) = r(t,s)·softmax_y(λ(y,t) + μ(y,s)). The Newton system in (λ, μ) has T dense Y×Y diagonal
blocks for λ, which are eliminated; the Schur complement in μ is (S·Y)×(S·Y) (T and S are swapped
so that S ≤ T), assembled densely, from its structure, or sparsely, equilibrated and factorised.
Every iteration the primal point is rounded onto Δ_P exactly (scale down over-full rows and
columns, then add the rank-one deficit; Altschuler, Weed & Rigollet 2017) and the gap evaluated;
near the optimum alternating-minimisation sweeps polish the primal, and degenerate problems (one
source a Blackwell garbling of the other) are certified exactly by a linear program. The method
stops when the certified gap is at most the tolerance.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from .threads import blas_threads

__all__ = ["solve_broja"]


class SolverInfo(dict):
    """Diagnostics of one solve: iterations, converged, gap, and which garbling certified it."""


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


class _Problem:
    """Dual of the BROJA problem for marginals P(y,t), P(y,s) in which every symbol is used."""

    def __init__(self, p_yt: np.ndarray, p_ys: np.ndarray):
        self.p_yt, self.p_ys = p_yt, p_ys
        self.m_yt, self.m_ys = p_yt > 0, p_ys > 0
        self.support = self.m_yt[:, :, None] & self.m_ys[:, None, :]
        self.pairs = self.support.any(axis=0)
        self.n_pairs = int(self.pairs.sum())
        Y = p_yt.shape[0]
        # One μ(y, s) per label is pinned: (λ(y,·)+a_y, μ(y,·)−a_y) leaves every c(t,s) unchanged.
        self.pin = np.argmax(self.m_ys, axis=1) * Y + np.arange(Y)
        self._coupling_pattern = None
        self._cells = None

    def support_cells(self):
        """The support cells (y, t, s) grouped by pair (t, s), the index where each pair's run of
        cells starts, and each cell's pair number; computed once per problem."""
        if self._cells is None:
            t, s, y = np.nonzero(self.support.transpose(1, 2, 0))
            starts = np.flatnonzero(np.r_[True, (t[1:] != t[:-1]) | (s[1:] != s[:-1])])
            which = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, y.size]))
            self._cells = (y, t, s, starts, which)
        return self._cells

    def coupling_pattern(self):
        """Nonzeros of the (T·Y)×(S·Y) block B: (y, z) ∈ support labels of the same pair (t, s).

        Returned as cell indices (into the support cells listed in (t, s, y) order) for the row
        and column of each nonzero, plus the B row/column indices; computed once per problem.
        """
        if self._coupling_pattern is None:
            Y = self.p_yt.shape[0]
            S = self.p_ys.shape[1]
            y, t, s, _, _ = self.support_cells()
            pair = t * S + s
            k = np.bincount(pair, minlength=self.pairs.size)[pair]  # labels in each cell's pair
            first = np.searchsorted(pair, pair)  # index of the pair's first cell
            row = np.repeat(np.arange(pair.size), k)
            within = np.arange(row.size) - np.repeat(np.cumsum(k) - k, k)
            col = first[row] + within
            self._coupling_pattern = (
                (y, t, s),
                row,
                col,
                t[row] * Y + y[row],
                s[col] * Y + y[col],
            )
        return self._coupling_pattern

    #: Below this fill of the (y, t, s) grid, c and π are computed on the support cells only.
    SPARSE_EVAL_DENSITY = 0.3

    def evaluate(self, lam: np.ndarray, mu: np.ndarray):
        """c(t,s) = LSE_y(λ+μ) (−inf off the pairs) and π(y|t,s) = softmax_y(λ+μ)."""
        y, t, s, starts, which = self.support_cells()
        if y.size < self.SPARSE_EVAL_DENSITY * self.support.size:
            z = lam[y, t] + mu[y, s]
            zmax = np.maximum.reduceat(z, starts)
            e = np.exp(z - zmax[which])
            tot = np.add.reduceat(e, starts)
            c = np.full(self.pairs.shape, -np.inf)
            c[t[starts], s[starts]] = zmax + np.log(tot)
            pi = np.zeros(self.support.shape)
            vals = e / tot[which]
            vals[vals < 1e-250] = 0.0
            pi[y, t, s] = vals
            return c, pi
        z = np.where(self.support, lam[:, :, None] + mu[:, None, :], -np.inf)
        zmax = np.where(self.pairs, z.max(axis=0), 0.0)
        e = np.exp(z - zmax)
        tot = np.where(self.pairs, e.sum(axis=0), 1.0)
        c = np.where(self.pairs, zmax + np.log(tot), -np.inf)
        pi = e / tot
        pi[pi < 1e-250] = 0.0  # keep denormals out of the linear algebra
        return c, pi

    def linear(self, lam, mu) -> float:
        return float((self.p_yt * lam).sum() + (self.p_ys * mu).sum())


def _block_diagonal(blocks: np.ndarray):
    """A sparse block-diagonal matrix from dense blocks (n, k, k), built directly as BSR."""
    from scipy import sparse

    n, k, _ = blocks.shape
    return sparse.bsr_matrix((blocks, np.arange(n), np.arange(n + 1)), shape=(n * k, n * k)).tocsr()


class _NewtonSystem:
    """Factorised Newton matrix Σ_pairs [u diag π + W π πᵀ] (in λ(·,t), μ(·,s)) of the IPM.

    λ is eliminated block by block (T blocks of Y×Y), leaving a Schur complement in μ of size S·Y.
    Its coupling part Σ_t B_tᵀ A_t⁻¹ B_t is assembled one of two ways (the same matrix):
    for few labels as one (S·Y)×(T·Y)×(S·Y) matrix product, O(Y³·T·S²) but a single efficient GEMM;
    for many labels from its four structured terms, O(Y²·T·S²) in batched products.
    """

    #: Largest |Y| for which the single-GEMM assembly is used (measured crossover on 2 cores).
    DENSE_MAX_Y = 16
    #: Below this fill of the coupling block, it is assembled as a sparse product (histograms of
    #: clustered representations have few labels per (t, s) pair).
    SPARSE_MAX_DENSITY = 0.05

    @staticmethod
    def _nnz(prob: _Problem) -> int:
        """Nonzeros of the coupling block B: (support labels of the pair)² summed over pairs."""
        k = prob.support.sum(axis=0)
        return int((k * k).sum())

    @staticmethod
    def _coupling_sparse(prob: _Problem, A_inv, pi, q, W) -> np.ndarray:
        """The same matrix as ``_coupling_dense`` (as a sparse (S·Y)×(S·Y) matrix), with B and the
        block-diagonal A⁻¹ kept sparse."""
        from scipy import sparse

        Y, T, S = pi.shape
        (y, t, s), row, col, b_row, b_col = prob.coupling_pattern()
        pi_c, q_c = pi[y, t, s], q[y, t, s]
        vals = W[t[row], s[row]] * pi_c[row] * pi_c[col] + np.where(row == col, q_c[row], 0.0)
        B = sparse.csr_matrix((vals, (b_row, b_col)), shape=(T * Y, S * Y))
        return B.T @ (_block_diagonal(A_inv) @ B)

    def __init__(self, prob: _Problem, pi: np.ndarray, u: np.ndarray, W: np.ndarray):
        Y, T = prob.p_yt.shape
        S = prob.p_ys.shape[1]
        self.prob, self.pi, self.W = prob, pi, W
        q = u[None] * pi
        self.q = q
        idx = np.arange(Y)
        Wpi = W[None] * pi
        A = np.einsum("yts,zts->tyz", Wpi, pi)
        A[:, idx, idx] += q.sum(axis=2).T + (~prob.m_yt).T
        C = np.einsum("yts,zts->syz", Wpi, pi)
        C[:, idx, idx] += q.sum(axis=1).T + (~prob.m_ys).T
        self.A_inv = A_inv = np.linalg.inv(A)  # (T, Y, Y)
        self.shape = (Y, T, S)
        n = S * Y
        keep = np.ones(n)
        keep[prob.pin] = 0.0
        if self._nnz(prob) < self.SPARSE_MAX_DENSITY * (T * Y) * n:
            from scipy import sparse
            from scipy.sparse import linalg as splinalg

            schur = (_block_diagonal(C) - self._coupling_sparse(prob, A_inv, pi, q, W)).tocoo()
            # Pin the gauge rows/columns to the identity and equilibrate, as in the dense branch
            # below, by scaling the stored entries (no sparse products).
            schur.data *= keep[schur.row] * keep[schur.col]
            schur = (schur + sparse.diags(1.0 - keep)).tocoo()
            self.scale = 1.0 / np.sqrt(np.maximum(schur.diagonal(), 1e-300))
            schur.data *= self.scale[schur.row] * self.scale[schur.col]
            self.factor = ("splu", splinalg.splu(schur.tocsc()))
            return
        if Y <= self.DENSE_MAX_Y:
            schur = self._coupling_dense(A_inv, pi, q, W)
        else:
            schur = self._coupling_structured(A_inv, pi, q, W)
        np.negative(schur, out=schur)
        schur[np.arange(S), :, np.arange(S), :] += C
        schur = schur.reshape(n, n)
        schur *= keep[:, None]
        schur *= keep[None, :]
        schur[prob.pin, prob.pin] = 1.0
        # Symmetric diagonal equilibration: late in the iteration the diagonal spans many orders
        # of magnitude, and scaling it to 1 keeps the Cholesky factor accurate.
        self.scale = 1.0 / np.sqrt(np.maximum(np.diag(schur), 1e-300))
        schur *= self.scale[:, None]
        schur *= self.scale[None, :]
        try:
            self.factor = ("chol", linalg.cho_factor(schur, check_finite=False))
        except linalg.LinAlgError:
            self.factor = ("lu", linalg.lu_factor(schur + 1e-14 * np.eye(n), check_finite=False))

    @staticmethod
    def _coupling_dense(A_inv, pi, q, W) -> np.ndarray:
        """Σ_t B_tᵀ A_t⁻¹ B_t as (s, y, e, z), with B_t[y, (s, z)] = q[y,t,s] δ_yz + W π_ts[y] π_ts[z]."""
        Y, T, S = pi.shape
        idx = np.arange(Y)
        B = (W[None] * pi).transpose(1, 0, 2)[:, :, :, None] * pi.transpose(1, 2, 0)[:, None, :, :]
        B[:, idx, :, idx] += q
        B2 = B.reshape(T, Y, S * Y)
        X = np.matmul(A_inv, B2)
        return (B2.reshape(T * Y, S * Y).T @ X.reshape(T * Y, S * Y)).reshape(S, Y, S, Y)

    @staticmethod
    def _coupling_structured(A_inv, pi, q, W) -> np.ndarray:
        """The same matrix as ``_coupling_dense`` from its four structured terms."""
        Y, T, S = pi.shape
        piT = pi.transpose(1, 0, 2)  # (T, Y, S)
        qT = q.transpose(1, 0, 2)
        G = A_inv @ piT  # (T, Y, S): A_t⁻¹ π_ts
        # term1[s,y,e,z] = Σ_t A⁻¹_t[y,z] q[y,t,s] q[z,t,e]
        M1 = A_inv.transpose(1, 2, 0)[:, :, :, None] * qT.transpose(1, 0, 2)[None]  # (y, z, t, e)
        q_yst = np.ascontiguousarray(q.transpose(0, 2, 1))
        t1 = np.matmul(q_yst[:, None], M1).transpose(2, 0, 3, 1)  # (s, y, e, z)
        # term2[s,y,e,z] = Σ_t q[y,t,s] W[t,e] G[t,y,e] π[z,t,e]; term3 is its transpose
        GW = (G * W[:, None, :]).transpose(1, 0, 2)  # (y, t, e)
        M2 = GW[..., None] * pi.transpose(1, 2, 0)[None]  # (y, t, e, z)
        t2 = np.matmul(q_yst, M2.reshape(Y, T, S * Y))
        t2 = t2.reshape(Y, S, S, Y).transpose(1, 0, 2, 3)
        # term4[s,y,e,z] = Σ_t W[t,s] W[t,e] (π_tsᵀ A_t⁻¹ π_te) π[y,t,s] π[z,t,e], in chunks of s
        # so the (s, t, e, z) intermediate stays small.
        P = np.matmul(piT.transpose(0, 2, 1), G)  # (t, s, e)
        N = np.ascontiguousarray((W[:, :, None] * W[:, None, :] * P).transpose(1, 0, 2))  # (s, t, e)
        pi_tez = np.ascontiguousarray(pi.transpose(1, 2, 0))  # (t, e, z)
        pi_syt = np.ascontiguousarray(pi.transpose(2, 0, 1))  # (s, y, t)
        schur = np.empty((S, Y, S, Y))
        step = max(1, int(4e6 // (T * S * Y)))
        for a in range(0, S, step):
            b = min(S, a + step)
            M4 = N[a:b, :, :, None] * pi_tez[None]  # (s, t, e, z)
            schur[a:b] = np.matmul(pi_syt[a:b], M4.reshape(b - a, T, S * Y)).reshape(b - a, Y, S, Y)
        schur += t1
        schur += t2
        schur += t2.transpose(2, 3, 0, 1)
        return schur

    def _B(self, d_mu):  # d_mu (S, Y) -> (T, Y)
        pd = np.einsum("yts,sy->ts", self.pi, d_mu)
        return np.einsum("yts,sy->ty", self.q, d_mu) + np.einsum("ts,yts->ty", self.W * pd, self.pi)

    def _Bt(self, v):  # v (T, Y) -> (S, Y)
        pv = np.einsum("yts,ty->ts", self.pi, v)
        return np.einsum("yts,ty->sy", self.q, v) + np.einsum("ts,yts->sy", self.W * pv, self.pi)

    def matvec(self, d_lam: np.ndarray, d_mu: np.ndarray):
        """The Newton matrix applied to (Δλ, Δμ), straight from its definition Jᵀ G J."""
        prob = self.prob
        dz = np.where(prob.support, d_lam[:, :, None] + d_mu[:, None, :], 0.0)
        gz = self.q * dz + self.pi * (self.W * np.einsum("yts,yts->ts", self.pi, dz))[None]
        out_lam = np.where(prob.m_yt, gz.sum(axis=2), d_lam)
        out_mu = np.where(prob.m_ys, gz.sum(axis=1), d_mu)
        return out_lam, out_mu

    def solve(self, g_lam: np.ndarray, g_mu: np.ndarray, refine: int = 1):
        """Solve the Newton system for right-hand sides given as (Y,T), (Y,S) arrays.

        Late iterations make the Schur complement very ill-conditioned; a step of
        iterative refinement against the exact matrix-vector product keeps the direction accurate.
        """
        d_lam, d_mu = self._solve_once(g_lam, g_mu)
        for _ in range(refine):
            h_lam, h_mu = self.matvec(d_lam, d_mu)
            c_lam, c_mu = self._solve_once(g_lam - h_lam, g_mu - h_mu)
            d_lam, d_mu = d_lam + c_lam, d_mu + c_mu
        return d_lam, d_mu

    def _solve_once(self, g_lam: np.ndarray, g_mu: np.ndarray):
        prob = self.prob
        Ainv_g = np.einsum("tyz,zt->ty", self.A_inv, g_lam)
        rhs = (g_mu.T - self._Bt(Ainv_g)).reshape(-1)
        rhs[prob.pin] = 0.0
        kind, fac = self.factor
        if kind == "splu":
            d_mu = fac.solve(rhs * self.scale)
        else:
            solve = linalg.cho_solve if kind == "chol" else linalg.lu_solve
            d_mu = solve(fac, rhs * self.scale, check_finite=False)
        d_mu = (d_mu * self.scale).reshape(self.shape[2], self.shape[0])
        d_lam = np.einsum("tyz,tz->ty", self.A_inv, g_lam.T - self._B(d_mu))
        return np.where(prob.m_yt, d_lam.T, 0.0), np.where(prob.m_ys, d_mu.T, 0.0)


class _InteriorPoint:
    """State of the primal-dual iteration: dual (λ, μ), pair masses r, and c, π at (λ, μ)."""

    def __init__(self, prob: _Problem):
        self.prob = prob
        p_yt, p_ys = prob.p_yt, prob.p_ys
        # Start from the conditionally independent coupling Q0 = P(y,t) P(y,s) / P(y), which lies
        # in Δ_P with the right support: λ + μ = log Q0 + κ gives softmax_y = Q0(y|t,s) and
        # c(t,s) = log Q0(t,s) + κ, with κ chosen so that every c ≤ −1.
        p_y = p_yt.sum(axis=1)
        log_yt = np.log(np.where(prob.m_yt, p_yt, 1.0))
        log_ys = np.log(np.where(prob.m_ys, p_ys, 1.0))
        self.r = np.einsum("yt,ys->ts", p_yt, p_ys / p_y[:, None])
        kappa = -1.0 - float(np.log(self.r.max()))
        self.lam = np.where(prob.m_yt, log_yt - np.log(p_y)[:, None] + kappa, 0.0)
        self.mu = np.where(prob.m_ys, log_ys, 0.0)
        self.c, self.pi = prob.evaluate(self.lam, self.mu)

    @property
    def slack(self) -> np.ndarray:
        return np.where(self.prob.pairs, -self.c, 1.0)

    def direction(self, system: _NewtonSystem, target: np.ndarray, refine: int = 1):
        """Newton direction towards r·(−c) = target on every pair."""
        prob, pi, r = self.prob, self.pi, self.r
        s = self.slack
        w = np.where(prob.pairs, 1.0 / s, 0.0)
        g_lam = np.where(prob.m_yt, prob.p_yt - np.einsum("ts,yts->yt", target * w, pi), 0.0)
        g_mu = np.where(prob.m_ys, prob.p_ys - np.einsum("ts,yts->ys", target * w, pi), 0.0)
        d_lam, d_mu = system.solve(g_lam, g_mu, refine)
        dc = np.einsum("yts,yts->ts", pi, d_lam[:, :, None] + d_mu[:, None, :])
        d_r = np.where(prob.pairs, (target - r * s + r * dc) * w, 0.0)
        return d_lam, d_mu, dc, d_r

    def max_step(self, d_r: np.ndarray) -> float:
        neg = self.prob.pairs & (d_r < 0)
        return min(1.0, float(np.min(-self.r[neg] / d_r[neg]))) if neg.any() else 1.0

    def feasible_step(self, d_lam, d_mu, d_r, dc):
        """Largest α (backtracking) keeping r > 0 and −c ≥ 1% of its value on every pair.

        c is convex, so its linearisation c + α·Δc bounds it from below: the α at which the
        linearisation reaches the 1% limit is an upper bound and the backtracking starts there.
        """
        pairs = self.prob.pairs
        alpha = 0.99 * self.max_step(d_r)
        rising = pairs & (dc > 0)
        if rising.any():
            alpha = min(alpha, float(np.min(-0.99 * self.c[rising] / dc[rising])))
        while alpha > 1e-12:
            c_new, pi_new = self.prob.evaluate(self.lam + alpha * d_lam, self.mu + alpha * d_mu)
            if np.all(c_new[pairs] <= 0.01 * self.c[pairs]):
                return alpha, c_new, pi_new
            alpha *= 0.9
        return 0.0, self.c, self.pi

    def step(self) -> bool:
        """One Mehrotra predictor-corrector step; False when no progress is possible."""
        prob, r, s = self.prob, self.r, self.slack
        pairs, m = prob.pairs, max(prob.n_pairs, 1)
        gap_mu = float((r * s)[pairs].sum()) / m
        w = np.where(pairs, 1.0 / s, 0.0)
        system = _NewtonSystem(prob, self.pi, r, r * (w - 1.0))
        # Predictor (affine scaling); its step length is measured on the true, nonlinear constraints.
        dl_a, dm_a, dc_a, dr_a = self.direction(system, np.zeros_like(r), refine=0)
        a_aff, c_aff, _ = self.feasible_step(dl_a, dm_a, dr_a, dc_a)
        mu_aff = float(((r + a_aff * dr_a) * np.where(pairs, -c_aff, 0.0))[pairs].sum()) / m
        sigma = min(1.0, (mu_aff / gap_mu) ** 2) if gap_mu > 0 else 0.0
        # Corrector: centring σμ plus the second-order term Δr_aff·Δs_aff (Δs_aff = −Δc_aff).
        target = np.where(pairs, np.maximum(sigma * gap_mu + dr_a * dc_a, 0.1 * sigma * gap_mu), 0.0)
        d_lam, d_mu, dc, d_r = self.direction(system, target)
        alpha, c_new, pi_new = self.feasible_step(d_lam, d_mu, d_r, dc)
        if alpha == 0.0:
            return False
        self.lam, self.mu, self.r = self.lam + alpha * d_lam, self.mu + alpha * d_mu, r + alpha * d_r
        self.c, self.pi = c_new, pi_new
        return True


def garbling_coupling(p_src: np.ndarray, p_dst: np.ndarray) -> np.ndarray | None:
    """Q(y,a,b) = P(y,a) K(b|a) in Δ_P, if the channel y→b is a garbling of y→a; else None.

    Blackwell: Y→B is a garbling of Y→A iff some stochastic matrix K satisfies
    Σ_a P(a|y) K(b|a) = P(b|y) for all y, b — a linear feasibility problem (solved with HiGHS).
    Such a Q makes Y ⊥ B | A, so I_Q(Y;A,B) = I(Y;A) ≤ min over Δ_P: it is optimal, and B has no
    unique information. This is exactly the case where strict complementarity fails and
    interior-point iterations converge slowly, so it is checked directly.
    """
    from scipy import optimize, sparse

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


def scaling_polish(prob: _Problem, lam, mu, r, sweeps: int = 30):
    """Improve a near-optimal primal by alternating minimisation, started from the IPM's state.

    Q = r(t,s) a(y,t) b(y,s) with a = e^λ, b = e^μ is the IPM's primal; each sweep matches the
    (y,t) then the (y,s) marginals (one Sinkhorn step per label) and resets r to the mixture
    Σ_y Q, which cannot increase f [alternating minimisation of Σ_y P(y) KL(Q_y ‖ r)]. Late IPM
    iterates lose primal accuracy to round-off while their dual keeps improving; these sweeps
    recover a primal that matches the dual. Also returns the scaling's own dual bound.
    """
    p_yt, p_ys = prob.p_yt, prob.p_ys
    b = np.where(prob.m_ys, np.exp(mu), 0.0)
    for _ in range(sweeps):
        den = np.einsum("ts,ys->yt", r, b)
        a = np.divide(p_yt, den, out=np.zeros_like(den), where=den > 0)
        den = np.einsum("ts,yt->ys", r, a)
        b = np.divide(p_ys, den, out=np.zeros_like(den), where=den > 0)
        r = r * np.einsum("yt,ys->ts", a, b)
    q = r[None] * a[:, :, None] * b[:, None, :]
    # (log a, log b) shifted by max c is dual feasible: a certified bound of its own.
    with np.errstate(divide="ignore"):
        la, lb = np.where(prob.m_yt, np.log(a), 0.0), np.where(prob.m_ys, np.log(b), 0.0)
        c, _ = prob.evaluate(la, lb)
    bound = prob.linear(la, lb) - float(c[prob.pairs].max())
    return q, bound


def _conditional_entropy(p: np.ndarray) -> float:
    """H(Y | X) in nats for a joint p[y, x]."""
    px = p.sum(axis=0)
    m = p > 0
    return float(-(p[m] * np.log((p / np.where(px > 0, px, 1.0))[m])).sum())


#: The certificate is evaluated once the complementarity gap is within this factor of the tolerance.
CERTIFY_BELOW = 1e4

#: Sweeps of the one long polish tried when the iteration stalls above the tolerance.
LONG_POLISH_SWEEPS = 1000

#: The primal polish runs once the gap is within this factor of the tolerance (it only needs to
#: close the last stretch, where round-off stalls the interior-point primal).
POLISH_BELOW = 30.0

#: Newton systems up to this size are solved with one BLAS thread: on the 2-core machines this
#: project targets, threading overhead made every size measured up to (S·Y) = 1280 slower
#: (10×32×32: 0.06 s with one thread, 0.10–0.23 s with two).
SINGLE_THREAD_MAX_N = 2048


def solve_broja(
    p_yt: np.ndarray,
    p_ys: np.ndarray,
    tol: float = 1e-9,
    max_iter: int = 100,
) -> tuple[np.ndarray, float, float, SolverInfo]:
    """See ``_solve_broja``; runs it with the BLAS thread count chosen for its size."""
    with blas_threads(1 if p_ys.size <= SINGLE_THREAD_MAX_N else None):
        return _solve_broja(p_yt, p_ys, tol, max_iter)


def _solve_broja(
    p_yt: np.ndarray,
    p_ys: np.ndarray,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, float, float, SolverInfo]:
    """Minimise f(Q) = −H_Q(Y|T,S) over Δ_P given the pairwise marginals (all symbols used).

    A feasible primal-dual interior-point method (Mehrotra predictor-corrector) on the dual: the
    dual iterate (λ, μ) stays strictly feasible, the multipliers r(t,s) ≥ 0 of its constraints are
    the pair masses Q(t,s) of the primal point Q(y,t,s) = r(t,s) π(y|t,s). If it stalls above
    ``tol`` (degenerate problems: one source a garbling of the other), the garbling coupling is
    tried, certified against the bound f ≥ −min(H(Y|T), H(Y|S)).

    Returns (q, f_upper, d_lower, info): an exactly feasible q with f(q) = f_upper, and a dual
    bound d_lower ≤ min f, so the optimum lies in [d_lower, f_upper]; tol is in nats.
    """
    prob = _Problem(p_yt, p_ys)
    ipm = _InteriorPoint(prob)
    info = SolverInfo(iterations=0, converged=False, garbling=None)
    best = [None, np.inf]  # exactly feasible q with the lowest f seen, and that f

    def offer(q: np.ndarray) -> bool:
        q = round_to_feasible(q, p_yt, p_ys)
        f = objective(q)
        if f < best[1]:
            best[:] = [q, f]
            return True
        return False

    # I_Q(Y;T,S) ≥ max(I(Y;T), I(Y;S)) on Δ_P, i.e. f ≥ −min(H(Y|T), H(Y|S)): tight exactly when
    # one source is a garbling of the other.
    h_t, h_s = _conditional_entropy(p_yt), _conditional_entropy(p_ys)
    d_low = -min(h_t, h_s)
    gaps: list[float] = []
    tried_garbling = False
    for it in range(max_iter + 1):
        info["iterations"] = it
        # Certifying (rounding + objective) is pointless while the iterate's own complementarity
        # gap Σ r·(−c) is far above the tolerance: step on.
        if float((ipm.r * ipm.slack)[prob.pairs].sum()) > CERTIFY_BELOW * tol and it < max_iter:
            if not ipm.step():
                break
            continue
        offer(ipm.r[None] * ipm.pi)
        # Valid lower bound: (λ, μ) is strictly dual feasible. Near the end the iterates lose
        # accuracy to round-off, so keep the best bounds seen rather than the last ones.
        d_low = max(d_low, prob.linear(ipm.lam, ipm.mu))
        if best[1] - d_low < POLISH_BELOW * max(tol, 1e-9):
            q_pol, bound = scaling_polish(prob, ipm.lam, ipm.mu, ipm.r)
            offer(q_pol)
            d_low = max(d_low, bound)
        info["iterations"] = it
        gaps.append(best[1] - d_low)
        if gaps[-1] <= tol:
            info["converged"] = True
            break
        stalled = gaps[-1] < 1e-4 and len(gaps) > 4 and gaps[-1] >= 0.5 * gaps[-5]
        if stalled and not tried_garbling:
            # Slow progress near the optimum is the signature of a degenerate problem: try the
            # garbling couplings, which are optimal (and exact) when one source is a garbling.
            # A garbling is only possible while the lower bound allows optimum = −H(Y|T) (resp. S),
            # which keeps the linear program off non-degenerate problems.
            tried_garbling = True
            # Also a long polish: at a boundary optimum the short one may not close the gap.
            q_pol, bound = scaling_polish(prob, ipm.lam, ipm.mu, ipm.r, sweeps=LONG_POLISH_SWEEPS)
            offer(q_pol)
            d_low = max(d_low, bound)
            if d_low <= -h_t + 1e-12 and (q := garbling_coupling(p_yt, p_ys)) is not None:
                if offer(q):
                    info["garbling"] = "S is a garbling of T"
            if d_low <= -h_s + 1e-12 and (q := garbling_coupling(p_ys, p_yt)) is not None:
                if offer(q.transpose(0, 2, 1)):
                    info["garbling"] = "T is a garbling of S"
            if best[1] - d_low <= tol:
                info["converged"] = True
                break
        elif stalled:
            break  # the limit of double precision
        if it == max_iter or not ipm.step():
            break
    best_q, best_f = best
    info["gap"] = best_f - d_low
    return best_q, best_f, d_low, info
