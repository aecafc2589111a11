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
predictor-corrector, with the slack's curvature in the corrector) on the dual, whose constraint
multipliers r(t,s) are the primal pair masses, Q(y,t,s) = r(t,s)·softmax_y(λ(y,t) + μ(y,s)). The
Newton matrix in (λ, μ) is factorised one of three ways, chosen by a work model: for few labels
the Schur complement in μ, (S·Y)×(S·Y) (T and S are swapped so that S ≤ T), assembled as one SYRK
(in float32 while the iteration is well conditioned, refined in float64); for many labels in pair
space by Woodbury (pairs × pairs); for sparse supports as a sparse Schur complement. Every
iteration the primal point is rounded onto Δ_P exactly (scale down over-full rows and columns, then
add the rank-one deficit; Altschuler, Weed & Rigollet 2017) and the gap evaluated; near the optimum
alternating-minimisation sweeps polish the primal, an active-set Newton method (pair space) solves
the optimality conditions restricted to the pairs that carry mass, and degenerate problems (one
source a Blackwell garbling of the other) are certified exactly by a linear program. Every
candidate is certified on the full problem; the method stops when the certified gap is at most the
tolerance.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from .limits import check_bytes, memory_budget
from .threads import blas_threads

__all__ = ["solve_broja"]


class SolverInfo(dict):
    """Diagnostics of one solve: iterations, converged, gap, and which garbling certified it."""


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


class _Problem:
    """Dual of the BROJA problem for marginals P(y,t), P(y,s) in which every symbol is used."""

    def __init__(self, p_yt: np.ndarray, p_ys: np.ndarray):
        self.p_yt, self.p_ys = p_yt, p_ys
        self.m_yt, self.m_ys = p_yt > 0, p_ys > 0
        self.support = self.m_yt[:, :, None] & self.m_ys[:, None, :]
        self.pairs = self.support.any(axis=0)
        self.n_pairs = int(self.pairs.sum())
        self.pair_t, self.pair_s = np.nonzero(self.pairs)  # sorted by t, then s
        Y = p_yt.shape[0]
        # One μ(y, s) per label is pinned: (λ(y,·)+a_y, μ(y,·)−a_y) leaves every c(t,s) unchanged.
        self.pin = np.argmax(self.m_ys, axis=1) * Y + np.arange(Y)
        self._coupling_pattern = None
        self._cells = None
        self._pair_space = None
        #: Never the sparse Schur complement (a restart's route, see ``_solve_broja``).
        self.dense_only = False

    @property
    def pair_space(self) -> bool:
        if self._pair_space is None:
            self._pair_space = _pair_space(self)
        return self._pair_space

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

    def lower_bound(self, lam, mu, c) -> float:
        """The certified dual bound D(λ, μ) − max c, less the rounding error of evaluating it: the
        two sums (γ_n·Σ|P·λ|, ``sum_error_factor``) and max c, a log-sum-exp whose error is a few
        ulps of |max z| + log(terms) (z = λ + μ)."""
        a, b = self.p_yt * lam, self.p_ys * mu
        c_max = float(c[self.pairs].max())
        n = a.size + b.size
        err = sum_error_factor(n) * float(np.abs(a).sum() + np.abs(b).sum() + abs(c_max))
        z_big = float(np.abs(lam[self.m_yt]).max(initial=0.0) + np.abs(mu[self.m_ys]).max(initial=0.0))
        err += 8 * EPS * (z_big + np.log(self.p_yt.shape[0]) + 1.0)
        return float(a.sum() + b.sum()) - c_max - err


def _block_diagonal(blocks: np.ndarray):
    """A sparse block-diagonal matrix from dense blocks (n, k, k), built directly as BSR."""
    from scipy import sparse

    n, k, _ = blocks.shape
    return sparse.bsr_matrix((blocks, np.arange(n), np.arange(n + 1)), shape=(n * k, n * k)).tocsr()


