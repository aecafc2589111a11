"""``solve_broja_batch``: many small BROJA problems of one shape (bootstrap resamples of a
histogram) solved together, each with its own certificate.

For a 10×5×5 joint the interior-point method of ``interior_point`` spends almost all of its
milliseconds in the fixed cost of numpy calls on tiny arrays, not in arithmetic. Here the same
method (feasible primal-dual, Mehrotra predictor-corrector with the slack's curvature in the
corrector, on the plain central path r·s = μ̄) runs on a stack of B problems: every array carries a
leading batch axis, every problem has its own step length, and a problem leaves the iteration as
soon as its own certified gap is within the tolerance. The Newton matrix of each problem is the
Schur complement in μ (``newton._NewtonSystem``'s, assembled densely in one batched product),
solved without refinement (``CORRECTOR_REFINE``).

Nothing of it is trusted more than in ``solve_broja``: a problem counts as solved only when the
exactly feasible primal (``round_to_feasible``, per problem) and the dual bound (λ, μ shifted by
max c) certify a gap within ``tol``, both with the same rounding-error bounds as the scalar code
(``objective_bound``, ``_Problem.lower_bound``; every sum is along a contiguous axis, numpy's pairwise
summation, and the error factor is taken for all Y·T·S cells). The caller solves the problems that
come back unconverged with ``solve_broja``, which has the restarts and polishes.

Symbols a resample does not use stay in the arrays (their rows of the Newton matrix are the
identity and no pair contains them), so every problem of the stack has the same shape.
"""

from __future__ import annotations

import numpy as np

from .certificates import EPS, sum_error_factor

#: Iterations before the problems still running are handed back unconverged.
BATCH_MAX_ITER = 40

#: Refinement steps of the corrector's solve against the exact product (the predictor's has none).
#: None: on 3 × 200 resamples of the E1 histogram, one step changed neither how many converged
#: (591 against 595) nor their iterations (8–9), and it costs a product and a solve per iteration.
CORRECTOR_REFINE = 0

#: Largest change of any λ or μ in one step (nats), as ``interior_point.MAX_DUAL_MOVE``.
BATCH_MAX_MOVE = 20.0