class _Factor:
    """Cholesky (LAPACK potrf/potrs) of a symmetric matrix, or pivoted LU where it is not numerically
    positive definite. The matrix is symmetrically equilibrated first (diagonal scaled to 1): late
    in the iteration its diagonal spans many orders of magnitude. ``scale``: the matrix was already
    equilibrated with it. A float32 matrix is factorised in single precision (half the time);
    solves take and return float64. The matrix is overwritten."""

    def __init__(self, a: np.ndarray, spd: bool = True, scale: np.ndarray | None = None):
        n = a.shape[0]
        potrf, getrf = lapack.get_lapack_funcs(("potrf", "getrf"), (a,))
        if scale is None:
            scale = 1.0 / np.sqrt(np.maximum(np.abs(np.diag(a)), 1e-300))
            a *= scale[:, None]
            a *= scale[None, :]
        self.scale = scale.astype(a.dtype)
        if spd:
            # A C-ordered symmetric matrix is its own Fortran-ordered transpose, so potrf works in
            # place on a.T; it writes one triangle and the diagonal, and a failure is undone from
            # the other triangle.
            diag = np.diag(a).copy()
            c, info = potrf(a.T, lower=1, clean=0, overwrite_a=1)
            if info == 0:
                self.kind, self.fac = "chol", c
                return
            upper = np.triu_indices(n, 1)
            a[upper] = a.T[upper]
            a[np.arange(n), np.arange(n)] = diag + 1e-14
        lu, piv, info = getrf(a.T, overwrite_a=1)
        self.kind, self.fac = "lu", (lu, piv)

    @classmethod
    def cholesky_lower(cls, low: np.ndarray, scale: np.ndarray) -> _Factor | None:
        """Cholesky in place of an equilibrated Fortran-ordered matrix whose lower triangle holds
        it (``scale`` its equilibration); None if it is not positive definite."""
        (potrf,) = lapack.get_lapack_funcs(("potrf",), (low,))
        c, info = potrf(low, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            return None
        self = cls.__new__(cls)
        self.scale, self.kind, self.fac = scale.astype(low.dtype), "chol", c
        return self

    def solve(self, b: np.ndarray) -> np.ndarray:
        b = (b * self.scale).astype(self.scale.dtype)
        if self.kind == "chol":
            (potrs,) = lapack.get_lapack_funcs(("potrs",), (self.fac,))
            x, _ = potrs(self.fac, b, lower=1)
        else:
            (getrs,) = lapack.get_lapack_funcs(("getrs",), (self.fac[0],))
            # getrf factorised the Fortran view aᵀ (= a: every matrix here is symmetric).
            x, _ = getrs(self.fac[0], self.fac[1], b, trans=1)
        return x.astype(np.float64) * self.scale


class _NewtonBase:
    """The IPM Newton matrix H = Σ_pairs Jᵀ [u diag π + W π πᵀ] J in (λ, μ), J mapping (λ, μ) to
    z(y,t,s) = λ(y,t) + μ(y,s): its exact product and iteratively refined solves. Subclasses provide
    ``_solve_once``, an approximate (factorised) solve."""

    def matvec(self, d_lam: np.ndarray, d_mu: np.ndarray):
        """The Newton matrix applied to (Δλ, Δμ), straight from its definition Jᵀ G J."""
        prob = self.prob
        dz = np.where(prob.support, d_lam[:, :, None] + d_mu[:, None, :], 0.0)
        gz = self.q * dz + self.pi * (self.W * np.einsum("yts,yts->ts", self.pi, dz))[None]
        out_lam = np.where(prob.m_yt, gz.sum(axis=2), d_lam)
        out_mu = np.where(prob.m_ys, gz.sum(axis=1), d_mu)
        return out_lam, out_mu

    #: A solve with a single-precision factorisation takes one refinement step more than a double
    #: one; a checked solve (``refine > 0``, the corrector) then goes on, up to
    #: ``SINGLE_MAX_REFINE`` steps, until its relative residual is below ``SINGLE_MAX_RESIDUAL``.
    #: Double-precision SYRK factorisations are checked too, against ``DOUBLE_MAX_RESIDUAL``, without
    #: extra steps: late, their cancellation C − RᵀR can leave a Cholesky factor that succeeds but
    #: is useless. If a check fails, ``accurate`` turns False and the caller redoes the step with the
    #: next, more robust factorisation. (The accuracy of a direction only affects the speed of the
    #: method: every bound reported is computed from the iterate itself.)
    SINGLE_MAX_RESIDUAL = 1e-8
    SINGLE_MAX_REFINE = 3
    DOUBLE_MAX_RESIDUAL = 1e-6

    single = False
    checked = False
    accurate = True

    def solve(self, g_lam: np.ndarray, g_mu: np.ndarray, refine: int = 1):
        """Solve the Newton system for right-hand sides given as (Y,T), (Y,S) arrays.

        Late iterations make the system very ill-conditioned; steps of iterative refinement against
        the exact matrix-vector product keep the direction accurate. A single-precision
        factorisation (error ~1e-7 per solve early on) is refined further, see above.
        """
        d_lam, d_mu = self._solve_once(g_lam, g_mu)
        steps = refine + self.single
        check = self.checked and refine > 0
        most = self.SINGLE_MAX_REFINE if self.single else steps
        limit = self.SINGLE_MAX_RESIDUAL if self.single else self.DOUBLE_MAX_RESIDUAL
        limit *= np.sqrt((g_lam**2).sum() + (g_mu**2).sum()) if check else 0.0
        k = 0
        while True:
            if k >= steps and not check:
                return d_lam, d_mu
            h_lam, h_mu = self.matvec(d_lam, d_mu)
            r_lam, r_mu = g_lam - h_lam, g_mu - h_mu
            if k >= steps and np.sqrt((r_lam**2).sum() + (r_mu**2).sum()) <= limit:
                return d_lam, d_mu
            if k >= most:
                self.accurate = False
                return d_lam, d_mu
            c_lam, c_mu = self._solve_once(r_lam, r_mu)
            d_lam, d_mu = d_lam + c_lam, d_mu + c_mu
            k += 1


class _NewtonSystem(_NewtonBase):
    """Factorised Newton matrix Σ_pairs [u diag π + W π πᵀ] (in λ(·,t), μ(·,s)) of the IPM.

    λ is eliminated block by block (T blocks A_t of Y×Y), leaving a Schur complement in μ of size
    S·Y. Its coupling part Σ_t B_tᵀ A_t⁻¹ B_t is assembled one of three ways (the same matrix):
    for few labels as Rᵀ R with R = L⁻¹ B (A_t = L_t L_tᵀ), one symmetric rank-k product (SYRK, half
    the work of a general product), O(Y³·T·S²) but a single efficient BLAS call, in float32 with
    ``single``; for many labels from its four structured terms, O(Y²·T·S²) in batched products; for
    sparse supports as a sparse product. ``syrk=False`` (the last resort, late in the iteration):
    the general product Σ_t B_tᵀ (A_t⁻¹ B_t), factorised by Cholesky or, where that fails, pivoted LU.
    """

    #: Largest |Y| for which the single-product assembly is used (measured crossover on 2 cores).
    DENSE_MAX_Y = 16
    #: Below this fill of the coupling block, it is assembled as a sparse product (histograms of
    #: clustered representations have few labels per (t, s) pair).
    SPARSE_MAX_DENSITY = 0.05

    @staticmethod
    def _nnz(prob: _Problem) -> int:
        """Nonzeros of the coupling block B: (support labels of the pair)² summed over pairs."""
        k = prob.support.sum(axis=0)
        return int((k * k).sum())

    @classmethod
    def is_sparse(cls, prob: _Problem) -> bool:
        if prob.dense_only:
            return False
        Y, T = prob.p_yt.shape
        S = prob.p_ys.shape[1]
        return cls._nnz(prob) < cls.SPARSE_MAX_DENSITY * (T * Y) * (S * Y)

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

    def __init__(
        self,
        prob: _Problem,
        pi: np.ndarray,
        u: np.ndarray,
        W: np.ndarray,
        single: bool = False,
        syrk: bool = True,
    ):
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
        # A_t is positive definite (each pair block is ⪰ r(diag π − π πᵀ) + (r/s) π πᵀ); its
        # Cholesky factor gives the symmetric assembly below.
        try:
            L_inv = np.linalg.inv(np.linalg.cholesky(A))
            self.A_inv = A_inv = np.matmul(L_inv.transpose(0, 2, 1), L_inv)  # (T, Y, Y)
        except np.linalg.LinAlgError:
            L_inv, self.A_inv = None, np.linalg.inv(A)
            A_inv = self.A_inv
        self.shape = (Y, T, S)
        n = S * Y
        keep = np.ones(n)
        keep[prob.pin] = 0.0
        if self.is_sparse(prob):
            from scipy import sparse
            from scipy.sparse import linalg as splinalg

            schur = (_block_diagonal(C) - self._coupling_sparse(prob, A_inv, pi, q, W)).tocoo()
            # Pin the gauge rows/columns to the identity and equilibrate, as in the dense branch
            # below, by scaling the stored entries (no sparse products).
            schur.data *= keep[schur.row] * keep[schur.col]
            schur = (schur + sparse.diags(1.0 - keep)).tocoo()
            self.scale = 1.0 / np.sqrt(np.maximum(schur.diagonal(), 1e-300))
            schur.data *= self.scale[schur.row] * self.scale[schur.col]
            self.factor = splinalg.splu(schur.tocsc())
            return
        if syrk and Y <= self.DENSE_MAX_Y and L_inv is not None:
            self.factor = self._factor_syrk(L_inv, C, single)
            if self.factor is not None:
                self.checked = True
                return
            self.single = False  # not positive definite in working precision: pivoted LU below
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
        self.factor = _Factor(schur)

    def _factor_syrk(self, L_inv, C, single: bool) -> _Factor | None:
        """Schur complement C − Rᵀ R, equilibrated, pinned and Cholesky-factorised, with few passes.

        The equilibration D = diag(C − Rᵀ R)^−½ is applied to R's columns before the product
        ((R D)ᵀ (R D) = D Rᵀ R D); the product is one BLAS SYRK, which fills only the lower triangle
        that the Cholesky factorisation reads, so the (S·Y)² matrix is touched only by the product,
        one negation and the factorisation. ``single``: product and factorisation in float32, the
        scaling folded into the cast. None if the matrix is not numerically positive definite.
        """
        prob = self.prob
        Y, T, S = self.shape
        idx = np.arange(Y)
        R = self._r_blocks(L_inv, self.pi, self.q, self.W)
        diag = C[:, idx, idx].reshape(-1) - np.einsum("ij,ij->j", R, R)
        diag[prob.pin] = 1.0
        scale = 1.0 / np.sqrt(np.maximum(diag, 1e-300))
        scale[prob.pin] = 0.0  # pinned rows and columns: identity, set below
        self.single = single
        Rs = np.multiply(R, scale, dtype=np.float32 if single else np.float64)
        (syrk,) = linalg.get_blas_funcs(("syrk",), (Rs,))
        low = syrk(1.0, Rs.T, trans=0, lower=1)  # Fortran order: (R D)ᵀ (R D), lower triangle
        np.negative(low, out=low)
        schur = low.T  # C-ordered view: its upper triangle holds the matrix
        sc = scale.reshape(S, Y)
        schur.reshape(S, Y, S, Y)[np.arange(S), :, np.arange(S), :] += C * sc[:, :, None] * sc[:, None, :]
        schur[prob.pin, :] = 0.0
        schur[:, prob.pin] = 0.0
        schur[prob.pin, prob.pin] = 1.0
        scale[prob.pin] = 1.0
        return _Factor.cholesky_lower(low, scale)

    @staticmethod
    def _r_blocks(L_inv, pi, q, W) -> np.ndarray:
        """R = blockdiag(L_t⁻¹) B as a (T·Y)×(S·Y) matrix (B from ``_coupling_blocks``), rows
        (t, y) and columns (s, z)."""
        Y, T, S = pi.shape
        return np.matmul(L_inv, _NewtonSystem._coupling_blocks(pi, q, W)).reshape(T * Y, S * Y)

    @staticmethod
    def _coupling_blocks(pi, q, W) -> np.ndarray:
        """B as (T, Y, S·Y): B_t[y, (s, z)] = q[y,t,s] δ_yz + W π_ts[y] π_ts[z]."""
        Y, T, S = pi.shape
        idx = np.arange(Y)
        B = np.empty((T, Y, S, Y))  # C order, so the reshape below is free
        Wpi = (W[None] * pi).transpose(1, 0, 2)
        np.multiply(Wpi[:, :, :, None], pi.transpose(1, 2, 0)[:, None, :, :], out=B)
        B[:, idx, :, idx] += q
        return B.reshape(T, Y, S * Y)

    @staticmethod
    def _coupling_dense(A_inv, pi, q, W) -> np.ndarray:
        """Σ_t B_tᵀ A_t⁻¹ B_t as (s, y, e, z), with B_t[y, (s, z)] = q[y,t,s] δ_yz + W π_ts[y] π_ts[z]."""
        Y, T, S = pi.shape
        B2 = _NewtonSystem._coupling_blocks(pi, q, W)
        X = np.matmul(A_inv, B2)
        return (B2.reshape(T * Y, S * Y).T @ X.reshape(T * Y, S * Y)).reshape(S, Y, S, Y)

    @staticmethod
    def _coupling_syrk(L_inv, pi, q, W) -> np.ndarray:
        """The same matrix as ``_coupling_dense`` given L_t⁻¹ with A_t⁻¹ = L_t⁻ᵀ L_t⁻¹: Rᵀ R for
        R = blockdiag(L_t⁻¹) B (``_r_blocks``), which numpy computes as one symmetric rank-k update."""
        Y, T, S = pi.shape
        R = _NewtonSystem._r_blocks(L_inv, pi, q, W)
        return (R.T @ R).reshape(S, Y, S, Y)

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

    def _solve_once(self, g_lam: np.ndarray, g_mu: np.ndarray):
        prob = self.prob
        Ainv_g = np.einsum("tyz,zt->ty", self.A_inv, g_lam)
        rhs = (g_mu.T - self._Bt(Ainv_g)).reshape(-1)
        rhs[prob.pin] = 0.0
        if isinstance(self.factor, _Factor):
            d_mu = self.factor.solve(rhs)
        else:
            d_mu = self.factor.solve(rhs * self.scale) * self.scale
        d_mu = d_mu.reshape(self.shape[2], self.shape[0])
        d_lam = np.einsum("tyz,tz->ty", self.A_inv, g_lam.T - self._B(d_mu))
        return np.where(prob.m_yt, d_lam.T, 0.0), np.where(prob.m_ys, d_mu.T, 0.0)


def _spd_inverse(D: np.ndarray) -> np.ndarray:
    """Inverses of a stack (Y, n, n) of symmetric positive definite matrices: Cholesky-based
    (LAPACK potrf + potri, half the work of an LU inverse) for large blocks, numpy's batched
    inverse for small ones (where the per-call overhead dominates). Raises LinAlgError."""
    if D.shape[1] < 96:
        return np.linalg.inv(D)
    out = np.empty_like(D)
    for y in range(D.shape[0]):
        c, info = lapack.dpotrf(D[y], lower=1, clean=0)
        if info != 0:
            raise np.linalg.LinAlgError("not positive definite")
        inv, info = lapack.dpotri(c, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("singular")
        out[y] = np.tril(inv) + np.tril(inv, -1).T
    return out


def _pair_gram(Dinv: np.ndarray, pp: np.ndarray, tp: np.ndarray, sp: np.ndarray, T: int, S: int):
    """Uᵀ D⁻¹ U for pairs p = (tp, sp) sorted by t: U's column p is J_pᵀ π_p, with entries π_y(p) in
    rows λ(y, t_p) and μ(y, s_p); D⁻¹ (Y, T+S, T+S) is block diagonal over labels; pp = π[:, tp, sp].

    (Uᵀ D⁻¹ U)[p, p'] = Σ_y π_y(p) π_y(p') (D_y⁻¹[t,t'] + D_y⁻¹[t,s'] + D_y⁻¹[s,t'] + D_y⁻¹[s,s']):
    with X = D⁻¹ U, one (T+S)×P block per label, row p is Σ_y π_y(p) (X_y[t_p] + X_y[s_p]), which
    for the rows of one t (contiguous) or one s is a single matrix product, O(Y·P²) in all.
    """
    P = tp.size
    Dk = np.ascontiguousarray(Dinv.transpose(1, 0, 2))  # (k, y, l)
    X = np.take(Dk, tp, axis=2)  # X[k, y, p] = (D_y⁻¹[k, t_p] + D_y⁻¹[k, T + s_p]) π_y(p)
    X += np.take(Dk, T + sp, axis=2)
    X *= pp[None]
    K = np.empty((P, P))
    bounds = np.searchsorted(tp, np.arange(T + 1))
    for t in range(T):
        a, b = bounds[t], bounds[t + 1]
        if b > a:
            K[a:b] = pp[:, a:b].T @ X[t]
    order = np.argsort(sp, kind="stable")
    bounds = np.searchsorted(sp[order], np.arange(S + 1))
    for s in range(S):
        rows = order[bounds[s] : bounds[s + 1]]
        if rows.size:
            K[rows] += pp[:, rows].T @ X[T + s]
    return K


class _PairSystem(_NewtonBase):
    """The same Newton matrix, factorised in pair space (Woodbury), for many labels.

    H = D + U diag(W) Uᵀ, where D = Σ_pairs Jᵀ diag(q_ts) J does not couple labels: for each y it is
    a (T+S)×(T+S) block [[diag Σ_s q, Q_y], [Q_yᵀ, diag Σ_t q]] with Q_y = q[y] (a bipartite
    signless Laplacian; pinning one μ(y,·) removes its null vector), and U has one column J_tsᵀ π_ts
    per pair. With ω = |W|^½ and E = sign W (W = r(1/s − 1) has either sign),

        H⁻¹ = D⁻¹ − D⁻¹ U ω M⁻¹ ω Uᵀ D⁻¹,   M = E + ω Uᵀ D⁻¹ U ω   (pairs × pairs).

    M costs O(Y·P²) to assemble (``_pair_gram``) and P³ to factorise, against (S·Y)³ for the
    Schur complement in μ: the cheaper route when there are many labels (100×32×32: P = 1024
    against S·Y = 3200). M is positive definite once every W > 0 (Cholesky), indefinite before
    (pivoted LU). Forming D⁻¹ explicitly loses accuracy where D is much smaller than H (late,
    along the active pairs' directions); the refinement against the exact product restores it.
    """

    def __init__(self, prob: _Problem, pi: np.ndarray, u: np.ndarray, W: np.ndarray):
        Y, T = prob.p_yt.shape
        S = prob.p_ys.shape[1]
        n = T + S
        self.prob, self.pi, self.W = prob, pi, W
        self.shape = (Y, T, S)
        q = u[None] * pi
        self.q = q
        iy = np.arange(Y)
        D = np.zeros((Y, n, n))
        D[:, :T, T:] = q
        D[:, T:, :T] = q.transpose(0, 2, 1)
        D[:, np.arange(T), np.arange(T)] = q.sum(axis=2) + ~prob.m_yt
        D[:, T + np.arange(S), T + np.arange(S)] = q.sum(axis=1) + ~prob.m_ys
        pin = T + np.argmax(prob.m_ys, axis=1)
        D[iy, pin, :] = 0.0
        D[iy, :, pin] = 0.0
        D[iy, pin, pin] = 1.0
        Dinv = _spd_inverse(D)
        # The pinned μ stays 0: zero its row and column of D⁻¹ (then U's pinned rows do not matter).
        Dinv[iy, pin, :] = 0.0
        Dinv[iy, :, pin] = 0.0
        self.Dinv = Dinv
        self.tp, self.sp = tp, sp = prob.pair_t, prob.pair_s
        w = W[tp, sp]
        self.E = np.where(w < 0, -1.0, 1.0)
        self.om = np.sqrt(np.abs(w))
        P = tp.size
        K = _pair_gram(Dinv, pi[:, tp, sp], tp, sp, T, S)
        K *= self.om[:, None]
        K *= self.om[None, :]
        K[np.arange(P), np.arange(P)] += self.E
        self.factor = _Factor(K, spd=bool(np.all(self.E > 0)))

    def _solve_once(self, g_lam: np.ndarray, g_mu: np.ndarray):
        prob = self.prob
        Y, T, S = self.shape
        g = np.concatenate([np.where(prob.m_yt, g_lam, 0.0), np.where(prob.m_ys, g_mu, 0.0)], axis=1)
        h = np.einsum("ykl,yl->yk", self.Dinv, g)
        pp = self.pi[:, self.tp, self.sp]
        v = self.om * (pp * (h[:, self.tp] + h[:, T + self.sp])).sum(axis=0)
        z = self.factor.solve(v)
        grid = np.zeros((T, S))
        grid[self.tp, self.sp] = self.om * z
        uz = self.pi * grid[None]
        corr = np.concatenate([uz.sum(axis=2), uz.sum(axis=1)], axis=1)
        h -= np.einsum("ykl,yl->yk", self.Dinv, corr)
        return np.where(prob.m_yt, h[:, :T], 0.0), np.where(prob.m_ys, h[:, T:], 0.0)


def _pair_space(prob: _Problem) -> bool:
    """Whether the Newton systems of this problem are solved in pair space (see ``_PairSystem``).

    Work model (flops): the Schur complement in μ costs (S·Y)³/3 to factorise plus its assembly,
    Y³·T·S² as one SYRK for few labels, ~12·Y²·T·S² for the structured sums (their kernels are
    less efficient); the pair-space system (2/3)·P³ (pivoted LU: it is indefinite while some W < 0)
    plus 2·Y·P² to assemble and Y·(T+S)³ for the label blocks. Sparse supports keep the sparse
    Schur complement.
    """
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    if _NewtonSystem.is_sparse(prob):
        return False
    assembly = Y**3 * T * S**2 if Y <= _NewtonSystem.DENSE_MAX_Y else 12 * Y**2 * T * S**2
    schur_cost = (S * Y) ** 3 / 3 + assembly
    P = prob.n_pairs
    pair_cost = 2 * P**3 / 3 + 2 * Y * P**2 + 2 * Y * (T + S) ** 3 + 20 * Y * (T + S) * P
    return pair_cost < PAIR_SPACE_ADVANTAGE * schur_cost


def solver_bytes(prob: _Problem) -> float:
    """Peak bytes of the Newton systems of this problem's route, beyond the Y·T·S arrays (those are
    checked in ``decompose``), counted on the code: Schur route, the label blocks A_t, L_t⁻¹, A_t⁻¹
    (T·Y² each), C (S·Y²), B, R and A⁻¹B ((T·Y)×(S·Y) each) and two (S·Y)² matrices; sparse route,
    the label blocks and a few copies of B's nonzeros (sparse LU fill is not modelled); pair space,
    D, D⁻¹ and their copies (Y·(T+S)² each), the products X of ``_pair_gram`` ((T+S)·Y·P) and the
    P×P system with its factor."""
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    if prob.pair_space:
        n, P = T + S, prob.n_pairs
        return 8.0 * (4 * Y * n * n + n * Y * P + 2 * P * P)
    blocks = 3 * T * Y * Y + S * Y * Y
    if _NewtonSystem.is_sparse(prob):
        return 8.0 * (blocks + 6 * _NewtonSystem._nnz(prob))
    return 8.0 * (blocks + 3 * T * S * Y * Y + 2 * (S * Y) ** 2)


def _newton_system(prob: _Problem, pi, u, W, level: int = 0) -> _NewtonBase:
    """The cheaper factorisation of the Newton matrix for this problem's shape (same matrix).

    ``level`` steps down the Schur complement's variants as they lose accuracy late in the
    iteration: 0 single-precision SYRK (large systems only), 1 double-precision SYRK, 2 the general
    product B_tᵀ (A_t⁻¹ B_t), whose factorisation falls back to pivoted LU when Cholesky fails.
    """
    if prob.pair_space:
        return _PairSystem(prob, pi, u, W)
    single = level == 0 and prob.p_ys.size >= SINGLE_MIN_N
    return _NewtonSystem(prob, pi, u, W, single=single, syrk=level < 2)


#: Largest change of any λ or μ in one step (nats); the cautious restart's (``_solve_broja``).
MAX_DUAL_MOVE = 20.0
CAUTIOUS_DUAL_MOVE = 5.0

#: Dense Schur complements at least this large are assembled and factorised in single precision
#: (with refinement in double) until a refined solve misses ``SINGLE_MAX_RESIDUAL``: float32 halves
#: the two dominant kernels, SYRK and Cholesky.
SINGLE_MIN_N = 512

#: The pair-space system is chosen when its modelled work is below this fraction of the Schur
#: complement's (the Schur complement's kernels are the more efficient ones).
PAIR_SPACE_ADVANTAGE = 0.7


class _InteriorPoint:
    """State of the primal-dual iteration: dual (λ, μ), pair masses r, and c, π at (λ, μ)."""

    def __init__(self, prob: _Problem, path: str = "weighted", max_move: float | None = None):
        self.prob = prob
        self.max_move = MAX_DUAL_MOVE if max_move is None else max_move
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
        # Weighted central path r·s = μ̄·w with w ∝ Q0(t,s) (mean 1 over the pairs). With the plain
        # path r·s = μ̄, a pair whose mass is orders of magnitude below the rest (skewed joints,
        # symbols of mass 1e-10) needs a slack −c ≈ μ̄/r in the thousands; the iteration drives c
        # there by moving λ(·,t) unevenly over y, π of that pair collapses onto one label (1e-33),
        # its λ block loses all curvature and the next direction is garbage (steps of 1e28, no
        # progress: seen on a 9×2×23 joint). Weighting by the starting mass keeps every slack O(1)
        # and the start (r·s = Q0·(1 + log(max Q0/Q0))) close to the path; the optimum is the same.
        q0 = np.where(prob.pairs, self.r, 0.0)
        self.weight = np.where(prob.pairs, q0 / max(float(q0[prob.pairs].mean()), 1e-300), 0.0)
        if path == "plain":
            self.weight = np.where(prob.pairs, 1.0, 0.0)
        elif path == "sqrt":
            w = np.sqrt(self.weight)
            self.weight = np.where(prob.pairs, w / max(float(w[prob.pairs].mean()), 1e-300), 0.0)

    @property
    def slack(self) -> np.ndarray:
        return np.where(self.prob.pairs, -self.c, 1.0)

    def direction(self, system: _NewtonBase, target: np.ndarray, refine: int = 1):
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
        big = max(float(np.abs(d_lam).max()), float(np.abs(d_mu).max()))
        if big * alpha > self.max_move:
            alpha = self.max_move / big
        rising = pairs & (dc > 0)
        if rising.any():
            alpha = min(alpha, float(np.min(-0.99 * self.c[rising] / dc[rising])))
        while alpha > 1e-12:
            c_new, pi_new = self.prob.evaluate(self.lam + alpha * d_lam, self.mu + alpha * d_mu)
            if np.all(c_new[pairs] <= 0.01 * self.c[pairs]):
                return alpha, c_new, pi_new
            alpha *= 0.9
        return 0.0, self.c, self.pi

    #: The variant of the Newton factorisation in use (see ``_newton_system``); it only goes up, the
    #: first time a solve with the current one misses its accuracy (conditioning only worsens).
    level = 0
    #: Steps taken with a single-precision factorisation.
    single_steps = 0

    def step(self) -> bool:
        """One Mehrotra predictor-corrector step; False when no progress is possible."""
        prob, r, s = self.prob, self.r, self.slack
        w = np.where(prob.pairs, 1.0 / s, 0.0)
        while True:
            try:
                system = _newton_system(prob, self.pi, r, r * (w - 1.0), self.level)
                d_lam, d_mu, dc, d_r = self._direction(system)
            except (np.linalg.LinAlgError, RuntimeError, ValueError):
                # Singular to working precision (splu, inv): the iterate is as far as this
                # factorisation gets; the caller certifies what it has.
                if self.level >= 2:
                    return False
                self.level = 2
                continue
            if not (np.all(np.isfinite(d_lam)) and np.all(np.isfinite(d_mu)) and np.all(np.isfinite(d_r))):
                if self.level >= 2:
                    return False
                self.level = 2
                continue
            if system.accurate or self.level >= 2:
                self.single_steps += system.single
                break
            self.level = 2 if not system.single else 1
        alpha, c_new, pi_new = self.feasible_step(d_lam, d_mu, d_r, dc)
        if alpha == 0.0:
            return False
        self.lam, self.mu, self.r = self.lam + alpha * d_lam, self.mu + alpha * d_mu, r + alpha * d_r
        self.c, self.pi = c_new, pi_new
        return True

    def _direction(self, system: _NewtonBase):
        """The Mehrotra predictor-corrector direction (Δλ, Δμ, Δc, Δr) from one factorisation."""
        prob, r, s = self.prob, self.r, self.slack
        pairs, m = prob.pairs, max(prob.n_pairs, 1)
        gap_mu = float((r * s)[pairs].sum()) / m
        # Predictor (affine scaling); its step length is measured on the true, nonlinear constraints.
        dl_a, dm_a, dc_a, dr_a = self.direction(system, np.zeros_like(r), refine=0)
        a_aff, c_aff, _ = self.feasible_step(dl_a, dm_a, dr_a, dc_a)
        mu_aff = float(((r + a_aff * dr_a) * np.where(pairs, -c_aff, 0.0))[pairs].sum()) / m
        sigma = min(1.0, (mu_aff / gap_mu) ** 2) if gap_mu > 0 else 0.0
        # Corrector: centring σμ plus the second-order terms of (r + Δr)(s + Δs) = σμ, where the
        # slack's true change is Δs = −Δc − κ with κ ≥ 0 the curvature of c along the step (c is
        # convex: the linearisation overestimates the slack). κ is measured on the predictor,
        # scaled to a full step as a quadratic, κ ≈ (c(α) − c − αΔc)/α², and enters as
        # Δr_aff·(Δc_aff + κ) + r·κ: the corrector anticipates how far the slack really falls.
        kappa = np.zeros_like(r)
        if a_aff > 0:
            ok = pairs & np.isfinite(c_aff)
            kappa[ok] = np.maximum((c_aff[ok] - self.c[ok] - a_aff * dc_a[ok]) / a_aff**2, 0.0)
        second = dr_a * (dc_a + kappa) + r * kappa
        w = self.weight
        target = np.where(pairs, np.maximum(sigma * gap_mu * w + second, 0.1 * sigma * gap_mu * w), 0.0)
        return self.direction(system, target)


def _active_components(prob: _Problem, tp: np.ndarray, sp: np.ndarray):
    """Pins of the restricted problem on the pairs (tp, sp): one μ(y, s) per connected component of
    each label's bipartite graph (support rows t and s of y, joined by the working pairs whose cell
    (y, t, s) is in the support). Returns (pin_y, pin_k) with k = T + s, or None when some support
    row has no working pair (it could not carry its mass: the restricted problem is infeasible).
    """
    from scipy import sparse
    from scipy.sparse import csgraph

    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    n = T + S
    cell = prob.support[:, tp, sp]  # (Y, P)
    y_idx, p_idx = np.nonzero(cell)
    rows, cols = y_idx * n + tp[p_idx], y_idx * n + T + sp[p_idx]
    graph = sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(Y * n, Y * n))
    n_comp, labels = csgraph.connected_components(graph, directed=False)
    used = np.concatenate([prob.m_yt, prob.m_ys], axis=1).reshape(-1)
    degree = np.bincount(rows, minlength=Y * n) + np.bincount(cols, minlength=Y * n)
    if np.any(used & (degree == 0)):
        return None
    # The first μ node of every component that holds one (node order is y-major, t before s).
    is_mu = np.zeros((Y, n), bool)
    is_mu[:, T:] = True
    mu_nodes = np.flatnonzero(is_mu.reshape(-1) & used)
    comp_of = labels[mu_nodes]
    _, first = np.unique(comp_of, return_index=True)
    pins = mu_nodes[first]
    return pins // n, pins % n


def _working_set(prob: _Problem, r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The pairs an interior-point iterate marks active: r > s. On the central path r·s = μ̄ for
    every pair, so this is r > √μ̄, which holds for the pairs with mass at the optimum (r → r* > 0,
    s → 0) and fails for the others (r → 0) once μ̄ ≪ min(r*², s*²). Every support row (y, t) and
    (y, s) also keeps its pair of largest r/s, or the restricted problem could not carry its mass.
    """
    ratio = np.where(prob.pairs, r / s, 0.0)
    active = prob.pairs & (ratio > 1.0)
    score = np.where(prob.support, ratio[None], -1.0)  # (Y, T, S)
    covered_t = (prob.support & active[None]).any(axis=2)
    y, t = np.nonzero(prob.m_yt & ~covered_t)
    active[t, np.argmax(score[y, t, :], axis=1)] = True
    covered_s = (prob.support & active[None]).any(axis=1)
    y, s_ = np.nonzero(prob.m_ys & ~covered_s)
    active[np.argmax(score[y, :, s_], axis=1), s_] = True
    return active


def active_set_newton(prob: _Problem, lam, mu, r, active, max_steps: int = 4):
    """Newton's method on the optimality conditions restricted to an active set of pairs.

    Once an interior-point iterate has identified the pairs that carry mass at the optimum (r ≫ s
    there, r ≪ s elsewhere), the optimum solves the smooth square system

        Σ_{s:(t,s)∈A} r π = P(y,t),  Σ_{t:(t,s)∈A} r π = P(y,s),  c(t,s) = 0 for (t,s) ∈ A,

    in (λ, μ, r_A), to which Newton's method converges quadratically. Its Jacobian system
    [[D − U R Uᵀ, U], [Uᵀ, 0]] (D = Σ_A Jᵀ diag(q) J, block diagonal over labels; U's columns J_pᵀ π_p)
    reduces with r' = Δr − R UᵀΔ to D Δ + U r' = g, UᵀΔ = −c_A, i.e.

        (Uᵀ D⁻¹ U) r' = Uᵀ D⁻¹ g + c_A,   Δ = D⁻¹ (g − U r'),   Δr = r' + R UᵀΔ,

    one |A|×|A| positive definite solve per step (|A| is a fraction of the pairs). The gauge of
    each connected component of a label's graph of active pairs is pinned. Nothing here is trusted:
    the caller certifies the result on the full problem (exact rounding of r·π onto Δ_P, and
    (λ, μ) shifted by max c over all pairs), so a wrong active set only costs the attempt.

    Returns (λ, μ, r) with r zero off A, or None when the restricted system is singular or the
    last Newton correction is still above ``NEWTON_CONVERGED`` (no quadratic convergence yet).
    """
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    n = T + S
    tp, sp = np.nonzero(active & prob.pairs)
    if tp.size == 0:
        return None
    pins = _active_components(prob, tp, sp)
    if pins is None:
        return None
    pin_y, pin_k = pins
    r_a = r[tp, sp].copy()
    lam, mu = lam.copy(), mu.copy()
    free = np.concatenate([prob.m_yt, prob.m_ys], axis=1)
    free[pin_y, pin_k] = False
    size = np.inf
    for _ in range(max_steps):
        c, pi = prob.evaluate(lam, mu)
        pp = pi[:, tp, sp]  # (Y, P)
        q = np.zeros((Y, T, S))
        q[:, tp, sp] = r_a * pp
        g = np.concatenate([prob.p_yt - q.sum(axis=2), prob.p_ys - q.sum(axis=1)], axis=1)
        g[~free] = 0.0
        c_a = c[tp, sp]
        D = np.zeros((Y, n, n))
        D[:, :T, T:] = q
        D[:, T:, :T] = q.transpose(0, 2, 1)
        D[:, np.arange(T), np.arange(T)] = q.sum(axis=2)
        D[:, T + np.arange(S), T + np.arange(S)] = q.sum(axis=1)
        D *= free[:, :, None] & free[:, None, :]
        D[:, np.arange(n), np.arange(n)] += ~free
        try:
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                Dinv = _spd_inverse(D)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(Dinv)):
            # numpy's batched inverse of a label block of masses ~1e-300 (skewed joints) can
            # come out inf/nan without raising (seed-0 joint 7859): the restricted system is
            # singular in working precision.
            return None
        Dinv *= free[:, :, None] & free[:, None, :]
        K = _pair_gram(Dinv, pp, tp, sp, T, S)
        h = np.einsum("ykl,yl->yk", Dinv, g)
        v = (pp * (h[:, tp] + h[:, T + sp])).sum(axis=0) + c_a
        fac = _Factor(K)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            r_new = fac.solve(v)
        if not np.all(np.isfinite(r_new)):
            return None  # the restricted system is singular in working precision (skewed masses)
        u = np.zeros((Y, T, S))
        u[:, tp, sp] = pp * r_new
        step = h - np.einsum("ykl,yl->yk", Dinv, np.concatenate([u.sum(axis=2), u.sum(axis=1)], axis=1))
        d_c = (pp * (step[:, tp] + step[:, T + sp])).sum(axis=0)
        lam = lam + np.where(prob.m_yt, step[:, :T], 0.0)
        mu = mu + np.where(prob.m_ys, step[:, T:], 0.0)
        r_a = r_a + r_new + r_a * d_c
        # Quadratic convergence: stop at round-off level, or when the corrections stop shrinking.
        size, last = float(np.abs(step).max()), size
        if size < 1e-11 or size > last:
            break
    if not size < NEWTON_CONVERGED:
        return None  # still far from the restricted optimum: the set (or the start) is off
    r_full = np.zeros_like(r)
    r_full[tp, sp] = r_a
    return lam, mu, r_full


def active_set_rounds(
    prob: _Problem, lam, mu, r, active, rounds: int | None = None, steps: int | None = None
):
    """Rounds of ``active_set_newton`` from an iterate, with the working set updated in between:
    pairs whose mass comes out r ≤ 0 leave it, pairs whose constraint comes out violated (c > 0)
    join it, starting again from their mass in ``r`` (column generation in both directions).

    Yields (λ, μ, r, c, π, working set) after each round, for the caller to certify on the full
    problem; stops when the working set no longer changes, the restricted system is singular, or
    after ``rounds``.
    """
    rounds = FINISH_ROUNDS if rounds is None else rounds
    steps = FINISH_STEPS if steps is None else steps
    r_start = r
    for _ in range(rounds):
        out = active_set_newton(prob, lam, mu, r, active, steps)
        if out is None:
            return
        lam, mu, r_new = out
        c, pi = prob.evaluate(lam, mu)
        if not np.all(np.isfinite(c[prob.pairs])):
            return
        yield lam, mu, r_new, c, pi, active
        drop, add = active & (r_new <= 0), prob.pairs & ~active & (c > 0)
        if not (drop.any() or add.any()):
            return
        active = (active & ~drop) | add
        r = np.where(active, np.where(drop | add, r_start, r_new), 0.0)


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
    (last,) = scaling_sweeps(prob, mu, r, sweeps, sweeps)  # one chunk: a single yield
    return last


def scaling_sweeps(prob: _Problem, mu, r, sweeps: int, every: int):
    """The sweeps of ``scaling_polish`` from (μ, r), yielding (Q, its scaling's dual bound) after
    every ``every`` sweeps (and after the last)."""
    p_yt, p_ys = prob.p_yt, prob.p_ys
    b = np.where(prob.m_ys, np.exp(mu), 0.0)
    done = 0
    while done < sweeps:
        for _ in range(min(every, sweeps - done)):
            den = np.einsum("ts,ys->yt", r, b)
            a = np.divide(p_yt, den, out=np.zeros_like(den), where=den > 0)
            den = np.einsum("ts,yt->ys", r, a)
            b = np.divide(p_ys, den, out=np.zeros_like(den), where=den > 0)
            r = r * np.einsum("yt,ys->ts", a, b)
            done += 1
        q = r[None] * a[:, :, None] * b[:, None, :]
        # (log a, log b) shifted by max c is dual feasible: a certified bound of its own.
        with np.errstate(divide="ignore"):
            la, lb = np.where(prob.m_yt, np.log(a), 0.0), np.where(prob.m_ys, np.log(b), 0.0)
            c, _ = prob.evaluate(la, lb)
        yield q, prob.lower_bound(la, lb, c)


def _conditional_entropy(p: np.ndarray) -> float:
    """H(Y | X) in nats for a joint p[y, x]."""
    px = p.sum(axis=0)
    m = p > 0
    return float(-(p[m] * np.log((p / np.where(px > 0, px, 1.0))[m])).sum())


#: Active-set Newton finish: rounds per attempt, Newton steps per round (at most: a round stops at
#: round-off), the factor by which the complementarity gap must fall before a failed attempt is
#: retried, and the largest change of the working set since the previous iteration (as a fraction
#: of its size) at which an attempt is made. Measured on 2 cores: earlier or more frequent attempts
#: cost more than the iterations they saved.
FINISH_ROUNDS = 3
FINISH_STEPS = 5
FINISH_RETRY = 0.1
FINISH_STABLE = 0.02

#: A restricted Newton solve counts as converged when its last correction (in λ, μ) is below this.
NEWTON_CONVERGED = 1e-8

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
    """See ``_solve_broja``; runs it with the BLAS thread count chosen for the size of the Newton
    system it factorises (S·Y, or the number of pairs in pair space)."""
    prob = _Problem(p_yt, p_ys)
    (Y, T), S = p_yt.shape, p_ys.shape[1]
    route = "pair space" if prob.pair_space else ("sparse" if _NewtonSystem.is_sparse(prob) else "Schur")
    check_bytes(solver_bytes(prob), f"the BROJA solver's Newton system for a {Y} x {T} x {S} joint ({route})")
    n = prob.n_pairs if prob.pair_space else p_ys.size
    with blas_threads(1 if n <= SINGLE_THREAD_MAX_N else None):
        return _solve_broja(prob, tol, max_iter)


#: Central paths of the restarts, in order, when a solve ends above the tolerance (see
#: ``_InteriorPoint``): the weighted path first, then the plain path r·s = μ̄, then weights ∝ √Q0.
#: Measured on the fuzz sweep's skewed joints (masses over up to 15 orders of magnitude): where one
#: path's iterates collapse (a label's π on a pair falls to 1e-20, its curvature with it, and the
#: next Newton direction is a near-null gauge move of 1e12: no step is accepted) or stall at a
#: complementarity gap of ~1e-6, another path reaches the tolerance. Bounds from every run are
#: certified on the full problem, so the best primal and the best dual bound of all runs combine.
RESTART_PATHS = ("weighted", "plain", "sqrt")

#: The dense Schur-complement restart of a pair-space or sparse problem is tried up to this size
#: S·Y of its Newton system (100×32×32: 3200, ~0.5 s a step on 2 cores).
RESTART_DENSE_MAX_N = 3200


#: The long alternating-minimisation polish of a run that ends above the tolerance after its
#: active-set finish (``_solve_broja``): at most this many sweeps, certified every
#: ``FINAL_POLISH_EVERY``. Measured on the seed-0 joints it closes (1241, 5358, 7381, 8427): 500 to
#: 10 000 sweeps, ~0.01 s per 1000 on their sizes.
FINAL_POLISH_SWEEPS = 20000
FINAL_POLISH_EVERY = 500
FINAL_POLISH_STALL = 4


def _solve_broja(prob: _Problem, tol: float, max_iter: int) -> tuple[np.ndarray, float, float, SolverInfo]:
    """``_solve_path`` on the weighted central path; if its certified gap is above ``tol``, again
    on the other paths of ``RESTART_PATHS`` until the combined gap (best upper bound of any run,
    best lower bound of any run) is within ``tol``. ``info`` is the first run's, with ``paths`` (the
    paths run), ``iterations`` summed over them and ``converged``/``gap`` for the combination."""
    best = [None, np.inf, -np.inf]  # q, its certified f, the best dual bound
    info = None
    iterations = 0
    paths = []

    def finish(ipm: _InteriorPoint) -> None:
        """The active-set Newton finish (an exact solve of the optimality conditions on the pairs
        that carry mass) from a run's final iterate, on any route, certified on the full problem."""
        for lam, mu, r_new, c, pi, _ in active_set_rounds(
            prob, ipm.lam, ipm.mu, ipm.r, _working_set(prob, ipm.r, ipm.slack)
        ):
            q = round_to_feasible(np.maximum(r_new, 0.0)[None] * pi, prob.p_yt, prob.p_ys)
            f, err = objective_bound(q)
            if f + err < best[1]:
                best[:2] = [q, f + err]
            best[2] = max(best[2], prob.lower_bound(lam, mu, c))
            if best[1] - best[2] <= tol:
                info["finished_by"] = "active-set Newton"
                return

    def long_polish(ipm: _InteriorPoint) -> None:
        """Alternating-minimisation sweeps from a run's final iterate, much longer than the IPM's
        polish, each chunk's primal and scaling dual certified on the full problem; stops once the
        combined gap is within tol. Where the Newton matrix is singular to working precision or
        the directions are no longer accepted (seed-0 joints 1241, 5358, 7381, 8427), the sweeps,
        which need no linear algebra, keep converging."""
        gaps = []
        for q, bound in scaling_sweeps(prob, ipm.mu, ipm.r, FINAL_POLISH_SWEEPS, FINAL_POLISH_EVERY):
            q = round_to_feasible(q, prob.p_yt, prob.p_ys)
            f, err = objective_bound(q)
            if f + err < best[1]:
                best[:2] = [q, f + err]
            best[2] = max(best[2], bound)
            gaps.append(best[1] - best[2])
            if gaps[-1] <= tol:
                info["finished_by"] = "long polish"
                return
            if len(gaps) > FINAL_POLISH_STALL and gaps[-1] > 0.5 * gaps[-1 - FINAL_POLISH_STALL]:
                return  # not halved in FINAL_POLISH_STALL chunks: linear convergence too slow

    runs = [(prob, path, None) for path in RESTART_PATHS]
    # On the weighted path with steps of at most CAUTIOUS_DUAL_MOVE nats in λ, μ: one long step
    # (18 nats) can collapse the π of a pair of tiny mass onto one label, after which the Newton
    # directions are near-null gauge moves of 1e6..1e12 and no step is accepted (seed-0 joints
    # 1546, 1793); shorter steps stay clear of it.
    runs.insert(1, (prob, RESTART_PATHS[0], CAUTIOUS_DUAL_MOVE))
    if prob.pair_space or _NewtonSystem.is_sparse(prob):
        # Pair space (Woodbury) forms D⁻¹ of the label blocks explicitly; with masses of 1e-14 its
        # cancellation leaves directions the refinement cannot repair (steps of 1e7, none
        # accepted: seed-0 joints 403, 436, 1713), where the Schur complement converges; the
        # sparse route's splu stalls count histograms at Σ r·(−c) ≈ 1e-6 (3542), where the dense
        # one does not. The dense Schur restart comes first, if its Newton systems fit the budget.
        schur = _Problem(prob.p_yt, prob.p_ys)
        schur._pair_space, schur.dense_only = False, True
        if prob.p_ys.size <= RESTART_DENSE_MAX_N and solver_bytes(schur) <= memory_budget():
            runs.insert(1, (schur, RESTART_PATHS[0], None))
    for run_prob, path, move in runs:
        q, f, d, more = _solve_path(run_prob, tol, max_iter, path, move)
        ipm = more.pop("_ipm")
        route = f" ({more['newton']})" if run_prob is not prob else ""
        paths.append(path + route + (" cautious" if move else ""))
        iterations += more["iterations"]
        if info is None:
            info = more
        for key in ("garbling", "finished_by"):
            if more.get(key) and not info.get(key):
                info[key] = more[key]
        if f < best[1]:
            best[:2] = [q, f]
        best[2] = max(best[2], d)
        if best[1] - best[2] <= tol:
            break
        # Above the tolerance (a stall near the optimum, or no step possible): finish this run's
        # iterate exactly on its active set, then restart on the next path if that fails too.
        finish(ipm)
        if best[1] - best[2] <= tol:
            break
        long_polish(ipm)
        if best[1] - best[2] <= tol:
            break
    if best[1] - best[2] > tol:
        # Last, the same problem with T and S exchanged (its Newton systems eliminate the other
        # source, so their conditioning differs): seed-0 joint 1241 (22×20×3 after the swap in
        # ``decompose``; the Newton matrix singular to working precision on every path and route)
        # converges as 22×3×20. The result is mapped back and certified on this problem.
        flip = _Problem(prob.p_ys, prob.p_yt)
        if solver_bytes(flip) <= memory_budget():
            q, _, d, more = _solve_path(flip, tol, max_iter, RESTART_PATHS[0])
            ipm = more.pop("_ipm")
            paths.append(RESTART_PATHS[0] + f" ({more['newton']}, T and S exchanged)")
            iterations += more["iterations"]
            q = round_to_feasible(q.transpose(0, 2, 1), prob.p_yt, prob.p_ys)
            f, err = objective_bound(q)
            if f + err < best[1]:
                best[:2] = [q, f + err]
            # Its certified bound d (best of the run) bounds the same minimum, which relabelling
            # T and S leaves unchanged; the final iterate is also re-evaluated here.
            lam, mu = ipm.mu, ipm.lam
            c, _ = prob.evaluate(lam, mu)
            best[2] = max(best[2], d, prob.lower_bound(lam, mu, c))
            if best[1] - best[2] <= tol and more.get("finished_by") and not info.get("finished_by"):
                info["finished_by"] = more["finished_by"]
    best_q, best_f, d_low = best
    info["paths"] = paths
    info["iterations"] = iterations
    info["gap"] = best_f - d_low
    info["converged"] = bool(best_f - d_low <= tol)
    return best_q, best_f, d_low, info


def _solve_path(
    prob: _Problem, tol: float, max_iter: int, path: str = "weighted", max_move: float | None = None
) -> tuple[np.ndarray, float, float, SolverInfo]:
    """Minimise f(Q) = −H_Q(Y|T,S) over Δ_P given the pairwise marginals (all symbols used).

    A feasible primal-dual interior-point method (Mehrotra predictor-corrector) on the dual: the
    dual iterate (λ, μ) stays strictly feasible, the multipliers r(t,s) ≥ 0 of its constraints are
    the pair masses Q(t,s) of the primal point Q(y,t,s) = r(t,s) π(y|t,s). Where its Newton systems
    are solved in pair space, an active-set Newton finish is tried near the end
    (``active_set_rounds``). If it stalls above ``tol`` (degenerate problems: one source a garbling
    of the other), the garbling coupling is tried, certified against the bound
    f ≥ −min(H(Y|T), H(Y|S)). Every candidate is certified on the full problem.

    ``info``: iterations, converged, gap, garbling (which one certified, if any), newton (the
    factorisation: "schur", "pair" or "sparse"), single_precision_steps, finish_attempts, and
    finished_by when the active-set finish closed the gap.

    Returns (q, f_upper, d_lower, info): an exactly feasible q with f(q) ≤ f_upper and a dual
    bound d_lower ≤ min f, both including a bound on their own rounding error (``objective_bound``,
    ``_Problem.lower_bound``), so the optimum lies in [d_lower, f_upper] and f_upper ≥ d_lower
    holds in floating point too; tol is in nats.
    """
    p_yt, p_ys = prob.p_yt, prob.p_ys
    ipm = _InteriorPoint(prob, path, max_move)
    info = SolverInfo(iterations=0, converged=False, garbling=None)
    best = [None, np.inf]  # exactly feasible q with the lowest f seen, and that f

    def offer(q: np.ndarray) -> bool:
        q = round_to_feasible(q, p_yt, p_ys)
        f, err = objective_bound(q)
        # An upper bound on the optimum must cover the rounding of f(q) itself; q's marginals
        # match P to a few ulps (round_to_feasible), a perturbation far below that of f.
        f += err
        if f < best[1]:
            best[:] = [q, f]
            return True
        return False

    # I_Q(Y;T,S) ≥ max(I(Y;T), I(Y;S)) on Δ_P, i.e. f ≥ −min(H(Y|T), H(Y|S)): tight exactly when
    # one source is a garbling of the other.
    h_t, h_s = _conditional_entropy(p_yt), _conditional_entropy(p_ys)
    d_low = -min(h_t, h_s) * (1 + sum_error_factor(p_yt.size + p_ys.size)) - 4 * EPS
    gaps: list[float] = []
    tried_garbling = False
    next_finish = np.inf
    info["finish_attempts"] = 0

    def finish(ipm: _InteriorPoint, active: np.ndarray) -> float:
        """Certify the active-set rounds from the IPM iterate: each is offered as a primal and as a
        dual bound. Returns the best dual bound."""
        bound = -np.inf
        for lam, mu, r_new, c, pi, _ in active_set_rounds(prob, ipm.lam, ipm.mu, ipm.r, active):
            offer(np.maximum(r_new, 0.0)[None] * pi)
            bound = max(bound, prob.lower_bound(lam, mu, c))
            if best[1] - bound <= tol:
                info["finished_by"] = "active-set Newton"
                break
        return bound

    # The start Q0 = P(y,t)P(y,s)/P(y) is in Δ_P: even if no step succeeds, a certified pair of
    # bounds (possibly loose, then reported as such) is returned instead of nothing.
    offer(ipm.r[None] * ipm.pi)
    working = None
    for it in range(max_iter + 1):
        info["iterations"] = it
        compl = float((ipm.r * ipm.slack)[prob.pairs].sum())
        # The active-set finish is tried only where the Newton systems are solved in pair space
        # (many labels), where its restricted systems are much smaller than the IPM's; elsewhere
        # (measured) the attempts cost more than the iterations they save.
        previous, working = working, (_working_set(prob, ipm.r, ipm.slack) if prob.pair_space else None)
        # Certifying (rounding + objective) is pointless while the iterate's own complementarity
        # gap Σ r·(−c) is far above the tolerance: step on.
        if compl > CERTIFY_BELOW * tol and it < max_iter:
            if not ipm.step():
                break
            continue
        offer(ipm.r[None] * ipm.pi)
        # Valid lower bound: (λ, μ) shifted by max c (λ − max c is feasible, D falls by max c ≤ 0).
        # Near the end the iterates lose accuracy to round-off, so keep the best bounds seen.
        d_low = max(d_low, prob.lower_bound(ipm.lam, ipm.mu, ipm.c))
        if best[1] - d_low < POLISH_BELOW * max(tol, 1e-9):
            q_pol, bound = scaling_polish(prob, ipm.lam, ipm.mu, ipm.r)
            offer(q_pol)
            d_low = max(d_low, bound)
        if (
            working is not None
            and previous is not None
            and best[1] - d_low > tol
            and compl <= next_finish
            and (working ^ previous).sum() <= FINISH_STABLE * working.sum()
        ):
            # Once the working set has settled; a failed attempt is retried only once the
            # iterate has come 10× closer.
            next_finish = FINISH_RETRY * compl
            info["finish_attempts"] += 1
            d_low = max(d_low, finish(ipm, working))
        gaps.append(best[1] - d_low)
        if gaps[-1] <= tol:
            info["converged"] = True
            break
        stalled = gaps[-1] < 1e-4 and len(gaps) > 4 and gaps[-1] >= 0.5 * gaps[-5]
        if stalled and tried_garbling and compl > tol and it < max_iter:
            # The certified gap stalled but the iterate's own complementarity gap Σ r·(−c) is still
            # above the tolerance: not the limit of double precision yet. Skewed joints (masses
            # 1e-9) pass a stretch of short steps and then converge (seed-0 joint 1365: 4 slow
            # iterations at Σ r·(−c) ≈ 5e-5, then 1e-10 in 6 more).
            if not ipm.step():
                break
            continue
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
    info["newton"] = "pair" if prob.pair_space else ("sparse" if _NewtonSystem.is_sparse(prob) else "schur")
    info["single_precision_steps"] = ipm.single_steps
    info["gap"] = best_f - d_low
    info["_ipm"] = ipm
    return best_q, best_f, d_low, info