def _entropy_rows(x: np.ndarray) -> np.ndarray:
    """−Σ x log x along the last axis of a (B, n) array (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)
    return -t.sum(axis=1)


def _evaluate(support: np.ndarray, pairs: np.ndarray, lam: np.ndarray, mu: np.ndarray):
    """c(t,s) = LSE_y(λ+μ) (−inf off the pairs) and π(y|t,s) = softmax_y(λ+μ) per problem."""
    z = np.where(support, lam[:, :, :, None] + mu[:, :, None, :], -np.inf)
    zmax = np.where(pairs, z.max(axis=1), 0.0)
    e = np.exp(z - zmax[:, None])
    tot = np.where(pairs, e.sum(axis=1), 1.0)
    c = np.where(pairs, zmax + np.log(tot), -np.inf)
    pi = e / tot[:, None]
    pi[pi < 1e-250] = 0.0
    return c, pi


def _index(bt) -> None:
    """The flat gather indices of a batch's free μ (``_Batch.perm``), set on ``bt``: ``flat`` into
    the whole stack's μ (B·Y·S), ``rows`` (b, s_j) into a (B·S, …) array, ``rows_y`` (b, s_j, y_j)
    into a (B·S·Y, …) array, ``c_flat`` the entries C[b, s_i, y_i, y_j] of the (B, S, Y, Y) blocks
    C_s for every two free μ i, j (``c_mask``: 1 where s_i = s_j and both are valid, else 0)."""
    B, Y, T, S = bt.shape
    perm, valid = bt.perm, bt.valid
    b = np.arange(B)[:, None]
    y_i, s_i = perm // S, perm % S
    bt.flat = b * (Y * S) + perm
    bt.rows = b * S + s_i
    bt.rows_y = bt.rows * Y + y_i
    bt.y_i = y_i
    bt.c_flat = (bt.rows * (Y * Y) + y_i * Y)[:, :, None] + y_i[:, None, :]
    same = (s_i[:, :, None] == s_i[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    bt.c_mask = same.astype(float)


def _spd_inverse(A: np.ndarray) -> np.ndarray:
    """The inverses of a stack of symmetric positive definite matrices (N, n, n), by Cholesky and a
    forward substitution vectorised over the stack (n steps): a fifth of ``np.linalg.inv``'s time on
    (500, 10, 10) (its LU runs matrix by matrix). Raises LinAlgError where a matrix is not
    numerically positive definite (the caller then takes ``np.linalg.inv``)."""
    L = np.linalg.cholesky(A)
    n = A.shape[-1]
    d = 1.0 / np.diagonal(L, axis1=-2, axis2=-1)
    Li = np.zeros_like(L)
    for i in range(n):
        # row i of L⁻¹: (e_i − L[i, :i] L⁻¹[:i, :]) / L[i, i]
        row = -np.matmul(L[..., i : i + 1, :i], Li[..., :i, :])[..., 0, :]
        row[..., i] += 1.0
        Li[..., i, :] = row * d[..., i, None]
    return np.matmul(np.swapaxes(Li, -1, -2), Li)


class _Batch:
    """B problems p_yt (B, Y, T), p_ys (B, Y, S) with the same P(y) per problem."""

    def __init__(self, p_yt: np.ndarray, p_ys: np.ndarray):
        self.p_yt, self.p_ys = p_yt, p_ys
        B, Y, T = p_yt.shape
        S = p_ys.shape[2]
        self.shape = (B, Y, T, S)
        self.m_yt, self.m_ys = p_yt > 0, p_ys > 0
        self.support = self.m_yt[:, :, :, None] & self.m_ys[:, :, None, :]  # (B, Y, T, S)
        self.pairs = self.support.any(axis=1)  # (B, T, S)
        self.n_pairs = np.maximum(self.pairs.sum(axis=(1, 2)), 1)
        # The gauge: (λ(y,·) + a, μ(y,·) − a) on one connected component of label y's bipartite
        # graph (rows t and s joined by its support cells) changes no z on the support, so one μ
        # per component is pinned (its lowest s); ``_Problem`` pins one per label, which leaves the
        # Newton matrix singular where a label's graph falls apart. Components by transitive
        # closure of the (T+S)×(T+S) adjacency (log2(T+S) squarings).
        n = T + S
        adj = np.zeros((B, Y, n, n))
        adj[:, :, :T, T:] = self.support
        adj[:, :, T:, :T] = self.support.transpose(0, 1, 3, 2)
        adj[:, :, np.arange(n), np.arange(n)] = 1.0
        for _ in range(int(np.ceil(np.log2(max(n, 2))))):
            adj = np.minimum(np.matmul(adj, adj), 1.0)
        reach = adj[:, :, T:, T:] > 0  # (B, Y, S, S): μ nodes in one component
        lower = np.tril(np.ones((S, S), bool), -1)  # s' < s
        has_lower = (reach & lower & self.m_ys[:, :, None, :]).any(axis=3)
        self.free_mu = self.m_ys & has_lower
        # The free μ of each problem first, (z, s)-flat: the Schur complement is solved on the
        # first ``k`` of them (k the most any problem has), padded with identity rows.
        keep = self.free_mu.reshape(B, Y * S)
        k = max(int(keep.sum(axis=1).max()), 1)
        self.perm = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        self.valid = np.take_along_axis(keep, self.perm, axis=1)
        _index(self)

    def evaluate(self, lam: np.ndarray, mu: np.ndarray):
        """c(t,s) (−inf off the pairs) and π(y|t,s) for a stack of dual points."""
        return _evaluate(self.support, self.pairs, lam, mu)

    def lower_bound(self, lam, mu, c) -> np.ndarray:
        """``_Problem.lower_bound`` per problem: D(λ, μ) − max c less its rounding-error bound."""
        B, Y, T, S = self.shape
        ab = np.concatenate([(self.p_yt * lam).reshape(B, -1), (self.p_ys * mu).reshape(B, -1)], axis=1)
        c_max = np.where(self.pairs, c, -np.inf).reshape(B, -1).max(axis=1)
        err = sum_error_factor(ab.shape[1]) * (np.abs(ab).sum(axis=1) + np.abs(c_max))
        z_big = np.where(self.m_yt, np.abs(lam), 0.0).reshape(B, -1).max(axis=1)
        z_big = z_big + np.where(self.m_ys, np.abs(mu), 0.0).reshape(B, -1).max(axis=1)
        err += 8 * EPS * (z_big + np.log(Y) + 1.0)
        return ab.sum(axis=1) - c_max - err

    def round_to_feasible(self, q: np.ndarray) -> np.ndarray:
        """``certificates.round_to_feasible`` per problem."""
        p_yt, p_ys = self.p_yt, self.p_ys
        q = np.maximum(q, 0.0)
        rows = q.sum(axis=3)
        q = q * np.minimum(1.0, np.divide(p_yt, rows, out=np.ones_like(rows), where=rows > 0))[..., None]
        cols = q.sum(axis=2)
        q = q * np.minimum(1.0, np.divide(p_ys, cols, out=np.ones_like(cols), where=cols > 0))[:, :, None]
        d_t = np.maximum(p_yt - q.sum(axis=3), 0.0)
        d_s = np.maximum(p_ys - q.sum(axis=2), 0.0)
        err = d_t.sum(axis=2)
        scale = np.divide(1.0, err, out=np.zeros_like(err), where=err > 0)
        return q + d_t[..., None] * d_s[:, :, None, :] * scale[..., None, None]

    def objective_bound(self, q: np.ndarray):
        """``certificates.objective_bound`` per problem: f(Q) and its rounding-error bound."""
        B = q.shape[0]
        r = q.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0) / np.where(r > 0, r, 1.0)), 0.0)
        terms = terms.reshape(B, -1)  # contiguous rows: numpy's pairwise summation per problem
        n = terms.shape[1]
        err = sum_error_factor(n) * np.abs(terms).sum(axis=1) + 4 * EPS * q.reshape(B, -1).sum(axis=1)
        return terms.sum(axis=1), err


class _BatchNewton:
    """The Newton matrices of a stack of problems, Schur complement in μ, dense and batched.

    H = [[A, K], [Kᵀ, C]] in (λ(·,t), μ(·,s)), G_ts = diag(q_ts) + W_ts π_ts π_tsᵀ per pair,
    A_t = Σ_s G_ts, C_s = Σ_t G_ts, K[(t,y), (s,z)] = G_ts[y, z]; rows of unused λ and of pinned or
    unused μ are the identity. λ is eliminated (T blocks Y×Y), leaving C − Kᵀ A⁻¹ K on the free μ
    only (gathered, padded to the most any problem of the batch has): on the histograms of a
    bootstrap many (y, s) cells are empty (an E1 10×5×5 histogram: 19 free μ of 50).
    """

    def __init__(self, bt: _Batch, pi: np.ndarray, r: np.ndarray, W: np.ndarray):
        B, Y, T, S = bt.shape
        self.bt, self.pi, self.W = bt, pi, W
        self.q = r[:, None] * pi
        iy = np.arange(Y)
        # A_t = Σ_s G_ts and C_s = Σ_t G_ts as batched products of the (S, Y) and (T, Y) slices of π.
        pt = pi.transpose(0, 2, 3, 1)  # (B, T, S, Y)
        A = np.matmul((pt * W[..., None]).transpose(0, 1, 3, 2), pt)  # (B, T, Y, Y)
        A[..., iy, iy] += self.q.sum(axis=3).transpose(0, 2, 1) + ~bt.m_yt.transpose(0, 2, 1)
        ps_ = pi.transpose(0, 3, 2, 1)  # (B, S, T, Y)
        C = np.matmul((ps_ * W.transpose(0, 2, 1)[..., None]).transpose(0, 1, 3, 2), ps_)  # (B, S, Y, Y)
        C[..., iy, iy] += self.q.sum(axis=2).transpose(0, 2, 1)
        try:
            self.A_inv = _spd_inverse(A)
        except np.linalg.LinAlgError:
            self.A_inv = np.linalg.inv(A)
        # K's columns of the free μ only (``_Batch.perm``, padded with zero columns): for the free
        # (s_j, z_j), K[(t, y), j] = W_t,s_j π(y|t,s_j) π(z_j|t,s_j) + δ(y, z_j) q(y, t, s_j).
        # Gathered as rows of (B·S, …) arrays (``_index``): π by (b, s) as (T, Y) blocks.
        valid = bt.valid
        k = valid.shape[1]
        pi_sty = np.ascontiguousarray(pi.transpose(0, 3, 2, 1))  # (B, S, T, Y)
        pi_s = pi_sty.reshape(B * S, T, Y)[bt.rows]  # (B, k, T, Y): π(y | t, s_j)
        pz = pi_sty.transpose(0, 1, 3, 2).reshape(B * S * Y, T)[bt.rows_y]  # (B, k, T): π(z_j|t,s_j)
        w_st = W.transpose(0, 2, 1).reshape(B * S, T)[bt.rows]  # (B, k, T)
        r_st = r.transpose(0, 2, 1).reshape(B * S, T)[bt.rows]
        vf = valid.astype(float)[..., None]
        Kt = pi_s * (w_st * pz * vf)[..., None]  # (B, k, T, Y)
        Kt.reshape(B * k, T, Y)[np.arange(B * k), :, bt.y_i.ravel()] += (r_st * pz * vf).reshape(B * k, T)
        Kc = np.ascontiguousarray(Kt.reshape(B, k, T * Y).transpose(0, 2, 1))  # (B, T·Y, k), rows (t, y)
        self.K = Kc
        X = np.matmul(self.A_inv, Kc.reshape(B, T, Y, k)).reshape(B, T * Y, k)
        schur = -np.matmul(Kt.reshape(B, k, T * Y), X)
        schur += C.reshape(-1)[bt.c_flat] * bt.c_mask
        idx = np.arange(k)
        schur[:, idx, idx] += ~valid  # padding: identity rows
        d = 1.0 / np.sqrt(np.maximum(np.abs(np.diagonal(schur, axis1=1, axis2=2)), 1e-300))
        self.d = d
        schur *= d[:, :, None]
        schur *= d[:, None, :]
        self.schur = schur

    def _solve_once(self, g_lam: np.ndarray, g_mu: np.ndarray):
        bt = self.bt
        B, Y, T, S = bt.shape
        gl = g_lam.transpose(0, 2, 1)  # (B, T, Y)
        a = np.matmul(self.A_inv, gl[..., None])[..., 0]  # A⁻¹ g_λ
        g_c = np.ascontiguousarray(g_mu).reshape(-1)[bt.flat]
        rhs = (g_c - np.matmul(a.reshape(B, 1, T * Y), self.K)[:, 0]) * bt.valid
        d_c = np.linalg.solve(self.schur, (rhs * self.d)[..., None])[..., 0] * self.d * bt.valid
        kd = np.matmul(self.K, d_c[..., None])[..., 0].reshape(B, T, Y)
        d_lam = np.matmul(self.A_inv, (gl - kd)[..., None])[..., 0]
        d_lam = np.where(bt.m_yt, d_lam.transpose(0, 2, 1), 0.0)
        d_mu = np.zeros(B * Y * S)
        d_mu[bt.flat] = d_c
        return d_lam, d_mu.reshape(B, Y, S)

    def matvec(self, d_lam, d_mu):
        bt = self.bt
        dz = np.where(bt.support, d_lam[:, :, :, None] + d_mu[:, :, None, :], 0.0)
        gz = self.q * dz + self.pi * (self.W * np.einsum("byts,byts->bts", self.pi, dz))[:, None]
        out_lam = np.where(bt.m_yt, gz.sum(axis=3), d_lam)
        out_mu = np.where(bt.free_mu, gz.sum(axis=2), d_mu)
        return out_lam, out_mu

    def solve(self, g_lam, g_mu, refine: int = 1):
        g_lam = np.where(self.bt.m_yt, g_lam, 0.0)
        g_mu = np.where(self.bt.free_mu, g_mu, 0.0)
        d_lam, d_mu = self._solve_once(g_lam, g_mu)
        for _ in range(refine):
            h_lam, h_mu = self.matvec(d_lam, d_mu)
            c_lam, c_mu = self._solve_once(g_lam - h_lam, g_mu - h_mu)
            d_lam, d_mu = d_lam + c_lam, d_mu + c_mu
        return d_lam, d_mu


def _r_steps(bt: _Batch, r, d_r) -> np.ndarray:
    """Per problem, 0.99 of the largest α ≤ 1 keeping r + αΔr > 0 on the pairs."""
    neg = bt.pairs & (d_r < 0)
    ratio = np.where(neg, -r / np.where(neg, d_r, -1.0), np.inf).reshape(r.shape[0], -1).min(axis=1)
    return 0.99 * np.minimum(1.0, ratio)


def _max_steps(bt: _Batch, r, c, d_lam, d_mu, d_r, dc) -> np.ndarray:
    """Per problem, the upper bound on α of ``_InteriorPoint.feasible_step`` before backtracking."""
    B = r.shape[0]
    alpha = _r_steps(bt, r, d_r)
    big = np.maximum(np.abs(d_lam).reshape(B, -1).max(axis=1), np.abs(d_mu).reshape(B, -1).max(axis=1))
    alpha = np.where(big * alpha > BATCH_MAX_MOVE, BATCH_MAX_MOVE / np.maximum(big, 1e-300), alpha)
    rising = bt.pairs & (dc > 0)
    lim = np.where(rising, -0.99 * c / np.where(rising, dc, 1.0), np.inf).reshape(B, -1).min(axis=1)
    return np.minimum(alpha, lim)


def _subset(bt: _Batch, idx: np.ndarray) -> _Batch:
    """The problems ``idx`` of a batch, as a batch of their own (no recomputation)."""
    sub = object.__new__(_Batch)
    for name in ("p_yt", "p_ys", "m_yt", "m_ys", "support", "pairs", "n_pairs", "free_mu", "perm", "valid"):
        setattr(sub, name, getattr(bt, name)[idx])
    sub.shape = (idx.size, *bt.shape[1:])
    # ``_index``'s arrays of the kept problems, their problem offsets moved to the new positions.
    _, Y, _, S = bt.shape
    move = np.arange(idx.size) - idx
    sub.y_i, sub.c_mask = bt.y_i[idx], bt.c_mask[idx]
    sub.flat = bt.flat[idx] + (move * (Y * S))[:, None]
    sub.rows = bt.rows[idx] + (move * S)[:, None]
    sub.rows_y = bt.rows_y[idx] + (move * (S * Y))[:, None]
    sub.c_flat = bt.c_flat[idx] + (move * (S * Y * Y))[:, None, None]
    return sub


def _feasible_step(bt: _Batch, lam, mu, r, c, pi, d_lam, d_mu, d_r, dc):
    """``_InteriorPoint.feasible_step`` per problem: the largest α from ``_max_steps`` down by
    factors of 0.9 that keeps −c ≥ 1 % of its value on every pair. Returns (α, c, π) at the
    accepted steps (α = 0, the old c and π, where none above 1e-12 is)."""
    alpha = _max_steps(bt, r, c, d_lam, d_mu, d_r, dc)
    c_out, pi_out = c.copy(), pi.copy()
    todo = np.ones(alpha.size, bool)
    tries = 0
    while True:
        tries += 1
        todo &= alpha > 1e-12
        if not todo.any():
            break
        i = np.flatnonzero(todo)  # only the problems still backtracking are evaluated
        a = alpha[i, None, None]
        pairs, c_i, dc_i = bt.pairs[i], c[i], dc[i]
        c_new, pi_new = _evaluate(bt.support[i], pairs, lam[i] + a * d_lam[i], mu[i] + a * d_mu[i])
        bad = pairs & ~(c_new <= 0.01 * c_i)
        ok = ~bad.any(axis=(1, 2))
        c_out[i[ok]], pi_out[i[ok]] = c_new[ok], pi_new[ok]
        todo[i[ok]] = False
        # The next α from the failed ones: c is convex along the step, so the α that pass form an
        # interval [0, α*]; per violated pair, the quadratic through c, its slope Δc and the value
        # just measured, c + αΔc + κα², gives an estimate of α*, taken with a margin (and at most
        # 0.9 of the last α, as the scalar code's backtracking; after 8 tries, 0.3 of it).
        with np.errstate(all="ignore"):
            kap = np.maximum((c_new - c_i - a * dc_i) / a**2, 0.0)
            disc = np.sqrt(dc_i**2 - 3.96 * kap * c_i)
            root = np.where(
                kap > 0, (-dc_i + disc) / (2 * kap), np.where(dc_i > 0, -0.99 * c_i / dc_i, np.inf)
            )
        est = 0.95 * np.where(bad & np.isfinite(c_new), root, np.inf).reshape(i.size, -1).min(axis=1)
        shrink = 0.9 if tries <= 8 else 0.3
        alpha[i] = np.where(ok, alpha[i], np.minimum(shrink * alpha[i], est))
    alpha = np.where(alpha > 1e-12, alpha, 0.0)
    return alpha, c_out, pi_out


def _direction(bt: _Batch, system: _BatchNewton, pi, r, s, w, target, refine: int):
    """``_InteriorPoint.direction`` per problem: the Newton direction towards r·(−c) = target."""
    tw = target * w
    g_lam = bt.p_yt - np.einsum("bts,byts->byt", tw, pi)
    g_mu = bt.p_ys - np.einsum("bts,byts->bys", tw, pi)
    d_lam, d_mu = system.solve(g_lam, g_mu, refine)
    dc = np.einsum("byts,byts->bts", pi, d_lam[:, :, :, None] + d_mu[:, :, None, :])
    d_r = np.where(bt.pairs, (target - r * s + r * dc) * w, 0.0)
    return d_lam, d_mu, dc, d_r


#: A problem whose Σ r·(−c) has not halved in ``STALL_SPAN`` iterations, after ``STALL_AFTER``, leaves
#: the batch unconverged (bootstrap resamples of an E1 histogram: 2 in 100 that ``solve_broja``
#: closes with its long polish; the others converge in 7–9 iterations).
STALL_AFTER = 10
STALL_SPAN = 3


#: As ``interior_point.CERTIFY_BELOW``: the certificate is evaluated once Σ r·(−c) ≤ this × tol.
CERTIFY_BELOW = 1e4


def solve_broja_batch(
    p_yt: np.ndarray,
    p_ys: np.ndarray,
    tol: float,
    max_iter: int | None = None,
    start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    stop_at: float | None = None,
):
    """Solve B problems min f(Q) over Δ_P (``solve_broja``'s) at once.

    p_yt (B, Y, T) and p_ys (B, Y, S): the pairwise marginals of each problem (each summing to 1,
    with equal P(y)); tol in nats. Returns (q (B, Y, T, S), f_upper (B), d_lower (B), converged
    (B), iterations (B)): where ``converged``, q is exactly in Δ_P (to floating-point precision),
    f(q) ≤ f_upper, d_lower ≤ min f, both bounds with their rounding errors, and
    f_upper − d_lower ≤ tol. The other problems' entries are whatever was reached (the caller
    solves them again with ``solve_broja``).

    ``start``: the iterate (λ (Y, T), μ (Y, S), r (T, S)) to start every problem from instead of
    its own Q0 (``warm_start``), strictly feasible for every problem whose support lies in its
    support (see there). ``stop_at``: (``warm_start``'s) return the iterate (λ, μ, r) of the
    stack as soon as every Σ r·(−c) is at most this, None if the run ends before.
    """
    max_iter = BATCH_MAX_ITER if max_iter is None else max_iter
    p_yt = np.ascontiguousarray(p_yt, dtype=np.float64)
    p_ys = np.ascontiguousarray(p_ys, dtype=np.float64)
    bt_all = _Batch(p_yt, p_ys)
    B, Y, T, S = bt_all.shape
    q_best = np.zeros((B, Y, T, S))
    f_best = np.full(B, np.inf)
    d_best = np.full(B, -np.inf)
    iters = np.zeros(B, int)
    if start is None:
        # Start: Q0 = P(y,t) P(y,s) / P(y), the dual chosen so that softmax = Q0(y|t,s), every c ≤ −1.
        p_y = p_yt.sum(axis=2)
        inv_py = np.divide(1.0, p_y, out=np.zeros_like(p_y), where=p_y > 0)
        r = np.einsum("byt,bys->bts", p_yt, p_ys * inv_py[:, :, None])
        kappa = -1.0 - np.log(r.reshape(B, -1).max(axis=1))
        with np.errstate(divide="ignore"):
            log_yt = np.log(np.where(bt_all.m_yt, p_yt, 1.0))
            log_py = np.log(np.where(p_y > 0, p_y, 1.0))
        lam = np.where(bt_all.m_yt, log_yt - log_py[:, :, None] + kappa[:, None, None], 0.0)
        mu = np.where(bt_all.m_ys, np.log(np.where(bt_all.m_ys, p_ys, 1.0)), 0.0)
    else:
        # Off a problem's support the start's entries are dropped; on it c ≤ the start's c < 0.
        lam0, mu0, r0 = start
        lam = np.where(bt_all.m_yt, lam0, 0.0)
        mu = np.where(bt_all.m_ys, mu0, 0.0)
        r = np.where(bt_all.pairs, r0, 0.0)
    c, pi = bt_all.evaluate(lam, mu)
    # The always-valid bound f ≥ −min(H(Y|T), H(Y|S)) (as ``_solve_path``).
    h_t = _entropy_rows(p_yt.reshape(B, -1)) - _entropy_rows(p_yt.sum(axis=1))
    h_s = _entropy_rows(p_ys.reshape(B, -1)) - _entropy_rows(p_ys.sum(axis=1))
    d_best[:] = -np.minimum(h_t, h_s) * (1 + sum_error_factor(p_yt[0].size + p_ys[0].size)) - 4 * EPS

    live = np.arange(B)
    bt = bt_all
    compl_log = np.full((max_iter + 1, B), np.inf)
    for it in range(max_iter + 1):
        iters[live] = it
        pairs = bt.pairs
        s = np.where(pairs, -c, 1.0)
        compl = np.where(pairs, r * s, 0.0).reshape(live.size, -1).sum(axis=1)
        check = compl <= CERTIFY_BELOW * tol
        if check.any():
            ci = np.flatnonzero(check)
            sub = _subset(bt, ci)
            q = sub.round_to_feasible(r[ci, None] * pi[ci])
            f, err = sub.objective_bound(q)
            f = f + err
            g = live[ci]
            better = f < f_best[g]
            q_best[g[better]] = q[better]
            f_best[g] = np.minimum(f_best[g], f)
            d_best[g] = np.maximum(d_best[g], sub.lower_bound(lam[ci], mu[ci], c[ci]))
        done = f_best[live] - d_best[live] <= tol
        if stop_at is not None and (compl <= stop_at).all():
            return lam, mu, r
        compl_log[it, live] = compl
        if it >= STALL_AFTER:
            # Σ r·(−c) not halved in the last STALL_SPAN iterations: handed back to ``solve_broja``
            # (its restarts and polishes), rather than backtracking on here.
            done |= compl > 0.5 * compl_log[it - STALL_SPAN, live]
        if it == max_iter or done.all():
            break
        if done.any():
            keep = np.flatnonzero(~done)
            live, bt = live[keep], _subset(bt, keep)
            lam, mu, r, c, pi = lam[keep], mu[keep], r[keep], c[keep], pi[keep]
            s, compl = s[keep], compl[keep]
            pairs = bt.pairs
        m = bt.n_pairs
        gap_mu = compl / m
        w = np.where(pairs, 1.0 / s, 0.0)
        W = np.where(pairs, r * (w - 1.0), 0.0)
        try:
            with np.errstate(all="ignore"):
                system = _BatchNewton(bt, pi, r, W)

                dl_a, dm_a, dc_a, dr_a = _direction(bt, system, pi, r, s, w, np.zeros_like(r), 0)
                a_aff, c_aff, _ = _feasible_step(bt, lam, mu, r, c, pi, dl_a, dm_a, dr_a, dc_a)
                s_aff = np.where(pairs, -c_aff, 0.0)
                # The pair masses moved by their own step (``small.affine_r_step``).
                a_r = np.maximum(a_aff, _r_steps(bt, r, dr_a))
                mu_aff = ((r + a_r[:, None, None] * dr_a) * s_aff).reshape(live.size, -1).sum(axis=1) / m
                ratio = mu_aff / np.where(gap_mu > 0, gap_mu, 1.0)
                sigma = np.where(gap_mu > 0, np.minimum(1.0, ratio**2), 0.0)
                a2 = np.where(a_aff > 0, a_aff, 1.0)[:, None, None]
                kap = np.where(
                    pairs & (a_aff[:, None, None] > 0) & np.isfinite(c_aff),
                    np.maximum((c_aff - c - a2 * dc_a) / a2**2, 0.0),
                    0.0,
                )
                second = dr_a * (dc_a + kap) + r * kap
                sm = (sigma * gap_mu)[:, None, None]
                target = np.where(pairs, np.maximum(sm + second, 0.1 * sm), 0.0)
                d_lam, d_mu, dc, d_r = _direction(bt, system, pi, r, s, w, target, CORRECTOR_REFINE)
        except np.linalg.LinAlgError:
            # A label block or Schur complement singular in working precision (np.linalg raises
            # for the whole stack): the problems still running are handed back to decompose.
            break
        finite = (
            np.isfinite(d_lam).reshape(live.size, -1).all(axis=1)
            & np.isfinite(d_mu).reshape(live.size, -1).all(axis=1)
            & np.isfinite(d_r).reshape(live.size, -1).all(axis=1)
        )
        d_lam[~finite], d_mu[~finite], d_r[~finite], dc[~finite] = 0.0, 0.0, 0.0, 0.0
        alpha, c, pi = _feasible_step(bt, lam, mu, r, c, pi, d_lam, d_mu, d_r, dc)
        a = alpha[:, None, None]
        lam, mu, r = lam + a * d_lam, mu + a * d_mu, r + a * d_r
        stuck = alpha == 0.0
        if stuck.any():  # no step possible: handed back unconverged
            keep = np.flatnonzero(~stuck)
            live, bt = live[keep], _subset(bt, keep)
            lam, mu, r, c, pi = lam[keep], mu[keep], r[keep], c[keep], pi[keep]
            if live.size == 0:
                break
    converged = f_best - d_best <= tol
    if stop_at is not None:
        return None
    return q_best, f_best, d_best, converged, iters


#: ``warm_start`` hands over the reference problem's iterate once its Σ r·(−c) is at most this.
#: Measured on 6 × 100 bootstrap resamples of 10×5×5 histograms of 1 000 samples (the bench's):
#: from 7.7 iterations per resample (cold, from each one's Q0) to 5.9 (handed over at 0.1), 5.5
#: (0.03), 5.6 (0.01), with 0 of 600 left unconverged at 0.03 (1 at 0.1); a later hand-over starts
#: the resamples too close to the reference's own boundary.
WARM_START_COMPL = 0.03

#: ``decompose_batch`` warm-starts batches of at least this many problems (the reference solve
#: costs a few single-problem iterations).
WARM_START_MIN_BATCH = 8


def warm_start(p_yt: np.ndarray, p_ys: np.ndarray, tol: float):
    """A common start for a stack of problems: the iterate (λ, μ, r) of the interior-point method on
    their mean (the pairwise marginals averaged over the stack) once its Σ r·(−c) is at most
    ``WARM_START_COMPL``, or None if that run ends first.

    It is strictly feasible for every problem of the stack: the mean's support cells are the union
    of theirs, so on a problem's pair (t, s) c = LSE_y(λ + μ) runs over a subset of the labels of
    the mean's and is at most the mean's c < 0, and r > 0 on the mean's pairs, which contain the
    problem's. Bootstrap resamples (or label permutations) of one histogram lie close to their mean,
    and the method then needs about two iterations fewer than from each one's own Q0. Certificates
    are unaffected: each problem's bounds come from its own iterates."""
    m_yt = np.ascontiguousarray(p_yt.mean(axis=0))[None]
    m_ys = np.ascontiguousarray(p_ys.mean(axis=0))[None]
    out = solve_broja_batch(m_yt, m_ys, tol, stop_at=WARM_START_COMPL)
    if out is None:
        return None
    lam, mu, r = out
    return lam[0], mu[0], r[0]
